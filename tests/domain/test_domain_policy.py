"""The deadline policy: the 7135 defaults, deadlines, and bad policies refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from domain.model import Flag, Level, Severity
from domain.policy import (
    Clock,
    CommunityLimits,
    Deadline,
    DeadlinePolicy,
    format_duration,
)
from policies import POLICY_2026_2


def test_the_7135_defaults() -> None:
    p = POLICY_2026_2
    assert p.version == "7135-2026.2"
    assert p.timezone == "Asia/Shanghai"
    assert p.warn_ratio == 0.8
    assert p.on_site == timedelta(minutes=7)
    assert p.resolve_community.minor == timedelta(days=1)
    assert p.resolve_community.major == timedelta(days=3)
    assert p.resolve_street == timedelta(days=5)
    assert p.resolve_district == timedelta(days=5)
    assert p.revisit == timedelta(days=7)
    assert p.district_reminder == timedelta(days=1)


@pytest.mark.parametrize(
    ("level", "severity", "limit"),
    [
        (Level.COMMUNITY, Severity.MINOR, timedelta(days=1)),
        (Level.COMMUNITY, Severity.MAJOR, timedelta(days=3)),
        (Level.COMMUNITY, Severity.HARD, timedelta(days=5)),
        (Level.STREET, Severity.MINOR, timedelta(days=5)),
        (Level.STREET, Severity.HARD, timedelta(days=5)),
        (Level.DISTRICT, Severity.MAJOR, timedelta(days=5)),
    ],
)
def test_resolve_limits(level: Level, severity: Severity, limit: timedelta) -> None:
    assert POLICY_2026_2.resolve_limit(level, severity) == limit
    assert POLICY_2026_2.limit(Clock.RESOLVE, level, severity) == limit


def test_on_site_and_revisit_limits_do_not_depend_on_level_or_severity() -> None:
    for level in Level:
        for severity in Severity:
            assert POLICY_2026_2.limit(Clock.ON_SITE, level, severity) == timedelta(minutes=7)
            assert POLICY_2026_2.limit(Clock.REVISIT, level, severity) == timedelta(days=7)


def test_a_policy_of_its_own() -> None:
    policy = DeadlinePolicy.model_validate(
        {
            "version": "pilot-2",
            "on_site": "PT10M",
            "resolve_community": {"minor": "PT12H", "major": "P2D"},
            "resolve_street": "P4D",
            "warn_ratio": 0.5,
        }
    )
    assert policy.limit(Clock.ON_SITE, Level.COMMUNITY, Severity.MINOR) == timedelta(minutes=10)
    assert policy.resolve_limit(Level.COMMUNITY, Severity.MINOR) == timedelta(hours=12)
    assert policy.resolve_limit(Level.COMMUNITY, Severity.HARD) == timedelta(days=4)
    assert policy.resolve_limit(Level.DISTRICT, Severity.HARD) == timedelta(days=5)  # default


@pytest.mark.parametrize(
    ("clock", "level", "severity", "limit", "label"),
    [
        (
            Clock.ON_SITE,
            Level.COMMUNITY,
            Severity.MINOR,
            timedelta(minutes=7),
            "on_site: minor matter, community level, 7 minutes",
        ),
        (
            Clock.RESOLVE,
            Level.COMMUNITY,
            Severity.MINOR,
            timedelta(days=1),
            "resolve: minor matter, community level, 1 day",
        ),
        (
            Clock.RESOLVE,
            Level.COMMUNITY,
            Severity.MAJOR,
            timedelta(days=3),
            "resolve: major matter, community level, 3 days",
        ),
        (
            Clock.RESOLVE,
            Level.STREET,
            Severity.HARD,
            timedelta(days=5),
            "resolve: hard matter, street level, 5 days",
        ),
        (
            Clock.RESOLVE,
            Level.DISTRICT,
            Severity.MINOR,
            timedelta(days=5),
            "resolve: minor matter, district level, 5 days",
        ),
        (
            Clock.REVISIT,
            Level.STREET,
            Severity.MAJOR,
            timedelta(days=7),
            "revisit: major matter, street level, 7 days",
        ),
    ],
)
def test_deadline(
    t0: datetime, clock: Clock, level: Level, severity: Severity, limit: timedelta, label: str
) -> None:
    d = POLICY_2026_2.deadline(clock, level, severity, t0)
    assert d.clock is clock and d.level is level
    assert d.started_at == t0
    assert d.due_at == t0 + limit
    assert d.warn_at == t0 + limit * 0.8
    assert d.label == label
    assert d.policy_version == "7135-2026.2"
    assert not d.warned and not d.breached and d.remind_at is None


def test_the_warning_comes_at_80_percent(t0: datetime) -> None:
    on_site = POLICY_2026_2.deadline(Clock.ON_SITE, Level.COMMUNITY, Severity.MINOR, t0)
    assert on_site.warn_at - t0 == timedelta(minutes=5, seconds=36)
    minor = POLICY_2026_2.deadline(Clock.RESOLVE, Level.COMMUNITY, Severity.MINOR, t0)
    assert minor.warn_at - t0 == timedelta(hours=19, minutes=12)


def test_the_deadline_carries_the_version_of_its_policy(t0: datetime) -> None:
    policy = DeadlinePolicy(version="pilot-2", warn_ratio=0.5)
    d = policy.deadline(Clock.RESOLVE, Level.STREET, Severity.MAJOR, t0)
    assert d.policy_version == "pilot-2"
    assert d.warn_at == t0 + timedelta(days=2, hours=12)


def _deadline(t0: datetime, **changes: Any) -> Deadline:
    d = POLICY_2026_2.deadline(Clock.RESOLVE, Level.COMMUNITY, Severity.MINOR, t0)
    return d.model_copy(update=changes)


def test_next_wake_is_the_warning_then_the_due_time(t0: datetime) -> None:
    d = _deadline(t0)
    assert d.next_wake() == d.warn_at
    assert _deadline(t0, warned=True).next_wake() == d.due_at


def test_next_wake_of_a_breached_clock_is_its_reminder_if_any(t0: datetime) -> None:
    remind = t0 + timedelta(days=2)
    assert _deadline(t0, breached=True, remind_at=remind).next_wake() == remind
    assert _deadline(t0, breached=True).next_wake() is None


def test_next_wake_skips_a_warning_that_would_not_come_before_the_end(t0: datetime) -> None:
    d = _deadline(t0)
    late_warning = d.model_copy(update={"warn_at": d.due_at})
    assert late_warning.next_wake() == d.due_at


def test_moved_recomputes_the_warning_from_the_start(t0: datetime) -> None:
    d = _deadline(t0)
    new_due = d.due_at + timedelta(days=1)
    moved = d.moved(new_due, POLICY_2026_2, t0 + timedelta(hours=1))
    assert moved.started_at == t0
    assert moved.due_at == new_due
    assert moved.warn_at == t0 + timedelta(days=2) * 0.8
    assert moved.label == d.label and moved.policy_version == d.policy_version
    assert not moved.warned
    assert d.due_at == t0 + timedelta(days=1)  # the original is untouched


def test_moved_keeps_a_warning_that_still_stands(t0: datetime) -> None:
    d = _deadline(t0, warned=True)
    now = t0 + timedelta(hours=23)
    # the new warning (80 % of 1 day 2 hours = 20h48m) is already past: still warned
    kept = d.moved(d.due_at + timedelta(hours=2), POLICY_2026_2, now)
    assert kept.warned
    # the new warning (80 % of 2 days) lies ahead: it will be given again
    again = d.moved(d.due_at + timedelta(days=1), POLICY_2026_2, now)
    assert not again.warned
    assert again.next_wake() == again.warn_at == t0 + timedelta(hours=38, minutes=24)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(minutes=7), "7 minutes"),
        (timedelta(minutes=1), "1 minute"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=3), "3 days"),
        (timedelta(days=5), "5 days"),
        (timedelta(days=1, hours=2, minutes=3), "1 day 2 hours 3 minutes"),
        (timedelta(days=2, minutes=30), "2 days 30 minutes"),
        (timedelta(seconds=30), "30 seconds"),
        (timedelta(days=1, seconds=30), "1 day"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    "field", ["on_site", "resolve_street", "resolve_district", "revisit", "district_reminder"]
)
@pytest.mark.parametrize("value", [timedelta(0), timedelta(minutes=-7)])
def test_limits_must_be_positive(field: str, value: timedelta) -> None:
    with pytest.raises(ValidationError, match="must be a positive duration"):
        DeadlinePolicy.model_validate({"version": "v1", field: value})


@pytest.mark.parametrize("field", ["minor", "major"])
def test_community_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError, match="must be a positive duration"):
        CommunityLimits.model_validate({field: "PT0S"})
    with pytest.raises(ValidationError, match="must be a positive duration"):
        DeadlinePolicy.model_validate({"version": "v1", "resolve_community": {field: "-P1D"}})


@pytest.mark.parametrize("zone", ["Asia/Beijing", "Mars/Olympus", "", "../etc/passwd", "Asia"])
def test_unknown_timezones_are_refused(zone: str) -> None:
    with pytest.raises(ValidationError, match="must be an IANA timezone name"):
        DeadlinePolicy(version="v1", timezone=zone)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Asia/Urumqi", "UTC"])
def test_known_timezones_are_accepted(zone: str) -> None:
    assert DeadlinePolicy(version="v1", timezone=zone).timezone == zone


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.1])
def test_warn_ratio_lies_strictly_between_0_and_1(ratio: float) -> None:
    with pytest.raises(ValidationError, match="warn_ratio"):
        DeadlinePolicy(version="v1", warn_ratio=ratio)


@pytest.mark.parametrize("ratio", [0.01, 0.5, 0.99])
def test_warn_ratios_inside_the_bounds(ratio: float) -> None:
    assert DeadlinePolicy(version="v1", warn_ratio=ratio).warn_ratio == ratio


@pytest.mark.parametrize("version", ["", "7135 2026", "v/1", "x" * 41])
def test_bad_policy_versions_are_refused(version: str) -> None:
    with pytest.raises(ValidationError, match="version"):
        DeadlinePolicy(version=version)


def test_a_policy_refuses_unknown_settings() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DeadlinePolicy.model_validate({"version": "v1", "on_sight": "PT7M"})


def test_a_policy_round_trips_through_json() -> None:
    policy = DeadlinePolicy(version="pilot-2", on_site=timedelta(minutes=10))
    assert DeadlinePolicy.model_validate_json(policy.model_dump_json()) == policy


def test_levels_and_flags() -> None:
    assert Level.COMMUNITY.above() is Level.STREET
    assert Level.STREET.above() is Level.DISTRICT
    assert Level.DISTRICT.above() is None
    assert Flag.GREEN.worst(Flag.YELLOW) is Flag.YELLOW
    assert Flag.RED.worst(Flag.YELLOW) is Flag.RED
    assert Flag.YELLOW.worst(Flag.GREEN) is Flag.YELLOW
