"""Commands: what people and systems ask of a case (imperative names).

`OpenCase` is the start input of CaseWorkflow; every other command is a Workflow Update
whose name is in `COMMANDS`. All carry the `actor` who asks.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from domain.errors import DomainError, validation_message
from domain.model import (
    Actor,
    AwareDatetime,
    CaseId,
    EvidenceList,
    Frozen,
    HandlingClass,
    Location,
    OrgId,
    Reporter,
    RevisitChecklist,
    Satisfaction,
    Severity,
    ShortText,
    Source,
    SourceRef,
    Text,
    Title,
)


class OpenCase(Frozen):
    """The start input: one report of a resident's matter."""

    source: Source
    source_ref: SourceRef | None = None
    title: Title
    description: Text
    category: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    location: Location
    reporter: Reporter
    reported_at: AwareDatetime


class Command(Frozen):
    actor: Actor
    kind: str  # the update name: each command fixes it to its own (a Literal with a default)


class Dispatch(Command):
    """审批分配: classify the case and send it to the level that handles it."""

    kind: Literal["dispatch"] = "dispatch"
    severity: Severity
    handling_class: HandlingClass
    assignee: OrgId | None = None  # a named grid worker or officer; anyone of the level if unset


class Claim(Command):
    """认领: the handler takes the case."""

    kind: Literal["claim"] = "claim"


class CheckIn(Command):
    """The handler is on site (the 7 of 7135)."""

    kind: Literal["check_in"] = "check_in"
    evidence: EvidenceList = []  # e.g. a photo taken on arrival


class RecordDeliberation(Command):
    """商议说事: who met, what they decided, how it will be handled."""

    kind: Literal["record_deliberation"] = "record_deliberation"
    participants: Annotated[list[ShortText], Field(min_length=1, max_length=50)]
    decision: Text
    handling_class: HandlingClass | None = None
    plan: Text | None = None


class ScheduleDeliberation(Command):
    """The community's talk-day agenda puts a self-governance case on a talk day; the
    case's deliberation clock then ends at local midnight after that day."""

    kind: Literal["schedule_deliberation"] = "schedule_deliberation"
    talk_day: date
    agenda_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/-]{1,100}$")]


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not name the same department twice")
    return values


class SummonDepartments(Command):
    """街道吹哨、部门报到: the street summons named departments."""

    kind: Literal["summon_departments"] = "summon_departments"
    departments: Annotated[
        list[OrgId], Field(min_length=1, max_length=20), AfterValidator(_distinct)
    ]
    reason: Text


class RecordDepartmentReport(Command):
    """A summoned department reports its part as done (部门报到)."""

    kind: Literal["record_department_report"] = "record_department_report"
    report: Text


class ReportResolution(Command):
    """解事: the handler reports the matter resolved; feedback follows."""

    kind: Literal["report_resolution"] = "report_resolution"
    summary: Text
    evidence: EvidenceList = []  # e.g. photos of the result, the signed acceptance


class RecordFeedback(Command):
    """反馈息事: the resident accepts the result or not."""

    kind: Literal["record_feedback"] = "record_feedback"
    accepted: bool
    satisfaction: Satisfaction
    comment: Text | None = None


class RecordRevisit(Command):
    """回访宁事: someone returns to check it stayed solved."""

    kind: Literal["record_revisit"] = "record_revisit"
    satisfaction: Satisfaction
    notes: Text | None = None
    in_person: bool = True
    evidence: EvidenceList = []
    # 三必问; required where the case's policy says so (`revisit_checklist`)
    checklist: Annotated[RevisitChecklist | None, Field(exclude_if=lambda v: v is None)] = None


def _sensible_extension(value: timedelta) -> timedelta:
    if not timedelta(hours=1) <= value <= timedelta(days=30):
        raise ValueError("must be between PT1H and P30D")
    return value


class RequestExtension(Command):
    """The handler asks for more time, with a reason; the supervisor decides."""

    kind: Literal["request_extension"] = "request_extension"
    extra: Annotated[timedelta, AfterValidator(_sensible_extension)]
    reason: Text


class DecideExtension(Command):
    """The supervisor (the officer one level up) approves or refuses an extension."""

    kind: Literal["decide_extension"] = "decide_extension"
    approved: bool
    comment: Text | None = None


class ReturnCase(Command):
    """退回: wrong grid, wrong level, not a government matter; back to dispatch."""

    kind: Literal["return_case"] = "return_case"
    reason: Text


class ReviewReturn(Command):
    """退单审核: the dispatcher (the case's community admin, or an officer of its level or
    above) reviews a return. Approved: the case goes to another handler (named, or anyone
    of its level), who claims it again; refused: back to the handler who asked. The
    resolve clock runs on either way."""

    kind: Literal["review_return"] = "review_return"
    approved: bool
    assignee: OrgId | None = None
    comment: Text | None = None


class AddNote(Command):
    """A note on the case from anyone with a part in it; changes nothing else."""

    kind: Literal["add_note"] = "add_note"
    text: Text


class Withdraw(Command):
    """The resident (or the community) withdraws the case; it is archived."""

    kind: Literal["withdraw"] = "withdraw"
    reason: Text


class MergeInto(Command):
    """The same matter reported twice: this case ends, the other carries on."""

    kind: Literal["merge_into"] = "merge_into"
    target_case_id: CaseId
    reason: Text | None = None


class UrgeCase(Command):
    """督办/催办: an officer of the case's street or district urges it on. Recorded and
    counted; the handler, level and clocks stay as they are."""

    kind: Literal["urge_case"] = "urge_case"
    message: Text


class OfferCase(Command):
    """组织建单: the case's community admin (or a street or district officer above it)
    offers a dispatched minor case at community level, not yet claimed, to the party
    members and volunteers of its grid; one of them takes it with `claim` (党员接单)."""

    kind: Literal["offer_case"] = "offer_case"
    note: Text | None = None


class CheckDeadlines(Frozen):
    """Internal: a deadline timer fired. Not an update; the workflow sends it itself."""

    kind: Literal["check_deadlines"] = "check_deadlines"


class CheckDepartment(Frozen):
    """Internal: a summoned department's task says its clock needs attention."""

    kind: Literal["check_department"] = "check_department"
    department: OrgId


class MergedReport(Frozen):
    """Internal: signal `merged_report`, from a case merged into another to that case: the
    report merged into it and its reporter, so that the outcome can reach them too. The
    reporter is personal data: never logged, sealed in the event store."""

    kind: Literal["merged_report"] = "merged_report"
    merged_case_id: CaseId
    source: Source
    source_ref: SourceRef | None = None
    reporter: Reporter


# Update name -> command model: every Command above, in their order (CaseWorkflow has an
# update for each; a test compares them). The names are the public contract
# (docs/architecture.md, "Commands").
COMMANDS: dict[str, type[Command]] = {
    model.model_fields["kind"].default: model for model in Command.__subclasses__()
}


def parse_command(name: str, payload: object) -> Command:
    """Validate an update payload into its command model (raises DomainError)."""
    model = COMMANDS.get(name)
    if model is None:
        raise DomainError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    if not isinstance(payload, dict):
        raise DomainError(f"{name}: the payload must be a JSON object")
    if payload.get("kind", name) != name:
        raise DomainError(f"{name}: kind: must be left out or equal the command name")
    try:
        return model.model_validate({**payload, "kind": name})
    except ValueError as exc:
        raise DomainError(validation_message(name, exc)) from None


def parse_open_case(payload: object) -> OpenCase:
    if not isinstance(payload, dict):
        raise DomainError("OpenCase: the start input must be a JSON object")
    try:
        return OpenCase.model_validate(payload)
    except ValueError as exc:
        raise DomainError(validation_message("OpenCase", exc)) from None
