"""How a short-lived process of the project ends."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def leave(code: int = 0) -> NoReturn:
    """Exit with `code` once the work is done, without interpreter finalization: the
    Temporal SDK's bridge threads can abort it ("PyGILState_Release ... finalizing",
    exit status -6 or 134 after a run that succeeded; temporalio/sdk-python#300)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
