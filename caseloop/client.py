"""The Python client other systems import: open a case, send a command, read a case.

    client = await CaseClient.connect(Settings.from_env())
    opened = await client.open_case({...OpenCase JSON...})
    summary = await client.send(opened.case_id, "dispatch", {...}, command_id="ticket-7-d1")
    state = await client.state(opened.case_id)

Inputs are validated here before anything reaches Temporal, with the same models the
workflow uses, so a bad report is refused at once with the field and the reason.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    Client,
    TLSConfig,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.catalogue import ServiceCatalogue
from domain.commands import Command, Dispatch, OpenCase, parse_command, parse_open_case
from domain.decider import expected_case_id
from domain.errors import DomainError
from domain.events import EVENT_LIST, Event
from domain.state import CaseRecord, CaseState, CaseSummary
from infra.catalogue import load_catalogue
from infra.crypto import data_converter
from infra.errors import CaseError, CommandRefused, RecordingFailed, error_of
from infra.send import send_command, update_body
from infra.settings import Settings

__all__ = ["CaseClient", "CaseError", "CommandRefused", "Opened", "RecordingFailed"]

WORKFLOW_TYPE = "CaseWorkflow"


@dataclass(frozen=True)
class Opened:
    case_id: str
    created: bool  # False: the source ticket's case existed already (maybe archived)


async def connect(settings: Settings) -> Client:
    """A Temporal client with the project's data converter and the settings' credentials."""
    tls: TLSConfig | bool = False
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    elif settings.temporal_api_key:
        tls = True
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key,
        tls=tls,
        data_converter=data_converter(settings.keyring),
    )


class CaseClient:
    def __init__(
        self, client: Client, task_queue: str, catalogue: ServiceCatalogue | None = None
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        # a report's category must be one of its codes (the built-in catalogue by default)
        self.catalogue = catalogue or load_catalogue()

    @classmethod
    async def connect(cls, settings: Settings) -> CaseClient:
        return cls(await connect(settings), settings.task_queue, settings.catalogue())

    async def open_case(self, case: OpenCase | dict[str, Any]) -> Opened:
        """Open a case, or find the one already opened for the same source ticket.

        The case id is `case-{source}-{source_ref}` (a second report of a ticket finds the
        first case, even archived) or `case-{source}-{uuid}` without a ticket."""
        case, case_id = self._case_and_id(case)
        try:
            await self.client.start_workflow(
                WORKFLOW_TYPE,
                case.model_dump(mode="json"),
                id=case_id,
                task_queue=self.task_queue,
                # the ticket's case exists (running, or closed: reuse is refused)
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=_summary(case),
            )
        except WorkflowAlreadyStartedError:
            return Opened(case_id, created=False)
        return Opened(case_id, created=True)

    async def open_and_dispatch(
        self,
        case: OpenCase | dict[str, Any],
        dispatch: Dispatch | dict[str, Any],
        *,
        command_id: str | None = None,
    ) -> tuple[str, CaseSummary]:
        """Open a case and dispatch it in one call (update-with-start): the case id and its
        summary once dispatched. Where the ticket's case is running already, the dispatch
        goes to it (and is refused if it was dispatched); an archived ticket's case raises
        WorkflowAlreadyStartedError. A refused dispatch raises CommandRefused; the case is
        opened all the same."""
        case, case_id = self._case_and_id(case)
        command = self._command("dispatch", dispatch)
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            WORKFLOW_TYPE,
            case.model_dump(mode="json"),
            id=case_id,
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=_summary(case),
        )
        try:
            summary: CaseSummary = await self.client.execute_update_with_start_workflow(
                command.kind,
                update_body(command),
                start_workflow_operation=start,
                id=command_id or uuid.uuid4().hex,
                result_type=CaseSummary,
            )
        except WorkflowUpdateFailedError as exc:
            raise error_of(exc.cause) from None
        return case_id, summary

    def _case_and_id(self, case: OpenCase | dict[str, Any]) -> tuple[OpenCase, str]:
        """The report, validated, and its case id. Raises DomainError for a malformed
        report or a category that is not a code of the service catalogue."""
        if not isinstance(case, OpenCase):
            case = parse_open_case(case)
        self.catalogue.service(case.category)
        return case, expected_case_id(case) or f"case-{case.source.value}-{uuid.uuid4().hex}"

    @staticmethod
    def _command(name: str, payload: Command | dict[str, Any]) -> Command:
        """The command `payload` for the update `name`, checked here before anything
        reaches Temporal."""
        if isinstance(payload, Command):
            if payload.kind != name:
                raise CommandRefused(f"{name}: the payload is a {payload.kind} command")
            return payload
        try:
            return parse_command(name, payload)
        except DomainError as exc:
            raise CommandRefused(str(exc)) from None

    async def send(
        self,
        case_id: str,
        command: str,
        payload: Command | dict[str, Any],
        *,
        command_id: str | None = None,
    ) -> CaseSummary:
        """Send one command (a Workflow Update named after it) and return the new summary.

        `command_id` is the update id: sending the same id again applies it once. Raises
        CommandRefused with the case's reason when the command is refused (nothing
        recorded), RecordingFailed when its events could not be recorded."""
        return await send_command(self.client, case_id, self._command(command, payload), command_id)

    async def state(self, case_id: str) -> CaseState:
        result: CaseState = await self._handle(case_id).query("state", result_type=CaseState)
        return result

    async def events(self, case_id: str) -> list[Event]:
        raw = await self._handle(case_id).query("events", result_type=list[dict[str, Any]])
        return EVENT_LIST.validate_python(raw)

    async def result(self, case_id: str) -> CaseRecord:
        """Wait for the case to be archived and return its record."""
        handle = self.client.get_workflow_handle(case_id, result_type=CaseRecord)
        archived: CaseRecord = await handle.result()
        return archived

    def _handle(self, case_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(case_id)


def _summary(case: OpenCase) -> str:
    """The case's line in the Temporal UI's list (encrypted with the payloads)."""
    return f"{case.category}: {case.title}"[:200]
