"""`casectl audit`: export histories, replay them against the code and the event store,
verify the hash chains."""

from __future__ import annotations

import click


@click.group()
def audit() -> None:
    """Check from the event logs alone that the ledger tells what happened."""
