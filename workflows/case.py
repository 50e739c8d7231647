"""CaseWorkflow: one case of the closed loop, from the report to the ledger.

The workflow owns time and order: commands arrive as Workflow Updates, the domain decides,
the resulting events are appended to PostgreSQL by an activity, and only then does the
state move on. Deadline timers are durable: `wait_condition` with a timeout until the
next clock needs attention. Shape and pitfalls: DESIGN.md §2, §3, §6.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

from activities.contract import CHAIN_CONFLICT, LOAD_POLICY, RECORD_EVENTS, Appended, EventBatch
from domain.commands import (
    COMMANDS,
    CheckDeadlines,
    CheckDepartment,
    parse_command,
    parse_open_case,
)
from domain.decider import decide, evolve, open_case
from domain.errors import DomainError
from domain.events import CaseArchived, DepartmentReported, DepartmentsSummoned, Event
from domain.model import Frozen, Step
from domain.policy import Deadline, DeadlinePolicy, format_duration
from domain.state import CaseRecord, CaseState, CaseSummary, record, summary
from workflows.department import (
    CLOCK_SIGNAL,
    REPORTED_SIGNAL,
    DepartmentTaskInput,
    DepartmentTaskWorkflow,
    task_id,
    task_search_attributes,
)
from workflows.search import search_updates

# Error types a caller can tell apart (`ApplicationError.type`).
INVALID_INPUT = "InvalidCaseInput"
COMMAND_REFUSED = "CommandRefused"
RECORDING_FAILED = "RecordingFailed"

_POLICY_TIMEOUT = timedelta(seconds=10)
# one transaction of a few rows; short, so a killed worker's attempt is retried soon
_RECORD_TIMEOUT = timedelta(seconds=10)
# PostgreSQL down: keep trying (the case waits, nothing is dropped), at most once a minute.
_RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[CHAIN_CONFLICT],
)
_MIN_TIMER = timedelta(seconds=1)
# Updates handled by one run before it continues as new: well under the server's limit
# of 2,000 per run (the history-length limit is watched by the server's suggestion).
UPDATES_PER_RUN = 1000
# Command ids carried into the next run, so a retried command is still applied once.
_APPLIED_CARRIED = 2000

# Versioning (README "Changing the workflow"): each id marks one change of the commands
# the workflow emits; histories recorded before it replay through the old branch.
PATCH_POLICY_LOCAL = "policy-as-local-activity"
# summoned departments with clocks get a DepartmentTask child workflow each
PATCH_DEPARTMENT_TASKS = "department-tasks"


class Continued(Frozen):
    """The input of a run that continues a case: everything the next run needs."""

    state: CaseState
    policy: DeadlinePolicy
    applied: list[str]  # the latest command ids (update ids) applied


def _command_update(name: str) -> Any:
    """The Workflow Update of one command: validator and handler share the decider."""

    async def handler(self: Any, payload: dict[str, Any]) -> CaseSummary:
        result: CaseSummary = await self._handle(name, payload)
        return result

    handler.__name__ = handler.__qualname__ = name
    update = workflow.update(name=name, description=COMMANDS[name].__doc__)(handler)

    def validate(self: Any, payload: dict[str, Any]) -> None:
        self._validate(name, payload)

    update.validator(validate)
    return update


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    def __init__(self) -> None:
        self._state: CaseState | None = None
        self._policy: DeadlinePolicy | None = None
        self._events: list[Event] = []
        # command ids (update ids) already applied, oldest first
        self._applied: dict[str, None] = {}
        self._updates_this_run = 0
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ the loop

    @workflow.run
    async def run(self, payload: Any) -> CaseRecord:
        # Any, not a model or a dict: input the SDK cannot decode into the declared type
        # would fail the workflow task and retry forever (DESIGN.md §2); refused here instead.
        # Only a run the server started by continue-as-new may take a carried state;
        # a client cannot start one with a state of its making.
        if workflow.info().continued_run_id is not None:
            self._resume(Continued.model_validate(payload["continued"]))
        else:
            await self._open(payload)

        while not self._ready.archived:
            await self._wait_for_change_or_deadline()
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._ready.archived:
                    workflow.continue_as_new({"continued": self._continued()})

        await workflow.wait_condition(workflow.all_handlers_finished)
        return record(self._ready)

    async def _open(self, payload: Any) -> None:
        try:
            case = parse_open_case(payload)
        except DomainError as exc:
            raise ApplicationError(str(exc), type=INVALID_INPUT, non_retryable=True) from None
        if workflow.patched(PATCH_POLICY_LOCAL):
            # a local activity: no round trip through the server, three history events fewer
            self._policy = await workflow.execute_local_activity(
                LOAD_POLICY,
                start_to_close_timeout=_POLICY_TIMEOUT,
                result_type=DeadlinePolicy,
                summary="load the deadline policy",
            )
        else:
            self._policy = await workflow.execute_activity(
                LOAD_POLICY,
                start_to_close_timeout=_POLICY_TIMEOUT,
                result_type=DeadlinePolicy,
                summary="load the deadline policy",
            )
        async with self._lock:
            try:
                opened = open_case(workflow.info().workflow_id, case, workflow.now(), self._policy)
            except DomainError as exc:
                raise ApplicationError(str(exc), type=INVALID_INPUT, non_retryable=True) from None
            await self._commit(opened, None)

    # ------------------------------------------------------------------ continue-as-new

    def _should_continue_as_new(self) -> bool:
        """Before the run nears Temporal's limits (history length and size, as the server
        suggests; updates per run), the case goes on in a new run with its state."""
        return (
            workflow.info().is_continue_as_new_suggested()
            or self._updates_this_run >= UPDATES_PER_RUN
        )

    def _continued(self) -> dict[str, Any]:
        carried = Continued(
            state=self._ready,
            policy=self._policy_,
            applied=list(self._applied)[-_APPLIED_CARRIED:],
        )
        return carried.model_dump(mode="json")

    def _resume(self, carried: Continued) -> None:
        self._state = carried.state
        self._policy = carried.policy
        self._applied = dict.fromkeys(carried.applied)
        workflow.set_current_details(details(carried.state, carried.policy))

    async def _wait_for_change_or_deadline(self) -> None:
        state = self._ready
        wake = state.next_wake()
        timeout = None
        summary_text = None
        if wake is not None:
            at, clock = wake
            timeout = max(at - workflow.now(), _MIN_TIMER)
            summary_text = timer_summary(at, clock, self._policy_)
        version = state.version
        try:
            await workflow.wait_condition(
                lambda: self._ready.version != version,
                timeout=timeout,
                timeout_summary=summary_text,
            )
        except TimeoutError:
            async with self._lock:
                # a command may have moved the case while the lock was taken
                events = decide(self._ready, CheckDeadlines(), workflow.now(), self._policy_)
                if events:
                    await self._commit(events, None)

    # ------------------------------------------------------------------ commands

    def _validate(self, name: str, payload: dict[str, Any]) -> None:
        """Refuse bad commands before they touch the history (DESIGN.md §2)."""
        try:
            command = parse_command(name, payload)
            if self._state is None or self._policy is None:
                return  # the case is still opening: the handler waits and decides then
            info = workflow.current_update_info()
            if info is not None and info.id in self._applied:
                return  # a retried command: answered with the current summary
            decide(self._state, command, workflow.now(), self._policy)
        except DomainError as exc:
            raise ApplicationError(str(exc), type=COMMAND_REFUSED, non_retryable=True) from None

    async def _handle(self, name: str, payload: dict[str, Any]) -> CaseSummary:
        try:
            command = parse_command(name, payload)
        except DomainError as exc:
            raise ApplicationError(str(exc), type=COMMAND_REFUSED, non_retryable=True) from None
        info = workflow.current_update_info()
        command_id = info.id if info is not None else None
        self._updates_this_run += 1
        await workflow.wait_condition(lambda: self._state is not None)
        async with self._lock:
            if command_id is None or command_id not in self._applied:
                try:
                    events = decide(self._ready, command, workflow.now(), self._policy_)
                except DomainError as exc:
                    # the case moved on between validator and handler
                    raise ApplicationError(
                        str(exc), type=COMMAND_REFUSED, non_retryable=True
                    ) from None
                await self._commit(events, command_id)
        return summary(self._ready)

    # ------------------------------------------------------------------ recording

    async def _commit(self, events: list[Event], command_id: str | None) -> None:
        """Number the events, append them to the event store, then move the state on.
        Called with the lock held."""
        before = self._state
        state = before
        stamped: list[Event] = []
        for offset, event in enumerate(events, start=1):
            seq = (before.version if before else 0) + offset
            event = event.model_copy(update={"seq": seq, "command_id": command_id})
            state = evolve(state, event)
            stamped.append(event)
        assert state is not None
        batch = EventBatch(
            case_id=state.case_id,
            run_id=workflow.info().run_id,
            events=stamped,
            state=state,
            record=record(state) if state.archived else None,
        )
        try:
            await workflow.execute_activity(
                RECORD_EVENTS,
                batch,
                start_to_close_timeout=_RECORD_TIMEOUT,
                retry_policy=_RECORD_RETRY,
                result_type=Appended,
                summary="record " + ", ".join(e.type for e in stamped),
            )
        except ActivityError as exc:
            # Only a conflict in the stored chain ends up here: the command is not applied.
            raise ApplicationError(
                f"the events could not be recorded: {exc.cause or exc}",
                type=RECORDING_FAILED,
                non_retryable=True,
            ) from None
        self._state = state
        self._events.extend(stamped)
        if command_id is not None:
            self._applied[command_id] = None
        updates = search_updates(state, before)
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(details(state, self._policy_))
        await self._department_tasks(stamped, state)

    # ------------------------------------------------------------------ departments

    async def _department_tasks(self, events: list[Event], state: CaseState) -> None:
        """Start a task per summoned department with a clock, tell a task its department
        has reported, cancel the open tasks of a case that ends. Called with the lock held,
        after the events are recorded."""
        for event in events:
            if isinstance(event, DepartmentsSummoned) and event.deadlines:
                if not workflow.patched(PATCH_DEPARTMENT_TASKS):
                    return
                for department, deadline in event.deadlines.items():
                    await self._start_department_task(state, department, deadline)
            elif isinstance(event, DepartmentReported) and event.on_time is not None:
                await self._tell_task(
                    event.department, {"reported_at": event.occurred_at.isoformat()}
                )
            elif isinstance(event, CaseArchived):
                for department in state.department_deadlines:
                    if department not in state.reported:
                        await self._tell_task(department, None)

    async def _start_department_task(
        self, state: CaseState, department: str, deadline: Deadline
    ) -> None:
        location = state.case.location
        task = DepartmentTaskInput(
            case_id=state.case_id,
            department=department,
            orgs=[location.street_id, location.district_id],
            deadline=deadline,
            timezone=self._policy_.timezone,
        )
        await workflow.start_child_workflow(
            DepartmentTaskWorkflow.run,
            task.model_dump(mode="json"),
            id=task_id(state.case_id, department),
            # the task outlives a continue-as-new of the case; it reaches the case by id
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=task_search_attributes(task),
            static_summary=f"department {department}: {state.case.title}",
        )

    async def _tell_task(self, department: str, reported: dict[str, Any] | None) -> None:
        """Signal a department's task (None: cancel it). A task an operator ended
        already is no reason to fail the case."""
        handle = workflow.get_external_workflow_handle(task_id(self._ready.case_id, department))
        try:
            if reported is None:
                await handle.cancel()
            else:
                await handle.signal(REPORTED_SIGNAL, reported)
        except Exception:
            workflow.logger.warning("department task not reachable", extra={"d": department})

    @workflow.signal(name=CLOCK_SIGNAL)
    async def department_clock(self, payload: Any) -> None:
        """A department's task: its clock needs attention. The decider looks at the clock
        itself, so an early, repeated or forged signal records nothing."""
        try:
            command = CheckDepartment.model_validate(
                {"department": payload.get("department")} if isinstance(payload, dict) else {}
            )
        except ValueError:
            workflow.logger.warning("department_clock signal without a valid department")
            return
        await workflow.wait_condition(lambda: self._state is not None)
        async with self._lock:
            events = decide(self._ready, command, workflow.now(), self._policy_)
            if events:
                await self._commit(events, None)

    @property
    def _ready(self) -> CaseState:
        assert self._state is not None, "the case is not opened yet"
        return self._state

    @property
    def _policy_(self) -> DeadlinePolicy:
        assert self._policy is not None, "the policy is not loaded yet"
        return self._policy

    # ------------------------------------------------------------------ queries

    @workflow.query(name="state")
    def state(self) -> CaseState | None:
        return self._state

    @workflow.query(name="events")
    def events(self) -> list[Event]:
        """The domain events of this run (a case that continued as new starts a run with
        its state, not its events: all of them are in case_events)."""
        return self._events

    # ------------------------------------------------------------------ updates
    # One Workflow Update per command of the public contract; see `COMMANDS`.

    dispatch = _command_update("dispatch")
    claim = _command_update("claim")
    check_in = _command_update("check_in")
    record_deliberation = _command_update("record_deliberation")
    schedule_deliberation = _command_update("schedule_deliberation")
    summon_departments = _command_update("summon_departments")
    record_department_report = _command_update("record_department_report")
    report_resolution = _command_update("report_resolution")
    record_feedback = _command_update("record_feedback")
    record_revisit = _command_update("record_revisit")
    request_extension = _command_update("request_extension")
    decide_extension = _command_update("decide_extension")
    return_case = _command_update("return_case")
    add_note = _command_update("add_note")
    withdraw = _command_update("withdraw")
    merge_into = _command_update("merge_into")


def timer_summary(at: datetime, deadline: Deadline, policy: DeadlinePolicy) -> str:
    """What a timer waits for, as the UI shows it on the timer (local office time)."""
    due = policy.local(deadline.due_at).strftime("%Y-%m-%d %H:%M")
    if deadline.breached:
        return f"reminder: deadline {deadline.label}, overdue since {due}"
    if at < deadline.due_at:
        return f"warning before deadline {deadline.label}, due {due}"
    return f"deadline {deadline.label}, due {due}"


def details(state: CaseState, policy: DeadlinePolicy) -> str:
    """The markdown the Temporal UI shows as the case's current details, with times in
    the policy's timezone (the office's local time)."""

    def local(at: datetime) -> str:
        return policy.local(at).strftime("%Y-%m-%d %H:%M")

    lines = [
        f"**{state.case.title}**",
        "",
        f"- step: **{state.step.value}**"
        + (f", level **{state.level.value}**" if state.level else ""),
        f"- flag: {state.flag.value}",
        f"- handler: {state.assignee or '—'}",
    ]
    for deadline in state.deadlines.values():
        left = deadline.due_at - state.updated_at
        lines.append(
            f"- deadline {deadline.label}: due {local(deadline.due_at)}"
            + (
                f" ({format_duration(left)} left at the last event)"
                if left.total_seconds() > 0
                else " (overdue)"
            )
        )
    lines.append(
        f"- last event: {state.last_event} at {local(state.updated_at)} ({policy.timezone})"
    )
    for department, clock in state.department_deadlines.items():
        done = "reported" if department in state.reported else "open"
        late = ", late: escalated" if department in state.late_departments else ""
        lines.append(f"- department {department}: {done}, due {local(clock.due_at)}{late}")
    if state.talk_day is not None and state.step in (Step.COLLECT, Step.DELIBERATE):
        lines.append(f"- talk day: {state.talk_day.isoformat()}")
    if state.reopen_count or state.escalation_count:
        lines.append(f"- reopened {state.reopen_count}×, escalated {state.escalation_count}×")
    return "\n".join(lines)
