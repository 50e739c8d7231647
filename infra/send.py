"""Sending one command to a case from any Python process (the client, the talk-day
agenda's activity): the Workflow Update named after the command, sent again while the
case is still recording its opening, its failure raised as one of infra/errors.py's
exceptions."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client, WorkflowUpdateFailedError

from domain.commands import Command
from domain.state import CaseSummary
from infra.errors import CaseOpening, error_of

# pauses (seconds) before sending again a command that reached a case still recording its
# opening: the opening takes a few tens of milliseconds
OPENING_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0)


async def send_command(
    client: Client, case_id: str, command: Command, command_id: str | None = None
) -> CaseSummary:
    """Apply `command` to the case and return its new summary. `command_id` is the update
    id: the same id sent again is applied once. Raises CommandRefused (nothing recorded),
    CaseOpening (still opening after the pauses), RecordingFailed or CaseError."""
    handle = client.get_workflow_handle(case_id)
    body = command.model_dump(mode="json", exclude={"kind"})
    update_id = command_id or uuid.uuid4().hex
    for pause in (*OPENING_PAUSES, None):
        try:
            summary: CaseSummary = await handle.execute_update(
                command.kind, body, id=update_id, result_type=CaseSummary
            )
            return summary
        except WorkflowUpdateFailedError as exc:
            error = error_of(exc.cause)
            if not isinstance(error, CaseOpening) or pause is None:
                raise error from None
        await asyncio.sleep(pause)
    raise AssertionError("unreachable")
