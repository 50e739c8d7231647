"""`casectl open | act | show | list`: the operators' commands, a client of the case
workflows like any other (through caseloop.client and Temporal's visibility).

Times are shown in the timezone of the deadline policy this machine has (CASE_POLICY or
the built-in one); personal data of the reporter is left out of the text output."""

from __future__ import annotations

import json
import re
import sys
import unicodedata
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import IO, Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
)
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from casectl.common import (
    CannotRun,
    Failed,
    cases,
    catalogue,
    run,
    settings,
    temporal,
    unknown_case,
)
from caseloop.client import WORKFLOW_TYPE, CommandRefused
from domain.commands import COMMANDS, parse_command, parse_open_case
from domain.errors import DomainError, validation_message
from domain.events import EVENT_LIST, PERSONAL_FIELDS, CaseOpened, Event
from domain.model import (
    Evidence,
    Flag,
    HandlingClass,
    Level,
    RevisitChecklist,
    Role,
    Severity,
    Source,
    Step,
)
from domain.policy import Deadline, DeadlinePolicy, format_duration, format_local
from domain.state import CaseState, CaseSummary
from infra.settings import SettingsError
from workflows.search import (
    ASSIGNEE,
    CASE_CATEGORY,
    CASE_LEVEL,
    CASE_ORGS,
    CASE_SEVERITY,
    CASE_SOURCE,
    CASE_STEP,
    DUE_AT,
    ESCALATION_COUNT,
    FLAG_COLOR,
    HANDLING_CLASS,
    REOPEN_COUNT,
)

# A pipe gets whole lines (rich would cut tables to 80 columns); a terminal its width.
out = Console(
    highlight=False, markup=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160
)
err = Console(stderr=True, highlight=False, markup=False)


def register(cli: click.Group) -> None:
    """Add the operators' commands to `cli`."""
    for command in (open_case, act, show, list_cases):
        cli.add_command(command)


# ---------------------------------------------------------------------------- helpers


def _policy() -> DeadlinePolicy:
    try:
        return settings().policy()
    except SettingsError as exc:
        raise CannotRun(str(exc)) from None


def _read(file: IO[str]) -> str:
    try:
        return file.read()
    except UnicodeDecodeError:
        raise CannotRun(f"{file.name}: not UTF-8 text") from None


def _json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CannotRun(
            f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def _local(policy: DeadlinePolicy, at: datetime) -> str:
    return format_local(at, policy.timezone)


def _left(due: datetime, now: datetime) -> str:
    if due > now:
        return f"in {format_duration(due - now)}"
    return f"overdue by {format_duration(now - due)}"


def _value(value: Enum | str | None) -> str:
    if value is None:
        return "—"
    return str(value.value) if isinstance(value, Enum) else value


def _choice(enum: type[Enum]) -> click.Choice[str]:
    return click.Choice([str(member.value) for member in enum])


def _dumps(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


async def _status(client: Client, case_id: str) -> tuple[WorkflowExecutionStatus | None, str]:
    """The case's status and task queue; an unknown case ends the command."""
    try:
        described = await client.get_workflow_handle(case_id).describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            unknown_case(case_id)
        raise
    return described.status, described.task_queue


# ---------------------------------------------------------------------------- open


@click.command("open")
@click.option(
    "--file",
    type=click.File("r", encoding="utf-8"),
    help="an OpenCase JSON file ('-': standard input) instead of the flags below",
)
@click.option("--source", type=_choice(Source))
@click.option(
    "--ref",
    "source_ref",
    help="the source's ticket number: the case id is then case-SOURCE-REF, and reporting "
    "the same ticket again finds that case",
)
@click.option("--title")
@click.option("--description")
@click.option("--category", help="a service code, e.g. public_facilities (`casectl services`)")
@click.option("--grid", help="grid id")
@click.option("--community", help="community id")
@click.option("--street", help="street id")
@click.option("--district", help="district id")
@click.option("--address")
@click.option("--reporter-name")
@click.option("--reporter-phone")
@click.option("--resident-id", help="the reporting resident's account id")
@click.option("--reported-at", help="ISO-8601 time with offset (default: now)")
def open_case(file: IO[str] | None, **flags: str | None) -> None:
    """Open a case from the flags or from an OpenCase JSON file; prints the case id.

    Opening the same source ticket (--source and --ref) twice opens one case: the second
    time says it existed already (even if it is archived)."""
    if file is not None:
        flagged = sorted(f"--{name.replace('_', '-')}" for name, v in flags.items() if v)
        if flagged:
            raise CannotRun(f"--file: give the case as a file or as flags, not both ({flagged[0]})")
        payload = _json(_read(file), file.name)
    else:
        payload = _payload_from_flags(flags)
    try:
        case = parse_open_case(payload)
        catalogue(settings()).service(case.category)
    except DomainError as exc:
        raise CannotRun(str(exc)) from None

    async def work() -> None:
        opened = await (await cases(settings())).open_case(case)
        if opened.created:
            out.print(f"created {opened.case_id}")
        else:
            out.print(f"existing {opened.case_id} (this ticket was reported before)")

    run(work)


_REQUIRED_FLAGS = (
    "source",
    "title",
    "description",
    "category",
    "grid",
    "community",
    "street",
    "district",
    "reporter_name",
)


def _payload_from_flags(flags: dict[str, str | None]) -> dict[str, Any]:
    missing = [f"--{name.replace('_', '-')}" for name in _REQUIRED_FLAGS if not flags[name]]
    if missing:
        raise CannotRun(f"missing {', '.join(missing)} (or give the case with --file)")

    def given(**fields: str | None) -> dict[str, str]:
        return {name: value for name, value in fields.items() if value}

    return given(
        source=flags["source"],
        source_ref=flags["source_ref"],
        title=flags["title"],
        description=flags["description"],
        category=flags["category"],
        reported_at=flags["reported_at"]
        or datetime.now().astimezone().isoformat(timespec="seconds"),
    ) | {
        "location": given(
            grid_id=flags["grid"],
            community_id=flags["community"],
            street_id=flags["street"],
            district_id=flags["district"],
            address=flags["address"],
        ),
        "reporter": given(
            name=flags["reporter_name"],
            phone=flags["reporter_phone"],
            resident_id=flags["resident_id"],
        ),
    }


# ---------------------------------------------------------------------------- act

_ACTOR = re.compile(rf"^(.+?):({'|'.join(r.value for r in Role)}):(.+)$")


def _actor(value: str) -> dict[str, str]:
    match = _ACTOR.match(value)
    if match is None:
        roles = ", ".join(r.value for r in Role)
        raise CannotRun(f"--actor: expected ID:ROLE:ORG with ROLE one of {roles}")
    return {"id": match[1], "role": match[2], "org": match[3]}


@click.command(
    epilog=f"COMMAND is one of: {', '.join(COMMANDS)}.",
)
@click.argument("case_id", metavar="CASE")
@click.argument("command", metavar="COMMAND", type=click.Choice(list(COMMANDS)))
@click.option("--json", "payload_json", metavar="JSON", help="the command's payload")
@click.option(
    "--file",
    type=click.File("r", encoding="utf-8"),
    help="read the payload from a file ('-': standard input)",
)
@click.option("--actor", metavar="ID:ROLE:ORG", help="who sends it: fills the payload's actor")
@click.option(
    "--command-id",
    help="the update id (default: a new one, printed first): sending a command again with "
    "the same id applies it once",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="how to print the case's summary",
)
def act(
    case_id: str,
    command: str,
    payload_json: str | None,
    file: IO[str] | None,
    actor: str | None,
    command_id: str | None,
    output: str,
) -> None:
    """Send COMMAND to CASE and print where the case stands afterwards.

    A command the case refuses exits with status 1 and the reason."""
    if payload_json is not None and file is not None:
        raise CannotRun("--json and --file: give the payload once")
    payload: Any = {}
    if payload_json is not None:
        payload = _json(payload_json, "--json")
    elif file is not None:
        payload = _json(_read(file), file.name)
    if actor is not None:
        if not isinstance(payload, dict) or "actor" in payload:
            raise CannotRun("--actor: the payload must be an object without an actor")
        payload["actor"] = _actor(actor)
    try:
        parse_command(command, payload)
    except DomainError as exc:
        raise CannotRun(str(exc)) from None
    command_id = command_id or uuid.uuid4().hex
    err.print(f"command id: {command_id}")

    async def work() -> CaseSummary:
        client = await cases(settings())
        try:
            return await client.send(case_id, command, payload, command_id=command_id)
        except CommandRefused as exc:
            raise Failed(f"refused: {exc}") from None
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            await _status(client.client, case_id)  # an unknown case ends here
            raise Failed(f"refused: {case_id} is archived and accepts no more commands") from None

    summary = run(work)
    if output == "json":
        _dumps(summary.model_dump(mode="json"))
        return
    policy = _policy()
    grid = Table.grid(padding=(0, 2))
    for label, value in (
        ("case", f"{summary.case_id} (version {summary.version})"),
        ("step", summary.step.value),
        ("level", _value(summary.level) + (f", {summary.loop.value} loop" if summary.loop else "")),
        ("light", _value(summary.light)),
        ("flag", f"{summary.flag.value} (worst so far)"),
        (
            "assignee",
            _value(summary.assignee) + (", return under review" if summary.pending_return else ""),
        ),
        (
            "due",
            f"{_local(policy, summary.due_at)} {policy.timezone}, "
            f"{_left(summary.due_at, datetime.now(UTC))}"
            if summary.due_at
            else "—",
        ),
        ("reopened", str(summary.reopen_count)),
        ("escalated", str(summary.escalation_count)),
    ):
        grid.add_row(label, value)
    out.print(grid)


# ---------------------------------------------------------------------------- show


@click.command()
@click.argument("case_id", metavar="CASE")
@click.option("--json", "as_json", is_flag=True, help="print the state and events as JSON")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    default=10.0,
    show_default=True,
    help="seconds to wait for a worker to answer",
)
def show(case_id: str, as_json: bool, timeout: float) -> None:
    """Show a case: its state, open deadlines and the events of its current run.

    A worker answers (an archived case too, by replaying its history): with none running
    on the case's task queue the command says so after --timeout seconds."""

    async def work() -> tuple[CaseState, list[Event]]:
        client = await temporal(settings())
        status, task_queue = await _status(client, case_id)
        try:
            return await _query(client, case_id, timedelta(seconds=timeout))
        except WorkflowQueryFailedError as exc:
            raise CannotRun(f"{case_id}: the worker could not answer: {exc}") from None
        except RPCError as exc:
            if exc.status not in (
                RPCStatusCode.CANCELLED,
                RPCStatusCode.DEADLINE_EXCEEDED,
                RPCStatusCode.FAILED_PRECONDITION,
            ):
                raise
            if status is None or status is WorkflowExecutionStatus.RUNNING:
                why = f"{case_id} is open, but"
            else:
                why = (
                    f"{case_id} is closed ({status.name.lower()}); a closed case is read by "
                    "a worker replaying its history, and"
                )
            raise CannotRun(
                f"{why} no worker on task queue {task_queue} answered within {timeout:g} s "
                f"({exc.message}): is the worker running?"
            ) from None

    state, events = run(work)
    if as_json:
        _dumps(
            {
                "state": state.model_dump(mode="json"),
                "events": EVENT_LIST.dump_python(events, mode="json"),
            }
        )
        return
    _print_case(state, events, _policy(), datetime.now(UTC))


async def _query(client: Client, case_id: str, wait: timedelta) -> tuple[CaseState, list[Event]]:
    handle = client.get_workflow_handle(case_id)
    state = await handle.query("state", rpc_timeout=wait)
    if state is None:
        raise CannotRun(f"{case_id} is still opening; try again in a moment")
    events = await handle.query("events", rpc_timeout=wait)
    try:
        return CaseState.model_validate(state), EVENT_LIST.validate_python(events)
    except ValueError as exc:  # a worker of another version than this casectl
        raise CannotRun(validation_message(f"{case_id}: the worker's answer", exc)) from None


def _print_case(
    state: CaseState, events: list[Event], policy: DeadlinePolicy, now: datetime
) -> None:
    case = state.case
    location = case.location
    facts = Table.grid(padding=(0, 2))
    for label, value in (
        ("case", state.case_id),
        ("title", case.title),
        ("step", state.step.value + (f" ({_value(state.outcome)})" if state.outcome else "")),
        ("level", _value(state.level) + (f", {state.loop.value} loop" if state.loop else "")),
        ("light", state.light.value),
        ("flag", f"{state.flag.value} (worst so far)"),
        ("assignee", _value(state.assignee) + (" (claimed)" if state.claimed else "")),
        ("category", case.category),
        ("severity", _value(state.severity)),
        ("handling", _value(state.handling_class)),
        ("source", case.source.value + (f" {case.source_ref}" if case.source_ref else "")),
        (
            "orgs",
            f"grid {location.grid_id}, community {location.community_id}, "
            f"street {location.street_id}, district {location.district_id}",
        ),
        ("opened", _local(policy, state.opened_at)),
        ("updated", f"{_local(policy, state.updated_at)} ({state.last_event})"),
        (
            "counts",
            f"reopened {state.reopen_count}, escalated {state.escalation_count}, "
            f"returned {state.return_count}, notes {state.note_count}",
        ),
        ("policy", f"{state.policy_version}, times in {policy.timezone}"),
    ):
        facts.add_row(label, value)
    if state.pending_extension is not None:
        ext = state.pending_extension
        facts.add_row(
            "extension",
            f"{format_duration(ext.extra)} asked by {ext.requested_by}, awaiting a decision",
        )
    if state.pending_return is not None:
        ret = state.pending_return
        facts.add_row(
            "return",
            f"asked by {ret.requested_by} {_local(policy, ret.requested_at)}, under review",
        )
    if state.feedback_unanswered:
        facts.add_row("feedback", "no answer from the resident (not rated)")
    if state.urge_count and state.last_urged_at is not None:
        facts.add_row(
            "urged", f"{state.urge_count}×, last {_local(policy, state.last_urged_at)} (督办)"
        )
    for breach in state.breaches:
        where = f"{breach.loop.value} loop" if breach.loop else f"{breach.level.value} level"
        facts.add_row(
            "record",
            f"{breach.clock.value} clock ran out {_local(policy, breach.due_at)} ({where})",
        )
    if state.merged_into:
        facts.add_row("merged into", state.merged_into)
    if state.merged_reports:  # their reporters are owed the outcome too (report_merged)
        facts.add_row("merged reports", ", ".join(state.merged_reports))
    if state.archived_at:
        facts.add_row("archived", _local(policy, state.archived_at))
    out.print(facts)
    if state.policy_version != policy.version:
        err.print(
            f"note: the case runs under policy {state.policy_version}, this machine has "
            f"{policy.version}; times are shown in {policy.timezone}"
        )

    if state.deadlines or state.department_deadlines:
        deadlines = Table(title="open deadlines", title_justify="left")
        for column in ("clock", "level", "due", "left", "state"):
            deadlines.add_column(column, no_wrap=column != "state")
        for name, d in [
            *((d.clock.value, d) for d in state.deadlines.values()),
            *(
                (f"department {dept}", d)
                for dept, d in state.department_deadlines.items()
                if dept not in state.reported
            ),
        ]:
            mark = "breached" if d.breached else "warned" if d.warned else "running"
            deadlines.add_row(
                name, d.level.value, _local(policy, d.due_at), _left(d.due_at, now), mark
            )
        out.print(deadlines)

    if state.evidence:
        evidence = Table(
            title="evidence (references; the files are kept elsewhere)", title_justify="left"
        )
        for column in ("seq", "step", "event", "by", "type", "sha256"):
            evidence.add_column(column, no_wrap=True)
        evidence.add_column("uri", overflow="fold")
        evidence.add_column("caption")
        for item in state.evidence:
            evidence.add_row(
                str(item.seq),
                item.step.value,
                item.event,
                item.by or "—",
                item.evidence.media_type,
                item.evidence.sha256[:12] + "…",
                item.evidence.uri,
                item.evidence.caption or "",
            )
        out.print(evidence)

    timeline = Table(title="events", title_justify="left")
    for column in ("seq", "time", "type", "actor"):
        timeline.add_column(column, no_wrap=True)
    timeline.add_column("detail")
    for event in events:
        if event.actor is not None:
            who = f"{event.actor.id} ({event.actor.role.value})"
        else:
            who = "—" if event.type in _NOT_BY_TIMERS else "timer"
        timeline.add_row(
            str(event.seq),
            _local(policy, event.occurred_at),
            Text(event.type, style="bold"),
            who,
            _detail(event, policy),
        )
    out.print(timeline)
    if events and events[0].seq > 1:
        out.print(
            f"(the case continued as new: events before seq {events[0].seq} are in its "
            "earlier runs and in case_events)"
        )


_ENVELOPE = frozenset({"seq", "occurred_at", "actor", "command_id", "type"})
# events without an actor that are not a clock's: the opening, a merged case's report
_NOT_BY_TIMERS = frozenset({"case_opened", "report_merged"})


def _detail(event: Event, policy: DeadlinePolicy) -> str:
    """A short line of the event's own fields (the report's personal data left out)."""
    if isinstance(event, CaseOpened):
        return f"{event.case.category}: {_shorten(event.case.title, 60)}"
    personal = {path[0] for path in PERSONAL_FIELDS.get(event.type, ()) if len(path) == 1}
    parts = []
    for name in type(event).model_fields:
        if name in _ENVELOPE or name in personal:
            continue
        value = getattr(event, name)
        text = _brief(value, policy)
        if text:
            items = value if isinstance(value, list) else [value]
            clocks = all(isinstance(item, Deadline) for item in items)  # named by their clock
            parts.append(text if clocks else f"{name} {text}")
    return "; ".join(parts)


def _brief(value: object, policy: DeadlinePolicy) -> str | None:
    if value is None:
        return None
    if isinstance(value, Deadline):
        return f"{value.clock.value} due {_local(policy, value.due_at)}"
    if isinstance(value, Evidence):  # listed in full in the evidence table
        return value.media_type
    if isinstance(value, RevisitChecklist):  # 三必问: which of the three raised something
        raised = [name for name in type(value).model_fields if getattr(value, name)]
        return "asked, " + (f"raised: {', '.join(raised)}" if raised else "nothing raised")
    if isinstance(value, datetime):
        return _local(policy, value)
    if isinstance(value, list):
        return ", ".join(filter(None, (_brief(v, policy) for v in value)))
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _shorten(str(value), 40)


def _shorten(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


# ---------------------------------------------------------------------------- list

_UNSAFE = frozenset("'\"\\`")


def _safe(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Refuse a value that could break out of a quoted visibility-query literal."""
    for item in value if isinstance(value, tuple) else (value,):
        if item is not None and (
            not item
            or any(ch in _UNSAFE or unicodedata.category(ch) in ("Cc", "Cf") for ch in item)
        ):
            raise click.BadParameter("must be non-empty, without quotes or control characters")
    return value


_DURATION = re.compile(r"(?:\d+[wdhm])+")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    if not _DURATION.fullmatch(value):
        raise click.BadParameter("expected a duration such as 30m, 24h, 3d or 1d12h")
    return sum(
        (timedelta(**{_UNITS[unit]: int(n)}) for n, unit in re.findall(r"(\d+)(\w)", value)),
        timedelta(),
    )


def list_query(
    keywords: dict[SearchAttributeKey[str], str | None],
    orgs: Sequence[str] = (),
    due_before: datetime | None = None,
    reopened: bool = False,
    escalated: bool = False,
    open_only: bool = True,
    raw: str | None = None,
) -> str:
    """The visibility query of `casectl list`; values must have passed `_safe`."""
    parts = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    # each run of a case that continued as new is listed too: only its latest counts
    parts.append(
        "ExecutionStatus = 'Running'" if open_only else "ExecutionStatus != 'ContinuedAsNew'"
    )
    parts += [f"{key.name} = '{value}'" for key, value in keywords.items() if value is not None]
    parts += [f"{CASE_ORGS.name} = '{org}'" for org in orgs]
    if due_before is not None:
        parts.append(f"{DUE_AT.name} < '{due_before.astimezone(UTC).isoformat()}'")
    if reopened:
        parts.append(f"{REOPEN_COUNT.name} > 0")
    if escalated:
        parts.append(f"{ESCALATION_COUNT.name} > 0")
    if raw:
        parts.append(f"({raw})")
    return " AND ".join(parts)


def _row(execution: WorkflowExecution) -> dict[str, Any]:
    attrs = execution.typed_search_attributes
    due = attrs.get(DUE_AT)
    status = execution.status
    return {
        "case_id": execution.id,
        "status": status.name.lower() if status is not None else None,
        "step": attrs.get(CASE_STEP),
        "level": attrs.get(CASE_LEVEL),
        "flag": attrs.get(FLAG_COLOR),
        "assignee": attrs.get(ASSIGNEE),
        "due_at": due.isoformat() if due else None,
        "category": attrs.get(CASE_CATEGORY),
        "severity": attrs.get(CASE_SEVERITY),
        "handling_class": attrs.get(HANDLING_CLASS),
        "source": attrs.get(CASE_SOURCE),
        "orgs": attrs.get(CASE_ORGS),
        "reopen_count": attrs.get(REOPEN_COUNT),
        "escalation_count": attrs.get(ESCALATION_COUNT),
        "opened_at": execution.start_time.isoformat(),
        "closed_at": execution.close_time.isoformat() if execution.close_time else None,
    }


@click.command("list")
@click.option("--step", type=_choice(Step))
@click.option("--level", type=_choice(Level))
@click.option("--category", callback=_safe)
@click.option("--severity", type=_choice(Severity))
@click.option("--handling-class", type=_choice(HandlingClass))
@click.option("--assignee", callback=_safe)
@click.option("--flag", type=_choice(Flag))
@click.option("--source", type=_choice(Source))
@click.option(
    "--org",
    "orgs",
    multiple=True,
    callback=_safe,
    help="a grid, community, street or district id; repeated: under all of them",
)
@click.option(
    "--due-within",
    callback=_duration,
    metavar="DURATION",
    help="due before now + DURATION (30m, 24h, 3d, 1w; overdue ones included)",
)
@click.option("--overdue", is_flag=True, help="past the due time")
@click.option("--reopened", is_flag=True, help="reopened at least once")
@click.option("--escalated", is_flag=True, help="escalated at least once")
@click.option(
    "--open/--all", "open_only", default=True, help="only open cases (default), or all of them"
)
@click.option("--query", "raw", help="a Temporal visibility query, ANDed with the rest")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON array")
def list_cases(
    step: str | None,
    level: str | None,
    category: str | None,
    severity: str | None,
    handling_class: str | None,
    assignee: str | None,
    flag: str | None,
    source: str | None,
    orgs: tuple[str, ...],
    due_within: timedelta | None,
    overdue: bool,
    reopened: bool,
    escalated: bool,
    open_only: bool,
    raw: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List the cases matching every filter given (open cases by default), from the
    search attributes of the case workflows."""
    now = datetime.now(UTC)
    bounds = [now] if overdue else []
    if due_within is not None:
        bounds.append(now + due_within)
    query = list_query(
        {
            CASE_STEP: step,
            CASE_LEVEL: level,
            CASE_CATEGORY: category,
            CASE_SEVERITY: severity,
            HANDLING_CLASS: handling_class,
            ASSIGNEE: assignee,
            FLAG_COLOR: flag,
            CASE_SOURCE: source,
        },
        orgs,
        min(bounds) if bounds else None,
        reopened,
        escalated,
        open_only,
        raw,
    )

    async def work() -> list[dict[str, Any]]:
        client = await temporal(settings())
        try:
            return [_row(e) async for e in client.list_workflows(query, limit=limit)]
        except RPCError as exc:
            if raw and exc.status is RPCStatusCode.INVALID_ARGUMENT:
                raise CannotRun(f"--query: Temporal refused the query: {exc.message}") from None
            raise

    rows = run(work)
    if as_json:
        _dumps(rows)
        return
    policy = _policy()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("case", "status", "step", "level", "flag", "assignee", "due"):
        if column != "status" or not open_only:
            table.add_column(column, no_wrap=True, min_width=len(column))
    table.add_column("reopened", justify="right", no_wrap=True)
    table.add_column("escalated", justify="right", no_wrap=True)
    for row in rows:
        due = datetime.fromisoformat(row["due_at"]) if row["due_at"] else None
        table.add_row(
            row["case_id"],
            *([] if open_only else [row["status"]]),
            row["step"],
            row["level"],
            Text(row["flag"] or "", style={"red": "red", "yellow": "yellow"}.get(row["flag"], "")),
            row["assignee"],
            Text(_local(policy, due), style="red" if due < now else "") if due else None,
            str(row["reopen_count"] or 0),
            str(row["escalation_count"] or 0),
        )
    out.print(table)
    more = " (the limit: --limit shows more)" if len(rows) == limit else ""
    counted = "1 case" if len(rows) == 1 else f"{len(rows)} cases"
    out.print(f"{counted}{more}, due times in {policy.timezone}")
