"""Builders for the domain tests: a case, the actors around it, and a way to run commands.

Time is fixed (Asia/Shanghai, +08:00); nothing here reads the real clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from domain.commands import (
    CheckDeadlines,
    CheckIn,
    Claim,
    Command,
    Dispatch,
    OpenCase,
    RecordDeliberation,
    RecordFeedback,
    RecordRevisit,
    ReportResolution,
)
from domain.decider import apply_batch, decide, expected_case_id, open_case
from domain.events import Event
from domain.model import Actor, HandlingClass, Level, Role, Satisfaction, Severity, Step
from domain.policy import DeadlinePolicy
from domain.state import CaseState
from policies import NOTHING_RAISED, POLICY_2026_2

CST = timezone(timedelta(hours=8), "Asia/Shanghai")
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=CST)  # a Tuesday, the weekly talk day
PHONE = "13800138000"


def open_payload(**overrides: Any) -> dict[str, Any]:
    """The JSON start input of a case on grid G-01 / community C-01 / street S-01 / D-01."""
    payload: dict[str, Any] = {
        "source": "hotline_12345",
        "source_ref": "T-0001",
        "title": "楼道灯不亮 (the stairwell light is out)",
        "description": "Building 3, unit 2: the stairwell light has been out for a week.",
        "category": "public_lighting",
        "location": {
            "grid_id": "G-01",
            "community_id": "C-01",
            "street_id": "S-01",
            "district_id": "D-01",
            "address": "Building 3, unit 2",
        },
        "reporter": {"name": "王阿姨", "phone": PHONE, "resident_id": "res-1"},
        "reported_at": T0.isoformat(),
    }
    payload.update(overrides)
    return payload


def make_open_case(**overrides: Any) -> OpenCase:
    return OpenCase.model_validate(open_payload(**overrides))


class Actors:
    """Everyone who may (or may not) act on the case of `open_payload`."""

    grid_worker: Actor = Actor(id="gw-1", role=Role.GRID_WORKER, org="G-01")
    grid_worker_2: Actor = Actor(id="gw-2", role=Role.GRID_WORKER, org="G-01")
    community_admin: Actor = Actor(id="ca-1", role=Role.COMMUNITY_ADMIN, org="C-01")
    street_officer: Actor = Actor(id="so-1", role=Role.STREET_OFFICER, org="S-01")
    district_officer: Actor = Actor(id="do-1", role=Role.DISTRICT_OFFICER, org="D-01")
    district_officer_2: Actor = Actor(id="do-2", role=Role.DISTRICT_OFFICER, org="D-01")
    resident: Actor = Actor(id="res-1", role=Role.RESIDENT, org="G-01")
    water: Actor = Actor(id="water-duty", role=Role.DEPARTMENT, org="water")
    police: Actor = Actor(id="police-duty", role=Role.DEPARTMENT, org="police")
    system: Actor = Actor(id="intake", role=Role.SYSTEM, org="platform")
    # the same roles, but of other orgs (another grid, community, street, district)
    other_grid_worker: Actor = Actor(id="gw-9", role=Role.GRID_WORKER, org="G-02")
    other_community_admin: Actor = Actor(id="ca-9", role=Role.COMMUNITY_ADMIN, org="C-02")
    other_street_officer: Actor = Actor(id="so-9", role=Role.STREET_OFFICER, org="S-02")
    other_district_officer: Actor = Actor(id="do-9", role=Role.DISTRICT_OFFICER, org="D-02")
    other_resident: Actor = Actor(id="res-9", role=Role.RESIDENT, org="G-01")
    # registered in a grid: the case's, and another (组织建单、党员接单)
    party_member: Actor = Actor(id="pm-1", role=Role.PARTY_MEMBER, org="G-01")
    volunteer: Actor = Actor(id="vol-1", role=Role.VOLUNTEER, org="G-01")
    other_party_member: Actor = Actor(id="pm-9", role=Role.PARTY_MEMBER, org="G-02")


ACTORS = Actors()


def run(
    state: CaseState,
    command: Command | CheckDeadlines,
    now: datetime,
    policy: DeadlinePolicy = POLICY_2026_2,
) -> tuple[CaseState, list[Event]]:
    """Decide, number the events, fold them in: the workflow's step, without the workflow."""
    return apply_batch(state, decide(state, command, now, policy))


@dataclass
class Story:
    """One case and everything that happened to it, moved on command by command."""

    state: CaseState
    events: list[Event]
    policy: DeadlinePolicy = POLICY_2026_2
    severity: Severity = Severity.MINOR
    handling_class: HandlingClass = HandlingClass.IMMEDIATE

    def run(self, command: Command | CheckDeadlines, now: datetime) -> list[Event]:
        self.state, events = run(self.state, command, now, self.policy)
        self.events.extend(events)
        return events

    def decide(self, command: Command | CheckDeadlines, now: datetime) -> list[Event]:
        """Decide without recording (to look at a refusal or at what would happen)."""
        return decide(self.state, command, now, self.policy)

    def tick(self, now: datetime) -> list[Event]:
        return self.run(CheckDeadlines(), now)

    # The standard path of a minor community matter, one step at a time.
    DISPATCH_AT = T0 + timedelta(minutes=1)
    CLAIM_AT = T0 + timedelta(minutes=2)
    CHECK_IN_AT = T0 + timedelta(minutes=5)
    DELIBERATE_AT = T0 + timedelta(hours=1)
    RESOLVE_AT = T0 + timedelta(hours=4)
    FEEDBACK_AT = T0 + timedelta(hours=5)
    REVISIT_AT = T0 + timedelta(days=3)

    def dispatch(self, assignee: str | None = None) -> list[Event]:
        return self.run(
            Dispatch(
                actor=ACTORS.community_admin,
                severity=self.severity,
                handling_class=self.handling_class,
                assignee=assignee,
            ),
            self.DISPATCH_AT,
        )

    def handler(self) -> Actor:
        """Who handles the case at its current level on the standard path."""
        if self.state.level is Level.STREET:
            return ACTORS.street_officer
        if self.state.level is Level.DISTRICT:
            return ACTORS.district_officer
        return ACTORS.grid_worker

    def advance(self, to: Step) -> Story:
        """Dispatch if need be, then walk the standard path until the case stands in `to`."""
        steps = list(Step)
        assert steps.index(to) >= steps.index(self.state.step), (self.state.step, to)
        if self.state.dispatched_at is None:
            self.dispatch()
        while self.state.step is not to:
            step = self.state.step
            if step is Step.COLLECT:
                self.run(Claim(actor=self.handler()), self.CLAIM_AT)
                self.run(CheckIn(actor=self.handler()), self.CHECK_IN_AT)
            elif step is Step.DELIBERATE:
                self.run(
                    RecordDeliberation(
                        actor=self.handler(),
                        participants=["王阿姨", "gw-1", "物业"],
                        decision="replace the lamp and the switch",
                    ),
                    self.DELIBERATE_AT,
                )
            elif step is Step.RESOLVE:
                self.run(
                    ReportResolution(actor=self.handler(), summary="lamp replaced"),
                    self.RESOLVE_AT,
                )
            elif step is Step.FEEDBACK:
                self.run(
                    RecordFeedback(
                        actor=ACTORS.resident, accepted=True, satisfaction=Satisfaction.SATISFIED
                    ),
                    self.FEEDBACK_AT,
                )
            else:
                self.run(
                    RecordRevisit(
                        checklist=NOTHING_RAISED,
                        actor=ACTORS.grid_worker,
                        satisfaction=Satisfaction.SATISFIED,
                    ),
                    self.REVISIT_AT,
                )
        return self


def new_story(
    policy: DeadlinePolicy = POLICY_2026_2,
    severity: Severity = Severity.MINOR,
    handling_class: HandlingClass = HandlingClass.IMMEDIATE,
    **case: Any,
) -> Story:
    opened_case = make_open_case(**case)
    case_id = expected_case_id(opened_case) or f"case-{opened_case.source.value}-5f0c2a9e"
    state, opened = apply_batch(None, open_case(case_id, opened_case, T0, policy))
    return Story(
        state=state,
        events=list(opened),
        policy=policy,
        severity=severity,
        handling_class=handling_class,
    )


@pytest.fixture
def actors() -> Actors:
    return ACTORS


@pytest.fixture
def story() -> Callable[..., Story]:
    """story(severity=…, handling_class=…, policy=…, **OpenCase overrides) -> an opened case."""
    return new_story


@pytest.fixture
def t0() -> datetime:
    return T0


@pytest.fixture
def open_payload_of() -> Callable[..., dict[str, Any]]:
    """open_payload_of(**overrides) -> the JSON start input of the standard case."""
    return open_payload


@pytest.fixture
def runner() -> Callable[..., tuple[CaseState, list[Event]]]:
    """runner(state, command, now, policy=POLICY_2026_2) -> (new state, stamped events)."""
    return run
