"""Talk days: the rules, the next talk day, when the agenda is drawn up, bad configuration
refused naming the field."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.errors import validation_message
from domain.talkdays import (
    AgendaTime,
    TalkDayRule,
    TalkDays,
    Weekday,
    agenda_time,
    next_agenda_at,
    next_talk_day,
)
from infra.settings import Settings, SettingsError

CST = timezone(timedelta(hours=8))
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "talk-days.json"

TUESDAYS = TalkDayRule(community_id="C-01", street_id="S-01", weekday="tuesday", time="14:00")
FIFTEENTH = TalkDayRule(community_id="C-02", day_of_month=15, time="09:30", place="议事厅")


def at(text: str) -> datetime:
    """A moment in Shanghai local time, e.g. at("2026-11-23 17:00") (a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=CST)


# ------------------------------------------------------------------ next_talk_day


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-23 17:00", "2026-11-24"),  # Monday's agenda finds Tuesday
        ("2026-11-23 00:00", "2026-11-24"),
        ("2026-11-24 10:00", "2026-11-24"),  # late, on the talk day before the meeting
        ("2026-11-24 13:59", "2026-11-24"),
        ("2026-11-24 14:00", "2026-12-01"),  # the meeting has begun: next week's
        ("2026-11-25 09:00", "2026-12-01"),
        ("2026-11-29 23:59", "2026-12-01"),
    ],
)
def test_next_weekly_talk_day(now: str, expected: str) -> None:
    assert next_talk_day(TUESDAYS, at(now)) == date.fromisoformat(expected)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-14 17:00", "2026-11-15"),
        ("2026-11-15 09:00", "2026-11-15"),
        ("2026-11-15 09:30", "2026-12-15"),
        ("2026-12-20 12:00", "2027-01-15"),  # across the year
    ],
)
def test_next_monthly_talk_day(now: str, expected: str) -> None:
    assert next_talk_day(FIFTEENTH, at(now)) == date.fromisoformat(expected)


def test_the_local_date_counts_not_utc() -> None:
    # Monday 2026-11-23 20:00 UTC is Tuesday 04:00 in Shanghai: that Tuesday's meeting
    utc = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    assert next_talk_day(TUESDAYS, utc) == date(2026, 11, 24)
    # and in a zone where it is still Monday afternoon, the same
    assert next_talk_day(TUESDAYS, utc, "America/Los_Angeles") == date(2026, 11, 24)
    # Monday 2026-11-23 07:00 UTC: 15:00 in Shanghai, still Monday
    assert next_talk_day(TUESDAYS, utc.replace(hour=7)) == date(2026, 11, 24)


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="after"):
        next_talk_day(TUESDAYS, datetime(2026, 11, 23, 17, 0))


# ------------------------------------------------------------------ agenda time


def test_agenda_time_is_the_day_before_at_the_agenda_hour() -> None:
    assert agenda_time(TUESDAYS) == AgendaTime(weekday=Weekday.MONDAY, hour=17, minute=0)
    monday = TUESDAYS.model_copy(update={"weekday": Weekday.MONDAY})
    assert agenda_time(monday, "08:15") == AgendaTime(weekday=Weekday.SUNDAY, hour=8, minute=15)
    assert agenda_time(FIFTEENTH) == AgendaTime(day_of_month=14, hour=17, minute=0)


@pytest.mark.parametrize(
    ("rule", "now", "expected"),
    [
        (TUESDAYS, "2026-11-23 09:00", "2026-11-23 17:00"),
        (TUESDAYS, "2026-11-23 17:00", "2026-11-30 17:00"),  # strictly after
        (TUESDAYS, "2026-11-24 10:00", "2026-11-30 17:00"),
        (FIFTEENTH, "2026-11-23 09:00", "2026-12-14 17:00"),
        (FIFTEENTH, "2026-11-14 16:59", "2026-11-14 17:00"),
    ],
)
def test_next_agenda_at(rule: TalkDayRule, now: str, expected: str) -> None:
    assert next_agenda_at(rule, at(now)) == at(expected)


weekly_rules = st.builds(
    lambda day, hh, mm: TalkDayRule(community_id="C-1", weekday=day, time=f"{hh:02}:{mm:02}"),
    st.sampled_from(list(Weekday)),
    st.integers(0, 23),
    st.integers(0, 59),
)
monthly_rules = st.builds(
    lambda day, hh, mm: TalkDayRule(community_id="C-1", day_of_month=day, time=f"{hh:02}:{mm:02}"),
    st.integers(2, 28),
    st.integers(0, 23),
    st.integers(0, 59),
)
moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(CST)
)


@given(rule=weekly_rules | monthly_rules, now=moments, agenda=st.sampled_from(["17:00", "08:00"]))
def test_an_agenda_always_finds_the_next_days_meeting(
    rule: TalkDayRule, now: datetime, agenda: str
) -> None:
    """Whenever the schedule fires, the talk day worked out is the day after it, and it is a
    talk day of the rule."""
    fired = next_agenda_at(rule, now, at=agenda)
    assert fired > now
    talk_day = next_talk_day(rule, fired)
    assert talk_day == fired.date() + timedelta(days=1)
    assert rule.is_talk_day(talk_day)
    when = agenda_time(rule, agenda)
    assert (fired.hour, fired.minute) == (when.hour, when.minute)
    if when.weekday is not None:
        assert Weekday.of(fired.date()) is when.weekday
    else:
        assert fired.day == when.day_of_month


# ------------------------------------------------------------------ configuration


def test_the_example_file_loads() -> None:
    talk_days = TalkDays.model_validate_json(EXAMPLE.read_bytes())
    assert talk_days.timezone == "Asia/Shanghai" and talk_days.agenda_at == "17:00"
    c01 = talk_days.communities[0]
    assert (c01.community_id, c01.street_id, c01.weekday, c01.time, c01.place) == (
        "C-01",
        "S-01",
        Weekday.TUESDAY,
        "14:00",
        "社区议事厅",
    )
    assert any(r.day_of_month is not None for r in talk_days.communities)


def rule_json(**changes: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"community_id": "C-01", "weekday": "tuesday", "time": "14:00"}
    rule.update(changes)
    return {k: v for k, v in rule.items() if v is not None}


@pytest.mark.parametrize(
    ("config", "field", "reason"),
    [
        ({"communities": [rule_json(weekday="Dienstag")]}, "communities.0.weekday", "monday"),
        (
            {"communities": [rule_json(day_of_month=15)]},
            "communities.0",
            "weekday, day_of_month: set exactly one",
        ),
        (
            {"communities": [rule_json(weekday=None)]},
            "communities.0",
            "weekday, day_of_month: set exactly one",
        ),
        (
            {"communities": [rule_json(weekday=None, day_of_month=1)]},
            "communities.0.day_of_month",
            "between 2 and 28",
        ),
        (
            {"communities": [rule_json(weekday=None, day_of_month=31)]},
            "communities.0.day_of_month",
            "between 2 and 28",
        ),
        ({"communities": [rule_json(time="2pm")]}, "communities.0.time", "HH:MM"),
        ({"communities": [rule_json(time="24:00")]}, "communities.0.time", "HH:MM"),
        ({"communities": [rule_json(time="9:30")]}, "communities.0.time", "HH:MM"),
        ({"communities": [rule_json(place="")]}, "communities.0.place", "at least 1"),
        (
            {"communities": [rule_json(community_id="C 01")]},
            "communities.0.community_id",
            "pattern",
        ),
        ({"communities": [rule_json(street="S-01")]}, "communities.0.street", "Extra inputs"),
        (
            {"communities": [rule_json(), rule_json(weekday="friday")]},
            "communities",
            "item 1 configures community C-01 again (first at item 0)",
        ),
        ({"timezone": "Asia/Beijing"}, "timezone", "IANA timezone"),
        ({"agenda_at": "17"}, "agenda_at", "HH:MM"),
    ],
)
def test_bad_configuration_is_refused_naming_the_field(
    config: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        TalkDays.model_validate(config)
    message = validation_message("CASE_TALK_DAYS", refused.value)
    assert f"{field}: " in message and reason in message, message


def test_settings_read_the_talk_days_file(tmp_path: Path) -> None:
    assert Settings.from_env({}).talk_days() == TalkDays()
    assert Settings.from_env({"CASE_TALK_DAYS": str(EXAMPLE)}).talk_days().communities
    with pytest.raises(SettingsError, match="CASE_TALK_DAYS: no such file"):
        Settings.from_env({"CASE_TALK_DAYS": str(tmp_path / "missing.json")})
    bad = tmp_path / "talk-days.json"
    bad.write_text(json.dumps({"communities": [rule_json(time="25:00")]}), encoding="utf-8")
    settings = Settings.from_env({"CASE_TALK_DAYS": str(bad)})
    with pytest.raises(SettingsError) as refused:
        settings.talk_days()
    assert f"CASE_TALK_DAYS {bad}" in str(refused.value)
    assert "communities.0.time" in str(refused.value)
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"CASE_TALK_DAYS .*Invalid JSON"):
        settings.talk_days()
