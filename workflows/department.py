"""DepartmentTask: one summoned department's part of a case (街道吹哨、部门报到).

The case starts one child workflow per department it summons. The child holds that
department's clock as durable timers: at the warning and at the deadline it tells the
case (signal `department_clock`), which decides and records what follows (a warning, an
escalation to the street's supervisor) in its own event log. When the department reports
to the case (the `record_department_report` update), the case tells its task (signal
`reported`) and the task ends with its outcome: who was late is in both histories.

Operators find the open parts in the UI: `WorkflowType = 'DepartmentTask' AND
CaseOrgs = 'water'`, late ones with `FlagColor = 'red'`. The task holds no personal data
beyond the case's title in its (encrypted) summary.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.workflow import ParentClosePolicy

from domain.errors import validation_message
from domain.events import CaseArchived, DepartmentReported, DepartmentsSummoned, Event
from domain.model import Flag, Frozen, OrgId
from domain.policy import Deadline, format_local
from domain.state import CaseState
from infra.errors import INVALID_CASE_INPUT, failure
from workflows.search import ASSIGNEE, CASE_ORGS, CASE_STEP, DUE_AT, FLAG_COLOR

WORKFLOW_TYPE = "DepartmentTask"
CLOCK_SIGNAL = "department_clock"  # task -> case: this department's clock needs attention
REPORTED_SIGNAL = "reported"  # case -> task: the department has reported
# the shortest timer a case or a department task waits on (a clock already due included)
MIN_TIMER = timedelta(seconds=1)
# summoned departments with clocks get a DepartmentTask child workflow each
PATCH_DEPARTMENT_TASKS = "department-tasks"


class DepartmentTaskInput(Frozen):
    case_id: str
    department: OrgId
    orgs: list[OrgId]  # the case's street and district: who sees the part in the UI
    deadline: Deadline
    timezone: str


class ClockDue(Frozen):
    """Signal `department_clock`, task to case: this department's clock needs attention
    (the case's decider looks at the clock itself)."""

    department: OrgId


class Reported(Frozen):
    """Signal `reported`, case to task: the department reported at this time."""

    reported_at: datetime


class Progress(Frozen):
    """Query `outcome`: where a task stands."""

    reported_at: datetime | None
    warned: bool
    escalated: bool


class DepartmentOutcome(Frozen):
    case_id: str
    department: OrgId
    reported_at: datetime  # a task whose case ends first is cancelled, it returns nothing
    on_time: bool
    warned: bool
    escalated: bool


def task_id(case_id: str, department: str) -> str:
    return f"{case_id}:department:{department}"


def task_search_attributes(task: DepartmentTaskInput) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(CASE_ORGS, [task.department, *task.orgs]),
            SearchAttributePair(ASSIGNEE, task.department),
            SearchAttributePair(CASE_STEP, "resolve"),
            SearchAttributePair(DUE_AT, task.deadline.due_at),
            SearchAttributePair(FLAG_COLOR, Flag.GREEN.value),
        ]
    )


@workflow.defn(name=WORKFLOW_TYPE)
class DepartmentTaskWorkflow:
    def __init__(self) -> None:
        self._reported_at: datetime | None = None
        self._warned = False
        self._escalated = False

    @workflow.run
    async def run(self, payload: Any) -> DepartmentOutcome:
        try:
            task = DepartmentTaskInput.model_validate(payload)
        except ValidationError as exc:
            raise failure(validation_message("DepartmentTask", exc), INVALID_CASE_INPUT) from None
        deadline = task.deadline
        while self._reported_at is None and not self._escalated:
            warn = not self._warned and deadline.warn_at < deadline.due_at
            at = deadline.warn_at if warn else deadline.due_at
            try:
                await workflow.wait_condition(
                    lambda: self._reported_at is not None,
                    timeout=max(at - workflow.now(), MIN_TIMER),
                    timeout_summary=f"{'warning before ' if warn else ''}deadline of department "
                    f"{task.department}, due {format_local(deadline.due_at, task.timezone)}",
                )
            except TimeoutError:
                if warn:
                    self._warned = True
                else:
                    self._escalated = True
                flag = Flag.RED if self._escalated else Flag.YELLOW
                workflow.upsert_search_attributes([FLAG_COLOR.value_set(flag.value)])
                await self._tell_case(task)
        # once escalated the part stays open, without timers, until the department reports
        # or the case ends (it cancels its open parts)
        await workflow.wait_condition(lambda: self._reported_at is not None)
        assert self._reported_at is not None
        return DepartmentOutcome(
            case_id=task.case_id,
            department=task.department,
            reported_at=self._reported_at,
            on_time=self._reported_at < deadline.due_at,
            warned=self._warned,
            escalated=self._escalated,
        )

    async def _tell_case(self, task: DepartmentTaskInput) -> None:
        case = workflow.get_external_workflow_handle(task.case_id)
        try:
            await case.signal(CLOCK_SIGNAL, ClockDue(department=task.department))
        except Exception:
            # the case has ended (archived): nothing is waiting for this part any more
            workflow.logger.info("case gone; department clock not delivered")

    @workflow.signal(name=REPORTED_SIGNAL)
    def reported(self, payload: Any) -> None:
        # Any, not the model: a signal that does not decode would fail the workflow task
        try:
            at = Reported.model_validate(payload).reported_at
        except ValidationError:
            workflow.logger.warning("reported signal without a valid reported_at: ignored")
            return
        if self._reported_at is None:
            self._reported_at = at

    @workflow.query(name="outcome")
    def outcome(self) -> Progress:
        return Progress(
            reported_at=self._reported_at, warned=self._warned, escalated=self._escalated
        )


# ---------------------------------------------------------------------- the case's side
# CaseWorkflow calls these after it has recorded a batch of events (with its lock held).


async def follow_departments(
    events: list[Event], state: CaseState, timezone: str, changed: Callable[[str], bool]
) -> None:
    """Start a task per summoned department with a clock, tell a task its department
    has reported, cancel the open tasks of a case that ends. `changed(patch)` says
    whether the case's run takes a change (the case's versioning)."""
    for event in events:
        if isinstance(event, DepartmentsSummoned) and event.deadlines:
            if not changed(PATCH_DEPARTMENT_TASKS):
                return
            for department, deadline in event.deadlines.items():
                await _start_task(state, department, deadline, timezone)
        elif isinstance(event, DepartmentReported) and event.on_time is not None:
            await _tell_task(
                state.case_id, event.department, Reported(reported_at=event.occurred_at)
            )
        elif isinstance(event, CaseArchived):
            for department in state.department_deadlines:
                if department not in state.reported:
                    await _tell_task(state.case_id, department, None)


async def _start_task(state: CaseState, department: str, deadline: Deadline, timezone: str) -> None:
    location = state.case.location
    task = DepartmentTaskInput(
        case_id=state.case_id,
        department=department,
        orgs=[location.street_id, location.district_id],
        deadline=deadline,
        timezone=timezone,
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


async def _tell_task(case_id: str, department: str, reported: Reported | None) -> None:
    """Signal a department's task (None: cancel it). A task an operator ended already is
    no reason to fail the case."""
    handle = workflow.get_external_workflow_handle(task_id(case_id, department))
    try:
        if reported is None:
            await handle.cancel()
        else:
            await handle.signal(REPORTED_SIGNAL, reported)
    except Exception:
        workflow.logger.warning("department task not reachable", extra={"d": department})
