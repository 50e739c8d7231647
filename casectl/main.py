"""The `casectl` entry point: the command groups (the commands themselves are in
casectl/audit.py, cases.py and report.py; what they share in casectl/common.py)."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from casectl.audit import audit
from casectl.cases import register
from casectl.report import report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Operate and audit grievance cases (Temporal and PostgreSQL, from the environment)."""


def main(argv: list[str] | None = None) -> NoReturn:
    cli.add_command(audit)
    cli.add_command(report)
    register(cli)
    code: str | int | None = 0
    try:
        cli.main(args=argv, prog_name="casectl")
    except SystemExit as exc:
        code = exc.code
    # Leave without interpreter finalization: the Temporal bridge's threads can abort it
    # ("PyGILState_Release ... finalizing", temporalio/sdk-python#300), exit status -6
    # after a command that succeeded.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1 if code else 0)
