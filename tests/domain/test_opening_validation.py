"""A command that reaches a case before its opening is recorded (with the start, or
moments after) is judged by the update's validator against the state the opening will
have, with the built-in policy standing in for the case's own, which is not loaded yet.
That is sound only while no verdict on an opened, undispatched case depends on the policy:
checked here for every command, every actor, and policies that differ in every field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from domain.commands import COMMANDS, OpenCase, parse_command
from domain.decider import apply_batch, decide, open_case
from domain.errors import DomainError
from domain.policy import DEFAULT_POLICY, DeadlinePolicy, WorkingDays
from policies import POLICY_2026_2

OTHER_POLICIES = [
    DeadlinePolicy(version="bare"),  # no deliberation, no department clocks, no rules
    DEFAULT_POLICY.model_copy(
        update={
            "version": "far-west",
            "timezone": "Pacific/Honolulu",
            "on_site": timedelta(hours=6),
            "deliberation": WorkingDays(working_days=20),
            "department": timedelta(days=30),
            "revisit_rules": {},
            "revisit_checklist": True,
        }
    ),
    POLICY_2026_2,  # no intake clock: the opening records one event fewer
]

BODIES: dict[str, dict[str, Any]] = {
    "dispatch": {"severity": "minor", "handling_class": "immediate"},
    "claim": {},
    "check_in": {},
    "record_deliberation": {"participants": ["网格员"], "decision": "换灯"},
    "schedule_deliberation": {"talk_day": date(2026, 11, 24), "agenda_id": "C-01/2026-11-24"},
    "summon_departments": {"departments": ["water"], "reason": "管网"},
    "record_department_report": {"report": "ok"},
    "report_resolution": {"summary": "已修复"},
    "record_feedback": {"accepted": True, "satisfaction": "satisfied"},
    "record_revisit": {"satisfaction": "satisfied"},
    "request_extension": {"extra": "P2D", "reason": "等待配件"},
    "decide_extension": {"approved": True},
    "return_case": {"reason": "不属于本网格"},
    "review_return": {"approved": True},
    "add_note": {"text": "已联系"},
    "withdraw": {"reason": "已自行解决"},
    "merge_into": {"target_case_id": "case-hotline_12345-T-0002"},
    "urge_case": {"message": "请尽快处理"},
    "offer_case": {"note": "党员接单"},
}
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def verdict(command: Any, policy: DeadlinePolicy, case: OpenCase) -> str:
    """ "accepted", or the refusal's message."""
    opened = open_case("case-hotline_12345-T-0001", case, T0, policy)
    state, _ = apply_batch(None, opened)
    try:
        decide(state, command, T0 + timedelta(seconds=1), policy)
    except DomainError as exc:
        return str(exc)
    return "accepted"


def test_every_command_has_a_body_here() -> None:
    assert set(BODIES) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_verdict_at_the_opening_depends_on_the_policy(
    name: str, actors: Any, open_payload_of: Callable[..., dict[str, Any]]
) -> None:
    case = OpenCase.model_validate(open_payload_of())
    verdicts = set()
    for actor_name in [n for n in vars(type(actors)) if not n.startswith("_")]:
        actor = getattr(actors, actor_name)
        command = parse_command(name, {"actor": actor.model_dump(mode="json"), **BODIES[name]})
        seen = {verdict(command, p, case) for p in (DEFAULT_POLICY, *OTHER_POLICIES)}
        assert len(seen) == 1, (name, actor_name, seen)
        verdicts |= seen
    if name in ("dispatch", "add_note", "withdraw", "merge_into", "urge_case"):
        assert "accepted" in verdicts, name  # the check is not vacuous
