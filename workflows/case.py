"""CaseWorkflow: one case of the closed loop, from the report to the ledger.

The workflow owns time and order: commands arrive as Workflow Updates, the domain decides,
the resulting events are appended to PostgreSQL by an activity, and only then does the
state move on. Deadline timers are durable: `wait_condition` with a timeout until the
next clock needs attention. Shape and pitfalls: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from activities.contract import (
    CHAIN_CONFLICT,
    LOAD_POLICY,
    MERGE_RECORDED,
    RECORD_EVENTS,
    Appended,
    EventBatch,
    MergeClaim,
)
from domain.commands import (
    COMMANDS,
    CheckDeadlines,
    CheckDepartment,
    Command,
    MergedReport,
    parse_command,
    parse_open_case,
)
from domain.decider import apply_batch, decide, merged_report, open_case
from domain.errors import DomainError
from domain.events import CaseMerged, Event
from domain.model import Frozen
from domain.policy import DEFAULT_POLICY, DeadlinePolicy
from domain.state import CaseRecord, CaseState, CaseSummary, record, summary
from infra.errors import (
    COMMAND_REFUSED,
    INVALID_CASE_INPUT,
    RECORDING_FAILED,
    failure,
)
from workflows.department import CLOCK_SIGNAL, MIN_TIMER, ClockDue, follow_departments
from workflows.details import details, timer_summary
from workflows.search import search_updates

_POLICY_TIMEOUT = timedelta(seconds=10)
# one transaction of a few rows; short, so a killed worker's attempt is retried soon
_RECORD_TIMEOUT = timedelta(seconds=10)
# PostgreSQL down: keep trying (the case waits, nothing is dropped), at most once a minute.
_RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[CHAIN_CONFLICT],
)
# Updates handled by one run before it continues as new: well under the server's limit
# of 2,000 per run (the history-length limit is watched by the server's suggestion).
UPDATES_PER_RUN = 1000
# Command ids carried into the next run, so a retried command is still applied once.
_APPLIED_CARRIED = 2000

# Versioning (docs/auditing.md, "Changing the workflow"): each patch id marks a change of the
# commands the workflow emits; histories recorded before it replay through the old branch.
# Every patch costs a run two history events (a marker and a search-attribute upsert), so
# a run started by this code asks one patch, GENERATION_5, which stands for every change
# up to it; runs started before it ask the older ids one by one, where they always did.
GENERATION_5 = "generation-5"
# v2: the policy loaded by a local activity
PATCH_POLICY_LOCAL = "policy-as-local-activity"
# v4: the opening is stamped with the time of the run's first activation, which every
# replay sees alike; before, with the time after the policy's local activity, which a
# query arriving meanwhile could change between the run and a replay
PATCH_OPENED_AT_START = "opened-at-first-activation"
# generation 5 only (no id of their own):
# - events recorded by a local activity (a marker in the workflow task, no round trip
#   through the server) instead of a regular activity (scheduled, started, completed and
#   a second workflow task);
# - one timer per wake time, kept while the wake time stays, instead of a timer started
#   and cancelled around every command.
# A retry of the recording whose pause is longer than this waits on a durable timer (the
# case waits, the workflow task is not kept busy): in a PostgreSQL outage the pauses grow
# (1, 2, 4, 8, 16 s ...) to the retry policy's maximum of a minute, so from the fifth
# retry on. Shorter pauses are taken inside the workflow task.
_RECORD_LOCAL_RETRIES = timedelta(seconds=10)
# A case merged into another signals that case its report (signal `merged_report`); asked
# directly (not through `_changed`), only where a merge is recorded: runs that merged
# before it replay without the signal.
PATCH_MERGE_LINKS = "merge-links"
MERGED_SIGNAL = "merged_report"  # merged case -> the case it was merged into


class Continued(Frozen):
    """The input of a run that continues a case: everything the next run needs."""

    state: CaseState
    policy: DeadlinePolicy
    applied: list[str]  # the latest command ids (update ids) applied


T = TypeVar("T")


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


def _opening_state(payload: Any) -> tuple[CaseState | None, DeadlinePolicy | None]:
    """The state a run starts from, as far as its start input tells, and its policy when
    known: a new case's state once its opening is recorded (stamped with the built-in
    policy's version, which only validators see; its own policy is loaded by the run), or
    the carried state and policy of a continued run; None for an invalid input."""
    try:
        if workflow.info().continued_run_id is not None:
            carried = Continued.model_validate(payload["continued"])
            return carried.state, carried.policy
        case = parse_open_case(payload)
        opened = open_case(workflow.info().workflow_id, case, workflow.now(), DEFAULT_POLICY)
        return apply_batch(None, opened)[0], None
    except (DomainError, ValidationError, KeyError, TypeError):
        return None, None


def _with_command_updates(cls: type[T]) -> type[T]:
    """One Workflow Update per command of the public contract (`COMMANDS`), named after
    it, with the command's docstring as its description."""
    for name in COMMANDS:
        setattr(cls, name, _command_update(name))
    return cls


@workflow.defn(name="CaseWorkflow")
@_with_command_updates
class CaseWorkflow:
    @workflow.init
    def __init__(self, payload: Any) -> None:
        # The state the case will have once its opening is recorded, known from the start
        # input before any update is validated: a command that arrives with the start
        # (update-with-start) or while the opening is recorded is judged against it, so a
        # refusal still comes before acceptance. None: the start input is invalid (`run`
        # fails the case).
        # A continued run knows its policy at once: a command arriving before the run
        # resumes is judged by the case's own rules, not the built-in ones.
        self._opening, self._policy = _opening_state(payload)
        self._state: CaseState | None = None
        self._events: list[Event] = []
        # command ids (update ids) already applied, oldest first
        self._applied: dict[str, None] = {}
        self._updates_this_run = 0
        self._lock = asyncio.Lock()
        # the run was started by code of generation 5 or later (asked first thing)
        self._generation_5 = False
        # the timer of the next wake time and that time (generation 5)
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: datetime | None = None

    # ------------------------------------------------------------------ the loop

    @workflow.run
    async def run(self, payload: Any) -> CaseRecord:
        # Any, not a model or a dict: input the SDK cannot decode into the declared type
        # would fail the workflow task and retry forever; refused here instead.
        # Only a run the server started by continue-as-new may take a carried state;
        # a client cannot start one with a state of its making.
        # Asked first thing: every replay gets the same answer in the same workflow task,
        # whatever a query does to the timing of later tasks; a run started before keeps
        # the old ways to its end.
        self._generation_5 = workflow.patched(GENERATION_5)
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
            raise failure(str(exc), INVALID_CASE_INPUT) from None
        opened_at = workflow.now() if self._changed(PATCH_OPENED_AT_START) else None
        if self._changed(PATCH_POLICY_LOCAL):
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
                opened = open_case(
                    workflow.info().workflow_id, case, opened_at or workflow.now(), self._policy
                )
            except DomainError as exc:
                raise failure(str(exc), INVALID_CASE_INPUT) from None
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
        """Wait until a command moves the case or its next clock needs attention."""
        if not self._generation_5:
            await self._wait_with_a_timer_per_wait()
            return
        state = self._ready
        wake = state.next_wake()
        at = wake[0] if wake is not None else None
        if at != self._timer_at:  # the wake time moved: replace the timer
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = None, at
            if wake is not None:
                self._timer = asyncio.ensure_future(
                    workflow.sleep(
                        max(wake[0] - workflow.now(), MIN_TIMER),
                        summary=timer_summary(wake[0], wake[1], self._policy_),
                    )
                )
        timer = self._timer
        version = state.version
        await workflow.wait_condition(
            lambda: self._ready.version != version or (timer is not None and timer.done())
        )
        if timer is not None and timer.done():
            self._timer, self._timer_at = None, None
            # a command may have moved the case meanwhile: the decider looks at the clocks
            await self._decide_and_commit(CheckDeadlines(), None)

    async def _wait_with_a_timer_per_wait(self) -> None:
        """Before generation 5: a timer started for every wait, cancelled by a command."""
        state = self._ready
        wake = state.next_wake()
        timeout = None
        summary_text = None
        if wake is not None:
            at, clock = wake
            timeout = max(at - workflow.now(), MIN_TIMER)
            summary_text = timer_summary(at, clock, self._policy_)
        version = state.version
        try:
            await workflow.wait_condition(
                lambda: self._ready.version != version,
                timeout=timeout,
                timeout_summary=summary_text,
            )
        except TimeoutError:
            await self._decide_and_commit(CheckDeadlines(), None)

    # ------------------------------------------------------------------ commands

    def _validate(self, name: str, payload: dict[str, Any]) -> None:
        """Refuse bad commands before they touch the history (docs/architecture.md,
        "Refusals leave no trace")."""
        try:
            command = parse_command(name, payload)
        except DomainError as exc:
            raise failure(str(exc), COMMAND_REFUSED) from None
        state = self._state or self._opening
        if state is None:
            raise failure(f"{name}: the case's start input is invalid", COMMAND_REFUSED)
        info = workflow.current_update_info()
        if info is not None and info.id in self._applied:
            return  # a retried command: answered with the current summary
        try:
            # Before the policy is loaded, the built-in one serves for judging only: no
            # refusal of a command to an opened, undispatched case depends on the policy
            # (tests/domain/test_opening_validation.py); the handler decides with the
            # case's own policy once the opening is recorded.
            decide(state, command, workflow.now(), self._policy or DEFAULT_POLICY)
        except DomainError as exc:
            raise failure(str(exc), COMMAND_REFUSED) from None

    async def _handle(self, name: str, payload: dict[str, Any]) -> CaseSummary:
        try:
            command = parse_command(name, payload)
        except DomainError as exc:
            raise failure(str(exc), COMMAND_REFUSED) from None
        info = workflow.current_update_info()
        self._updates_this_run += 1
        try:
            await self._decide_and_commit(command, info.id if info is not None else None)
        except DomainError as exc:
            # the case moved on between validator and handler
            raise failure(str(exc), COMMAND_REFUSED) from None
        return summary(self._ready, light=self._policy_.flag_is_light)

    async def _decide_and_commit(
        self,
        command: Command | CheckDeadlines | CheckDepartment | MergedReport,
        command_id: str | None,
    ) -> None:
        """The one path from a command (a resident's, an officer's, or a clock's) to the
        recorded events: under the lock, decide on the current state, record what follows.
        A command id applied already records nothing again."""
        await workflow.wait_condition(lambda: self._state is not None)
        async with self._lock:
            if command_id is not None and command_id in self._applied:
                return
            events = decide(self._ready, command, workflow.now(), self._policy_)
            if events:
                await self._commit(events, command_id)

    # ------------------------------------------------------------------ recording

    async def _commit(self, events: list[Event], command_id: str | None) -> None:
        """Number the events, append them to the event store, then move the state on.
        Called with the lock held."""
        before = self._state
        state, stamped = apply_batch(before, events, command_id)
        batch = EventBatch(
            case_id=state.case_id,
            run_id=workflow.info().run_id,
            events=stamped,
            state=state,
            record=record(state) if state.archived else None,
            # a local activity's events may outlive a workflow task Temporal never
            # recorded; the length of the history tells a later task's from an earlier one's
            decided_in=workflow.info().get_current_history_length() if self._generation_5 else None,
        )
        what = "record " + ", ".join(e.type for e in stamped)
        try:
            if self._generation_5:
                await workflow.execute_local_activity(
                    RECORD_EVENTS,
                    batch,
                    start_to_close_timeout=_RECORD_TIMEOUT,
                    retry_policy=_RECORD_RETRY,
                    local_retry_threshold=_RECORD_LOCAL_RETRIES,
                    result_type=Appended,
                    summary=what,
                )
            else:
                await workflow.execute_activity(
                    RECORD_EVENTS,
                    batch,
                    start_to_close_timeout=_RECORD_TIMEOUT,
                    retry_policy=_RECORD_RETRY,
                    result_type=Appended,
                    summary=what,
                )
        except (ActivityError, ApplicationError) as exc:
            # Only a conflict in the stored chain ends up here (a local activity's failure
            # arrives unwrapped): the command is not applied.
            cause = exc.cause if isinstance(exc, ActivityError) else exc
            raise failure(
                f"the events could not be recorded: {cause or exc}", RECORDING_FAILED
            ) from None
        self._state = state
        self._events.extend(stamped)
        if command_id is not None:
            self._applied[command_id] = None
        updates = search_updates(state, before, self._policy_)
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(details(state, self._policy_))
        await follow_departments(stamped, state, self._policy_.timezone, self._changed)
        await self._tell_merge_target(stamped, state)

    # ------------------------------------------------------------------ merged reports

    async def _tell_merge_target(self, events: list[Event], state: CaseState) -> None:
        """A case just merged into another tells that case of its report and reporter. A
        target that does not exist or is closed is logged: this case is archived anyway."""
        merged = next((e for e in events if isinstance(e, CaseMerged)), None)
        if merged is None or not workflow.patched(PATCH_MERGE_LINKS):
            return
        target = workflow.get_external_workflow_handle(merged.target_case_id)
        try:
            await target.signal(MERGED_SIGNAL, merged_report(state).model_dump(mode="json"))
        except FailureError as exc:
            workflow.logger.warning(
                "the case merged into %s could not be told of this report: %s",
                merged.target_case_id,
                exc.message,
            )

    @workflow.signal(name=MERGED_SIGNAL)
    async def on_merged_report(self, payload: Any) -> None:
        """A case merged into this one: its report and reporter. Recorded once; a repeated
        signal, or one reaching an archived case, records nothing. A signal carries no
        actor to check, so the report is taken only when the event store holds the merged
        case's `case_merged` naming this case (recorded before that case signals)."""
        try:
            report = MergedReport.model_validate(payload)
        except ValidationError:
            # the payload may hold a reporter's data: not quoted
            workflow.logger.warning("merged_report signal without a valid report")
            return
        claim = MergeClaim(
            merged_case_id=report.merged_case_id, target_case_id=workflow.info().workflow_id
        )
        recorded = await workflow.execute_local_activity(
            MERGE_RECORDED,
            claim,
            start_to_close_timeout=_POLICY_TIMEOUT,
            result_type=bool,
            summary=f"check the merge of {report.merged_case_id}",
        )
        if not recorded:
            workflow.logger.warning(
                "merged_report signal from %s, which has no recorded merge into this case: ignored",
                report.merged_case_id,
            )
            return
        await self._decide_and_commit(report, None)

    # ------------------------------------------------------------------ departments

    @workflow.signal(name=CLOCK_SIGNAL)
    async def department_clock(self, payload: Any) -> None:
        """A department's task: its clock needs attention. The decider looks at the clock
        itself, so an early, repeated or forged signal records nothing."""
        try:
            due = ClockDue.model_validate(payload)
        except ValidationError:
            workflow.logger.warning("department_clock signal without a valid department")
            return
        await self._decide_and_commit(CheckDepartment(department=due.department), None)

    def _changed(self, patch: str) -> bool:
        """Whether this run takes the change `patch` (an id from before generation 5)."""
        return self._generation_5 or workflow.patched(patch)

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
