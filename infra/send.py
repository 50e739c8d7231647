"""Sending one command to a case from any Python process (the client, the talk-day
agenda's activity): the Workflow Update named after the command, its failure raised as
one of infra/errors.py's exceptions."""

from __future__ import annotations

import uuid

from temporalio.client import Client, WorkflowUpdateFailedError

from domain.commands import Command
from domain.state import CaseSummary
from infra.errors import error_of


def update_body(command: Command) -> dict[str, object]:
    """The update's argument: the command's JSON without its kind (the update's name)."""
    return command.model_dump(mode="json", exclude={"kind"})


async def send_command(
    client: Client, case_id: str, command: Command, command_id: str | None = None
) -> CaseSummary:
    """Apply `command` to the case and return its new summary. `command_id` is the update
    id: the same id sent again is applied once. Raises CommandRefused (nothing recorded),
    RecordingFailed or CaseError."""
    handle = client.get_workflow_handle(case_id)
    try:
        summary: CaseSummary = await handle.execute_update(
            command.kind,
            update_body(command),
            id=command_id or uuid.uuid4().hex,
            result_type=CaseSummary,
        )
    except WorkflowUpdateFailedError as exc:
        raise error_of(exc.cause) from None
    return summary
