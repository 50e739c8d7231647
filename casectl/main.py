"""The `casectl` entry point: the command groups (the commands themselves are in
casectl/audit.py, cases.py and report.py; what they share in casectl/common.py)."""

from __future__ import annotations

from typing import NoReturn

import click

from casectl.audit import audit
from casectl.cases import register
from casectl.disclosure import disclosure
from casectl.notifications import notifications
from casectl.points import points
from casectl.report import report
from casectl.services import services
from infra.process import leave


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Operate and audit grievance cases (Temporal and PostgreSQL, from the environment)."""


def main(argv: list[str] | None = None) -> NoReturn:
    cli.add_command(audit)
    cli.add_command(report)
    cli.add_command(points)
    cli.add_command(notifications)
    cli.add_command(services)
    cli.add_command(disclosure)
    register(cli)
    code: str | int | None = 0
    try:
        cli.main(args=argv, prog_name="casectl")
    except SystemExit as exc:
        code = exc.code
    leave(code if isinstance(code, int) else 1 if code else 0)
