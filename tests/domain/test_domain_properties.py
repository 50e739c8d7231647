"""Properties of the pure decider over random lives of a case (Hypothesis state machine).

A case is opened (some start dispatched and already overdue), then driven through random
sequences of all the commands (mostly valid payloads, raw payloads with a field spoilt,
dropped or added; right and wrong actors: staff of the case's orgs and of other orgs,
residents, departments, the system) and deadline checks, each at a random moment seconds to
days after the last (+08:00, never going back). A refusal (DomainError) is an allowed
outcome; any other exception fails. After every step:

1. one step at a time, only along legal transitions (collect → deliberate → resolve →
   feedback → revisit → archive; feedback/revisit → resolve on a reopen; → collect on a
   return; → archive on a withdrawal or merge), at most one move per command;
2. an archived case accepts nothing: every command is refused, timers yield no events;
   a timer is never refused;
3. all events so far, JSON round-tripped through EVENT_LIST, fold to the state built
   command by command (once archived, also the events as they are, in one JSON document);
4. seq numbers run 1..n without gaps and version == n;
5. the resolve clock moves only by dispatch, escalation, an approved extension (later, by
   what was asked) or a reopen (a fresh clock); the level climbs community → street →
   district one rung at a time, only return_case lowers it (clears it), and
   escalation_count counts the case_escalated events;
6. the flag only gets worse (green → yellow → red);
7. no refusal quotes the reporter's name or phone (also for a refused start input);
8. under a policy with the rules of 2026.3, every open case has a next wake time (no case
   waits without a running clock), also when it is left alone across its clocks.

Also: the policy (the default ladder or a random one) is stamped on every clock; timers
fired at the case's next wake settle within a few checks, the next wake then lying ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain.commands import COMMANDS, CheckDeadlines, Command, parse_command, parse_open_case
from domain.decider import decide, evolve, expected_case_id, fold, open_case
from domain.errors import DomainError
from domain.events import (
    EVENT_LIST,
    CaseArchived,
    CaseClaimed,
    CaseDispatched,
    CaseEscalated,
    CaseMerged,
    CaseReopened,
    CaseReturned,
    CaseWithdrawn,
    DeadlineStarted,
    Event,
    ExtensionDecided,
    RevisitRecorded,
)
from domain.model import (
    Actor,
    Flag,
    HandlingClass,
    Level,
    Outcome,
    Role,
    Satisfaction,
    Severity,
    Source,
    Step,
)
from domain.policy import DEFAULT_POLICY, Clock, CommunityLimits, DeadlinePolicy, LoopLimits
from domain.state import CaseState
from policies import POLICY_2026_2 as DEFAULT_POLICY_2026_2

if TYPE_CHECKING:  # the builders live in this directory's conftest.py (fixtures)
    from conftest import Actors, Story

Runner = Callable[..., tuple[CaseState, list[Event]]]

# database=None: a clean clone runs the same search as any other machine. Only the first
# failure found is shrunk (report_multiple_bugs=False): a failing run takes minutes anyway.
SETTINGS = settings(
    max_examples=300,
    stateful_step_count=30,
    deadline=None,
    database=None,
    report_multiple_bugs=False,
)

# ------------------------------------------------------------------ the legal moves

# (from, to) -> the event types that may make that move
MOVES: dict[tuple[Step, Step], set[str]] = {
    (Step.COLLECT, Step.DELIBERATE): {"case_claimed"},
    (Step.DELIBERATE, Step.RESOLVE): {"deliberation_recorded"},
    (Step.RESOLVE, Step.FEEDBACK): {"resolution_reported"},
    (Step.REVISIT, Step.ARCHIVE): {"case_archived"},
    (Step.FEEDBACK, Step.RESOLVE): {"case_reopened"},
    (Step.REVISIT, Step.RESOLVE): {"case_reopened"},
    (Step.DELIBERATE, Step.COLLECT): {"case_returned", "return_reviewed"},
    (Step.RESOLVE, Step.COLLECT): {"case_returned", "return_reviewed"},
    # the five ways of handling: an immediate case or an explanation is not deliberated
    (Step.DELIBERATE, Step.FEEDBACK): {"resolution_reported"},
    # no answer within the feedback clock
    (Step.FEEDBACK, Step.REVISIT): {"feedback_recorded", "feedback_unanswered"},
    **{(step, Step.ARCHIVE): {"case_archived"} for step in list(Step)[:-2]},
}
FLAGS = list(Flag)

# ------------------------------------------------------------------ who acts

# Names of the conftest's `Actors`, plus a few more built here.
CONFTEST_ACTORS = [
    "grid_worker",
    "grid_worker_2",
    "community_admin",
    "street_officer",
    "district_officer",
    "district_officer_2",
    "resident",
    "water",
    "police",
    "system",
    "other_grid_worker",
    "other_community_admin",
    "other_street_officer",
    "other_district_officer",
    "other_resident",
    "party_member",
    "volunteer",
    "other_party_member",
]
EXTRA_ACTORS = {
    "street_officer_2": Actor(id="so-2", role=Role.STREET_OFFICER, org="S-01"),
    "community_admin_2": Actor(id="ca-2", role=Role.COMMUNITY_ADMIN, org="C-01"),
    "housing": Actor(id="housing-duty", role=Role.DEPARTMENT, org="housing"),
    "fire": Actor(id="fire-duty", role=Role.DEPARTMENT, org="fire"),
    "parks": Actor(id="parks-duty", role=Role.DEPARTMENT, org="parks"),  # never summoned
}
# "reporter": a resident whose id is the reporter's account (or res-1 when there is none);
# "phone_resident": a resident whose account id is the reporter's phone number.
ACTOR_NAMES = [*CONFTEST_ACTORS, *EXTRA_ACTORS, "reporter", "phone_resident"]
DEPARTMENT_ACTORS = ["water", "police", "housing", "fire"]  # their org is their name
HANDLERS = ["grid_worker", "grid_worker_2", "community_admin", "street_officer", "district_officer"]
# party members and volunteers, who take a case offered to their grid (党员接单)
TAKERS = ["party_member", "volunteer", "other_party_member"]
SUPERVISORS = [
    "community_admin",
    "street_officer",
    "street_officer_2",
    "district_officer",
    "district_officer_2",
]
# The actors with a plausible part in each command, on the case's own orgs.
INSIDERS: dict[str, list[str]] = {
    "dispatch": ["community_admin", "street_officer", "district_officer", "system"],
    "claim": [*HANDLERS, *TAKERS],
    "check_in": [*HANDLERS, *TAKERS],
    "record_deliberation": [*HANDLERS, *TAKERS],
    "schedule_deliberation": ["system", "community_admin", "grid_worker"],
    "summon_departments": ["community_admin", "street_officer", "district_officer"],
    "record_department_report": [*DEPARTMENT_ACTORS, "parks"],
    "report_resolution": [*HANDLERS, *TAKERS],
    "record_feedback": ["reporter", "grid_worker", "community_admin", "other_resident"],
    "record_revisit": ["grid_worker", "community_admin", "street_officer", "reporter"],
    "request_extension": HANDLERS,
    "decide_extension": SUPERVISORS,
    "return_case": HANDLERS,
    "review_return": ["community_admin", "community_admin_2", "street_officer", "grid_worker"],
    "add_note": ["reporter", "grid_worker", "system", "water", "parks"],
    "withdraw": ["reporter", "community_admin", "phone_resident"],
    "merge_into": ["system", "community_admin"],
    "urge_case": ["street_officer", "district_officer", "community_admin"],
    "offer_case": ["community_admin", "street_officer", "grid_worker", "party_member"],
}
# The commands that move a case on from each step.
USEFUL: dict[Step, list[str]] = {
    Step.COLLECT: ["dispatch", "claim", "return_case", "schedule_deliberation", "offer_case"],
    Step.DELIBERATE: [
        "record_deliberation",
        "schedule_deliberation",
        "check_in",
        "request_extension",
        "decide_extension",
        "return_case",
    ],
    Step.RESOLVE: [
        "report_resolution",
        "summon_departments",
        "record_department_report",
        "check_in",
        "request_extension",
        "decide_extension",
        "return_case",
    ],
    Step.FEEDBACK: ["record_feedback"],
    Step.REVISIT: ["record_revisit"],
    Step.ARCHIVE: list(COMMANDS),
}

# ------------------------------------------------------------------ payloads

# "{phone}", "{name}" and "{case_id}" are filled in with the case's own values: texts that
# quote the reporter are fine in a payload, never in a refusal.
TEXT = st.sampled_from(
    [
        "lamp replaced",
        "楼道灯已修复",
        "called the reporter on {phone}",
        "met {name} on site",
        "  padded with blanks  ",
    ]
)
PARTICIPANTS = st.lists(st.sampled_from(["{name}", "gw-1", "物业", "楼长"]), min_size=1, max_size=4)
SEVERITIES = [s.value for s in Severity]
CLASSES = [c.value for c in HandlingClass]
SATISFACTIONS = st.sampled_from([s.value for s in Satisfaction])
DEPARTMENTS = st.lists(
    st.sampled_from(["water", "police", "housing", "fire"]), min_size=1, max_size=2, unique=True
)
EXTRA = st.integers(3600, 30 * 86400)
PAYLOADS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "dispatch": st.fixed_dictionaries(
        {"severity": st.sampled_from(SEVERITIES), "handling_class": st.sampled_from(CLASSES)},
        optional={"assignee": st.sampled_from([None, "gw-1", "gw-2", "ca-1", "so-1", "gw-9"])},
    ),
    "claim": st.just({}),
    "check_in": st.just({}),
    "record_deliberation": st.fixed_dictionaries(
        {"participants": PARTICIPANTS, "decision": TEXT},
        optional={"handling_class": st.sampled_from([None, *CLASSES]), "plan": TEXT},
    ),
    "schedule_deliberation": st.fixed_dictionaries(
        {
            "talk_day": st.sampled_from(["2026-11-20", "2026-11-24", "2026-12-01", "2027-01-05"]),
            "agenda_id": st.just("C-01/talk-day"),
        }
    ),
    "summon_departments": st.fixed_dictionaries({"departments": DEPARTMENTS, "reason": TEXT}),
    "record_department_report": st.fixed_dictionaries({"report": TEXT}),
    "report_resolution": st.fixed_dictionaries({"summary": TEXT}),
    "record_feedback": st.fixed_dictionaries(
        {"accepted": st.booleans(), "satisfaction": SATISFACTIONS}, optional={"comment": TEXT}
    ),
    "record_revisit": st.fixed_dictionaries(
        {"satisfaction": SATISFACTIONS}, optional={"notes": TEXT, "in_person": st.booleans()}
    ),
    "request_extension": st.fixed_dictionaries(
        {"extra": st.one_of(EXTRA, EXTRA.map(lambda s: f"PT{s}S")), "reason": TEXT}
    ),
    "decide_extension": st.fixed_dictionaries(
        {"approved": st.booleans()}, optional={"comment": TEXT}
    ),
    "return_case": st.fixed_dictionaries({"reason": TEXT}),
    "review_return": st.fixed_dictionaries(
        {"approved": st.booleans()},
        optional={"assignee": st.sampled_from([None, "gw-1", "gw-2"]), "comment": TEXT},
    ),
    "add_note": st.fixed_dictionaries({"text": TEXT}),
    "withdraw": st.fixed_dictionaries({"reason": TEXT}),
    "merge_into": st.fixed_dictionaries(
        {
            "target_case_id": st.sampled_from(
                ["case-hotline_12345-T-0002", "case-visit-4b1d", "{case_id}"]
            )
        },
        optional={"reason": TEXT},
    ),
    "urge_case": st.fixed_dictionaries({"message": TEXT}),
    "offer_case": st.fixed_dictionaries({}, optional={"note": TEXT}),
}
assert set(PAYLOADS) == set(COMMANDS) == set(INSIDERS)

# Valid payloads that knock on an archived case's door.
ARCHIVE_PAYLOADS: dict[str, dict[str, Any]] = {
    "dispatch": {"severity": "minor", "handling_class": "immediate"},
    "claim": {},
    "check_in": {},
    "record_deliberation": {"participants": ["{name}"], "decision": "fix it"},
    "schedule_deliberation": {"talk_day": "2027-01-05", "agenda_id": "C-01/2027-01-05"},
    "summon_departments": {"departments": ["water"], "reason": "pipes"},
    "record_department_report": {"report": "done"},
    "report_resolution": {"summary": "done"},
    "record_feedback": {"accepted": False, "satisfaction": "unsatisfied"},
    "record_revisit": {"satisfaction": "unsatisfied"},
    "request_extension": {"extra": 86400, "reason": "parts on order"},
    "decide_extension": {"approved": True},
    "return_case": {"reason": "wrong grid"},
    "review_return": {"approved": True},
    "add_note": {"text": "called {name} on {phone}"},
    "withdraw": {"reason": "solved by itself"},
    "merge_into": {"target_case_id": "case-visit-4b1d"},
    "urge_case": {"message": "please hurry, {name} called again"},
    "offer_case": {"note": "for {name}"},
}


# What a careless or hostile client may put in a field instead.
BAD_VALUES = st.sampled_from(
    [
        *(None, "", "   ", 42, -1.5, True, [], {}, "P31D", "PT30M", "a\x00b", "a\u202eb"),
        "x" * 4001,
        *("{phone}", "{name}", "{phone} ", "+{phone}", "case-nope"),
    ]
)
BAD_ACTOR_VALUES = st.sampled_from(
    [None, "", 7, "not a role", "{name}", "{phone} ", "+{phone}", "a/b", "x" * 65]
)

# Time between two steps: nothing, seconds, minutes, hours, days.
ADVANCE = st.one_of(
    st.just(0),
    st.integers(1, 59),
    st.integers(60, 3600),
    st.integers(3600, 2 * 86400),
    st.integers(2 * 86400, 12 * 86400),
)
SECOND = timedelta(seconds=1)
NAMES = st.sampled_from(["王阿姨", "Zhao Xiaoming", "欧阳 建国"])
# The default 7135 ladder, or another policy: the policy is data, the rules hold for any.
LIMITS = st.sampled_from([timedelta(minutes=m) for m in (7, 60, 480, 1440, 4320, 7200, 10080)])
POLICIES = st.one_of(
    st.just(DEFAULT_POLICY),
    st.just(DEFAULT_POLICY_2026_2),
    # the rules of 2026.3 with other limits
    st.builds(
        lambda limits, **spans: DEFAULT_POLICY.model_copy(
            update={"version": "prop-2026.3", "loops": LoopLimits(**limits), **spans}
        ),
        limits=st.fixed_dictionaries(
            {"micro_grid": LIMITS, "grid": LIMITS, "street": LIMITS, "district": LIMITS}
        ),
        intake=LIMITS,
        claim=LIMITS,
        feedback=LIMITS,
        revisit=LIMITS,
        revisit_earliest=LIMITS,
        revisit_reminder=LIMITS,
        on_site=LIMITS,
    ),
    st.builds(
        DeadlinePolicy,
        version=st.just("prop-2026.1"),
        warn_ratio=st.sampled_from([0.5, 0.8, 0.99]),
        on_site=LIMITS,
        resolve_community=st.builds(CommunityLimits, minor=LIMITS, major=LIMITS),
        resolve_street=LIMITS,
        resolve_district=LIMITS,
        revisit=LIMITS,
        district_reminder=LIMITS,
    ),
)


# Whether the policy holds the rules of 2026.3, under which no open case waits without a
# running clock.
def every_step_has_a_clock(policy: DeadlinePolicy) -> bool:
    return None not in (policy.intake, policy.feedback, policy.revisit_reminder, policy.claim)


PHONES = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


def fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(values) if "{" in value else value
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {fill(k, values): fill(v, values) for k, v in value.items()}
    return value


class CaseLife(RuleBasedStateMachine):
    """One case, from open_case to wherever random commands and timers take it."""

    def __init__(self, new_story: Callable[..., Story], actors: Actors, runner: Runner) -> None:
        super().__init__()
        self.new_story = new_story
        self.actors = actors
        self.runner = runner

    # ------------------------------------------------------------ opening

    @initialize(
        source=st.sampled_from(list(Source)),
        source_ref=st.sampled_from([None, "T-0001", "12345-2026-000817"]),
        name=NAMES,
        phone=st.one_of(st.none(), PHONES, PHONES),
        account=st.sampled_from(["res-1", "phone", "none"]),
        overdue=st.sampled_from([0, 0, 1, 2, 3]),
        policy=POLICIES,
    )
    def open(
        self,
        source: Source,
        source_ref: str | None,
        name: str,
        phone: str | None,
        account: str,
        overdue: int,
        policy: DeadlinePolicy,
    ) -> None:
        """Open the case; some start further on, dispatched and left to run out their resolve
        clock `overdue` times (at street, at district, red at district), so that the long
        roads after a red flag are travelled too."""
        resident_id = {"res-1": "res-1", "phone": phone, "none": None}[account]
        self.policy = policy
        story = self.new_story(
            policy=policy,
            source=source.value,
            source_ref=source_ref,
            reporter={"name": name, "phone": phone, "resident_id": resident_id},
        )
        self.state: CaseState = story.state
        self.events: list[Event] = list(story.events)
        self.now: datetime = story.state.opened_at
        self.secrets = [name] + ([phone] if phone else [])
        self.values = {"phone": phone or "13900139000", "name": name, "case_id": self.state.case_id}
        self.reporter = Actor(id=resident_id or "res-1", role=Role.RESIDENT, org="G-01")
        self.archive_checked = False
        # the history as a store would give it back: every batch JSON round-tripped
        self.replayed = self.json_round_trip(self.events)
        if overdue:
            dispatch = {"severity": "minor", "handling_class": "immediate"}
            self.apply(self.command("dispatch", "community_admin", dispatch), 60)
        for _ in range(overdue):
            due = self.state.deadlines[Clock.RESOLVE].due_at
            self.apply(CheckDeadlines(), (due - self.now).total_seconds())

    @staticmethod
    def json_round_trip(events: list[Event]) -> list[Event]:
        return EVENT_LIST.validate_json(EVENT_LIST.dump_json(events))

    def actor(self, name: str) -> Actor:
        if name == "reporter":
            return self.reporter
        if name == "phone_resident":
            return Actor(id=self.values["phone"], role=Role.RESIDENT, org="G-01")
        if name in EXTRA_ACTORS:
            return EXTRA_ACTORS[name]
        actor: Actor = getattr(self.actors, name)
        return actor

    def command(self, name: str, actor: str, payload: dict[str, Any]) -> Command:
        """A valid payload, validated as the workflow's update validator does."""
        raw = {**fill(payload, self.values), "actor": self.actor(actor).model_dump(mode="json")}
        return parse_command(name, raw)

    # ------------------------------------------------------------ the rules

    @rule(
        name=st.sampled_from(list(COMMANDS)),
        actor=st.sampled_from(ACTOR_NAMES),
        data=st.data(),
        advance=ADVANCE,
    )
    def anything(self, name: str, actor: str, data: st.DataObject, advance: int) -> None:
        """Any command, from anyone, with a valid payload."""
        self.apply(self.command(name, actor, data.draw(PAYLOADS[name])), advance)

    @rule(data=st.data(), advance=ADVANCE)
    def progress(self, data: st.DataObject, advance: int) -> None:
        """A command useful in the case's step, from someone with a plausible part in it."""
        name = data.draw(st.sampled_from(USEFUL[self.state.step]), label="command")
        actor = data.draw(st.sampled_from(INSIDERS[name]), label="actor")
        self.apply(self.command(name, actor, data.draw(PAYLOADS[name])), advance)

    @rule(data=st.data(), advance=ADVANCE)
    def forward(self, data: st.DataObject, advance: int) -> None:
        """A next command of the standard path, mostly from the one who would send it."""
        name = data.draw(st.sampled_from(self.next_commands()), label="command")
        right = self.right_actor(name)
        actors = st.sampled_from(INSIDERS[name])
        actor = data.draw(
            st.one_of(st.just(right), st.just(right), actors) if right else actors, label="actor"
        )
        self.apply(self.command(name, actor, data.draw(PAYLOADS[name])), advance)

    # the main road, four times as often as the other rules
    forward_2 = forward
    forward_3 = forward
    forward_4 = forward

    def next_commands(self) -> list[str]:
        state = self.state
        if state.step is Step.COLLECT:
            # now and then the handler sends it back to be dispatched again (退回), or the
            # community offers it to the grid's party members and volunteers (组织建单)
            if not state.dispatched_at:
                return ["dispatch"]
            if state.offered:  # taken by a party member or volunteer, mostly
                return ["claim", "claim", "return_case"]
            return ["claim", "claim", "return_case", "offer_case", "offer_case"]
        if state.pending_extension:
            return ["decide_extension"]
        if state.pending_return:
            return ["review_return"]
        if state.step is Step.DELIBERATE:
            on_site = [] if state.checked_in_at else ["check_in"]
            # with the five ways of handling, an immediate case or an explanation is
            # resolved without a deliberation
            direct = (
                ["report_resolution"]
                if self.policy.handling_paths
                and state.handling_class in (HandlingClass.IMMEDIATE, HandlingClass.EXPLANATION)
                else []
            )
            return ["record_deliberation", "request_extension", *on_site, *direct]
        if state.step is Step.RESOLVE:
            waiting = [d for d in state.summoned if d not in state.reported]
            if waiting:
                return ["record_department_report"]
            joint = self.policy.handling_paths and state.handling_class is HandlingClass.JOINT
            summon = ["summon_departments"] if state.level is not Level.COMMUNITY or joint else []
            return ["report_resolution", "request_extension", *summon]
        if state.step is Step.FEEDBACK:
            return ["record_feedback"]
        if state.step is Step.REVISIT:
            return ["record_revisit"]
        return ["add_note"]

    @precondition(lambda self: self.state.dispatched_at is not None)
    @rule(
        name=st.sampled_from(["withdraw", "merge_into", "add_note", "add_note"]),
        actor=st.sampled_from(["reporter", "community_admin", "system", "district_officer"]),
        data=st.data(),
        advance=ADVANCE,
    )
    def end_early(self, name: str, actor: str, data: st.DataObject, advance: int) -> None:
        """A running case is withdrawn or merged (or only noted), whatever its step."""
        self.apply(self.command(name, actor, data.draw(PAYLOADS[name])), advance)

    @precondition(
        lambda self: self.state.step is Step.COLLECT
        and self.state.dispatched_at is not None
        and self.state.severity is Severity.MINOR
        and self.state.level is Level.COMMUNITY
        and not self.state.offered
        and self.state.assignee is None
    )
    @rule(taker=st.sampled_from(TAKERS), data=st.data(), advance=ADVANCE)
    def offered_and_taken(self, taker: str, data: st.DataObject, advance: int) -> None:
        """组织建单、党员接单: the community offers the case to its grid's party members and
        volunteers, and one of them (or one of another grid) takes it at once."""
        offer = data.draw(PAYLOADS["offer_case"])
        self.apply(self.command("offer_case", "community_admin", offer), advance)
        self.apply(self.command("claim", taker, {}), 0)

    @rule(
        name=st.sampled_from(list(COMMANDS)),
        actor=st.sampled_from(ACTOR_NAMES),
        data=st.data(),
        advance=ADVANCE,
    )
    def raw_payload(self, name: str, actor: str, data: st.DataObject, advance: int) -> None:
        """A payload with one field spoilt, dropped or added, through parse_command."""
        payload: Any = {**data.draw(PAYLOADS[name]), "actor": self.actor(actor).model_dump()}
        field = data.draw(st.sampled_from(sorted(payload)), label="field")
        how = data.draw(st.sampled_from(["drop", "replace", "add", "not an object"]))
        if how == "drop":
            del payload[field]
        elif how == "replace" and field == "actor":
            part = data.draw(st.sampled_from(["id", "role", "org", "whole"]))
            bad = data.draw(BAD_ACTOR_VALUES)
            payload["actor"] = bad if part == "whole" else {**payload["actor"], part: bad}
        elif how == "replace":
            payload[field] = data.draw(BAD_VALUES)
        elif how == "add":
            payload[data.draw(st.sampled_from(["unexpected", "kind", "{phone}", "{name}"]))] = 1
        else:
            payload = data.draw(BAD_VALUES)
        self.now += timedelta(seconds=advance)
        try:
            command = parse_command(name, fill(payload, self.values))
        except DomainError as refusal:
            self.check_refusal(refusal)
            return
        self.apply(command, 0)

    @rule(advance=ADVANCE)
    def tick(self, advance: int) -> None:
        """A deadline timer fires at some moment."""
        self.apply(CheckDeadlines(), advance)

    @rule(offset=st.sampled_from([-1, 0, 1]))
    def tick_at_wake(self, offset: int) -> None:
        """The workflow's timer fires at the case's next wake (give or take a second), and
        the workflow checks again while something is still due: that settles at once, and
        the next wake then lies in the future (no busy loop of timers)."""
        wake = self.state.next_wake()
        at = wake[0] + offset * SECOND if wake else self.now
        self.apply(CheckDeadlines(), max(0.0, (at - self.now).total_seconds()))
        # a late timer may climb the whole ladder: escalate twice, breach, remind, warn
        for _ in range(6):
            wake = self.state.next_wake()
            if wake is None or wake[0] > self.now:
                return
            self.apply(CheckDeadlines(), 0)
        raise AssertionError(f"still due at {self.now} after 7 checks: {self.state.deadlines}")

    @rule(times=st.integers(1, 8))
    def left_alone(self, times: int) -> None:
        """Nobody acts: the case's timers fire at its successive wakes (warnings, breaches,
        escalations, reminders, a resident who never answers), whatever step it is in."""
        for _ in range(times):
            wake = self.state.next_wake()
            if wake is None:
                return
            self.apply(CheckDeadlines(), max(0.0, (wake[0] - self.now).total_seconds()))

    def right_actor(self, name: str) -> str | None:
        """Who would send `name` on the standard path, as far as the pool has them."""
        state = self.state
        known = {self.actor(n).id: n for n in [*HANDLERS, *TAKERS]}
        if name == "claim" and state.offered and state.level is Level.COMMUNITY:
            return "volunteer" if state.version % 2 else "party_member"
        if name in ("dispatch", "withdraw", "merge_into", "summon_departments", "offer_case"):
            return "street_officer" if name == "summon_departments" else "community_admin"
        if name in (
            "claim",
            "record_deliberation",
            "report_resolution",
            "request_extension",
            "return_case",
        ):
            if state.level is Level.STREET:
                return "street_officer"
            if state.level is Level.DISTRICT:
                return "district_officer"
            return known.get(state.assignee or "gw-1")
        if name == "check_in":
            return known.get(state.assignee or "")
        if name == "decide_extension" and state.level and state.pending_extension:
            by = state.pending_extension.requested_by
            if state.level is Level.COMMUNITY:
                return "street_officer_2" if by == "so-1" else "street_officer"
            return "district_officer_2" if by == "do-1" else "district_officer"
        if name == "record_department_report":
            waiting = [d for d in state.summoned if d not in state.reported]
            return waiting[0] if waiting else None
        if name == "record_feedback":
            return "reporter"
        if name == "record_revisit":
            return "grid_worker"
        if name == "review_return" and state.pending_return:
            by = state.pending_return.requested_by
            return "community_admin_2" if by == "ca-1" else "community_admin"
        return None

    # ------------------------------------------------------------ one step, checked

    def apply(self, command: Command | CheckDeadlines, advance: float) -> None:
        self.now += timedelta(seconds=advance)
        before = self.state
        try:
            after, events = self.runner(before, command, self.now, self.policy)
        except DomainError as refusal:
            self.check_refusal(refusal)
            assert not isinstance(command, CheckDeadlines), "a timer is never refused"
            return
        # 2. an archived case accepts nothing
        assert not before.archived or (isinstance(command, CheckDeadlines) and events == []), (
            f"the archived case accepted {command.kind}: {[e.type for e in events]}"
        )
        # 4. numbered from version + 1, without gaps
        assert [e.seq for e in events] == list(range(before.version + 1, after.version + 1))
        state, path = before, [before.step]
        for i, e in enumerate(events):
            assert e.occurred_at == self.now
            if isinstance(command, CheckDeadlines):
                assert e.actor is None and e.command_id is None
            else:
                assert e.actor == command.actor
            state = self.check_event(state, e, events[i - 1] if i else None)
            path.append(state.step)
        assert state == after
        # 1. one step at a time: one command moves the case by at most one transition
        moves = [(a, b) for a, b in pairwise(path) if a is not b]
        assert len(moves) <= 1, f"{command.kind} moved the case along {moves}"
        self.state = after
        self.events.extend(events)
        # 3. each batch is round-tripped once, when it is recorded (the history's JSON is the
        # concatenation of the batches')
        again = self.json_round_trip(events)
        assert again == events
        self.replayed.extend(again)
        if after.archived and not self.archive_checked:
            self.archive_checked = True
            self.check_archive_refuses_everything()

    def check_event(self, prev: CaseState, e: Event, cause: Event | None) -> CaseState:
        """`e` folded into `prev`, checked; `cause` is the event before it in its batch."""
        new = evolve(prev, e)
        # 1. legal step transitions
        if new.step is not prev.step:
            assert e.type in MOVES.get((prev.step, new.step), set()), (
                f"{e.type} moved the case from {prev.step.value} to {new.step.value}"
            )
        if isinstance(e, CaseArchived):
            assert new.archived
            legal = {
                Outcome.COMPLETED: isinstance(cause, RevisitRecorded),
                Outcome.WITHDRAWN: isinstance(cause, CaseWithdrawn),
                Outcome.MERGED: isinstance(cause, CaseMerged),
            }[e.outcome]
            assert legal, f"archived as {e.outcome.value} in {prev.step.value} after {cause}"
        # 6. the flag only gets worse
        assert FLAGS.index(new.flag) >= FLAGS.index(prev.flag), (
            f"{e.type} turned the flag from {prev.flag.value} to {new.flag.value}"
        )
        # 5. the level: set by dispatch, one rung up by escalation, cleared by a return
        if isinstance(e, CaseDispatched):
            # before dispatch, a level only where the intake clock passed the report up
            assert prev.level is None or Clock.INTAKE in prev.deadlines
            assert new.level is e.level
        elif isinstance(e, CaseEscalated) and e.to_loop is not None:
            # the loops of 7135: one loop up, the level follows the loop
            assert prev.loop is e.from_loop and e.from_loop is not None
            assert e.to_loop is e.from_loop.above() and new.loop is e.to_loop
            assert e.from_level is prev.level and new.level is e.to_loop.level
        elif isinstance(e, CaseEscalated):
            assert e.from_level is (prev.level or Level.COMMUNITY)
            assert e.to_level is e.from_level.above() and new.level is e.to_level
        elif isinstance(e, CaseReturned):
            assert new.level is None
        else:
            assert new.level is prev.level, f"{e.type} moved the level"
        assert new.escalation_count == prev.escalation_count + isinstance(e, CaseEscalated)
        # 9. a party member or volunteer takes only a minor community case offered to their
        # grid, and holds it only while it stays claimed by them at community level
        if isinstance(e, CaseClaimed) and e.role is not None:
            assert e.actor is not None and e.actor.role is e.role
            assert e.actor.org == prev.case.location.grid_id
            assert prev.offered and prev.severity is Severity.MINOR
            assert prev.level is Level.COMMUNITY and not prev.claimed
        if new.taken_by_role is not None:
            assert new.offered and new.claimed and new.level is Level.COMMUNITY
            assert new.assignee is not None
        self.check_resolve_clock(prev, e, new)
        # the case's policy version is stamped on every deadline and escalation
        assert getattr(e, "policy_version", self.policy.version) == self.policy.version
        assert all(d.policy_version == self.policy.version for d in new.deadlines.values())
        return new

    @staticmethod
    def check_resolve_clock(prev: CaseState, e: Event, new: CaseState) -> None:
        """5. The resolve clock's end moves only by dispatch, escalation, an approved
        extension (later, by what was asked) or a reopen (a fresh clock from now)."""
        old = prev.deadlines.get(Clock.RESOLVE)
        cur = new.deadlines.get(Clock.RESOLVE)
        if cur is not None:
            assert cur.level is new.level, "the resolve clock runs at another level than the case"
        if isinstance(e, CaseReopened) or (
            isinstance(e, CaseDispatched) and any(d.clock is Clock.RESOLVE for d in e.deadlines)
        ):
            assert cur is not None and cur.started_at == e.occurred_at
        elif isinstance(e, DeadlineStarted) and e.deadline.clock is Clock.RESOLVE:
            # a self-governance case's resolve clock: once deliberated, or after its wait
            assert old is None and cur == e.deadline
            assert cur.started_at <= e.occurred_at
        elif isinstance(e, CaseEscalated) and e.deadline.clock is Clock.RESOLVE:
            assert old is not None and cur is not None
            assert cur.started_at == old.due_at and cur.due_at > old.due_at
        elif isinstance(e, ExtensionDecided) and e.approved and old is not None:
            assert prev.pending_extension is not None and cur is not None
            assert cur.due_at == old.due_at + prev.pending_extension.extra > old.due_at
        elif old is None:
            assert cur is None, f"{e.type} started a resolve clock"
        elif cur is None:
            assert e.type in ("resolution_reported", "case_returned", "case_archived"), (
                f"{e.type} stopped the resolve clock"
            )
        else:
            assert cur.due_at == old.due_at and cur.started_at == old.started_at, (
                f"{e.type} moved the resolve clock from {old.due_at} to {cur.due_at}"
            )

    def check_refusal(self, refusal: DomainError) -> None:
        # 7. refusals name fields and reasons, never the reporter's data
        message = str(refusal)
        assert message
        for secret in self.secrets:
            assert secret not in message, f"the refusal quotes the reporter: {message!r}"

    def check_archive_refuses_everything(self) -> None:
        """2. Every command, from anyone who might have sent it, is refused; timers, at
        once or much later, yield nothing."""
        for name in COMMANDS:
            for actor in sorted({*INSIDERS[name], "community_admin", "system", "reporter"}):
                command = self.command(name, actor, ARCHIVE_PAYLOADS[name])
                try:
                    decide(self.state, command, self.now, self.policy)
                except DomainError as refusal:
                    self.check_refusal(refusal)
                else:
                    raise AssertionError(f"the archived case accepted {name} from {actor}")
        for later in (timedelta(0), timedelta(days=1), timedelta(days=400)):
            assert decide(self.state, CheckDeadlines(), self.now + later, self.policy) == []
        assert self.state.next_wake() is None
        # 3. the whole history, folded from scratch, as is and through one JSON document
        assert fold(self.events) == self.state
        assert fold(self.json_round_trip(self.events)) == self.state

    # ------------------------------------------------------------ the whole history

    @invariant()
    def history_replays(self) -> None:
        events, state = self.events, self.state
        # 4. seq 1..n, version == n
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert state.version == len(events)
        # 3. all events so far, JSON round-tripped, fold to the state built command by
        # command (and the history as it is, too, once the case is archived)
        assert len(self.replayed) == len(events)
        assert fold(self.replayed) == state
        # 5. the counters agree with the history
        types = [e.type for e in events]
        assert state.escalation_count == types.count("case_escalated")
        assert state.reopen_count == types.count("case_reopened")
        assert state.return_count == types.count("case_returned") + types.count("return_requested")
        # 8. under the rules of 2026.3 no open case waits without a running clock
        if every_step_has_a_clock(self.policy) and not state.archived:
            assert state.next_wake() is not None, (
                f"nothing would wake the case in step {state.step.value}: {state.deadlines}"
            )
        if state.archived:
            assert state.deadlines == {} and state.pending_extension is None
            assert types.count("case_archived") == 1 and types[-1] == "case_archived"


# A passing run takes seconds; a failing one shrinks its example for up to Hypothesis's own
# five-minute cap, which the suite's 120 s timeout would cut short before the report.
@pytest.mark.timeout(420)
def test_random_lives_of_a_case_keep_the_loop_s_invariants(
    story: Callable[..., Story], actors: Actors, runner: Runner
) -> None:
    run_state_machine_as_test(lambda: CaseLife(story, actors, runner), settings=SETTINGS)


# Where a start input may go wrong, and what a client may put there instead; "{phone}" and
# "{name}" stand for the reporter's own.
OPEN_CASE_FIELDS = [
    ("source",),
    ("source_ref",),
    ("title",),
    ("category",),
    ("reported_at",),
    ("location", "grid_id"),
    ("location", "address"),
    ("reporter",),
    ("reporter", "name"),
    ("reporter", "phone"),
    ("reporter", "resident_id"),
    ("{phone}",),
    ("reporter", "{name}"),
]


# The fixtures are pure builders (a fresh payload per call): nothing to reset between inputs.
@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=NAMES,
    phone=PHONES,
    spoilt=st.lists(st.tuples(st.sampled_from(OPEN_CASE_FIELDS), BAD_VALUES), max_size=3),
    case_id=st.sampled_from(["own", "case-hotline_12345-{phone}", "case-visit-x", "nope"]),
)
def test_a_refused_start_input_never_quotes_the_reporter(
    name: str,
    phone: str,
    spoilt: list[tuple[tuple[str, ...], Any]],
    case_id: str,
    open_payload_of: Callable[..., dict[str, Any]],
    t0: datetime,
) -> None:
    """7. for the start input: parse_open_case and open_case refuse without quoting the
    reporter's name or phone, whatever field was spoilt and whatever the workflow id."""
    values = {"phone": phone, "name": name}
    payload = open_payload_of(reporter={"name": name, "phone": phone, "resident_id": phone})
    for path, bad in spoilt:
        *parents, last = (fill(part, values) for part in path)
        target = payload
        for part in parents:
            target = target[part] if isinstance(target.get(part), dict) else {}
        target[last] = fill(bad, values)
    try:
        case = parse_open_case(payload)
        own = expected_case_id(case) or f"case-{case.source.value}-1"
        open_case(own if case_id == "own" else fill(case_id, values), case, t0, DEFAULT_POLICY)
    except DomainError as refusal:
        assert name not in str(refusal) and phone not in str(refusal), str(refusal)
