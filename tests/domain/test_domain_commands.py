"""Input validation: OpenCase, the update commands, and the messages of refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from domain.commands import (
    COMMANDS,
    AddNote,
    Dispatch,
    OpenCase,
    RequestExtension,
    SummonDepartments,
    parse_command,
    parse_open_case,
)
from domain.errors import DomainError
from domain.model import HandlingClass, Severity, Source

PHONE = "13800138000"
ACTOR = {"id": "ca-1", "role": "community_admin", "org": "C-01"}

Payload = Callable[..., dict[str, Any]]


def refused_open(payload: object) -> str:
    with pytest.raises(DomainError) as info:
        parse_open_case(payload)
    return str(info.value)


def refused_command(name: str, payload: object) -> str:
    with pytest.raises(DomainError) as info:
        parse_command(name, payload)
    return str(info.value)


def with_location(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**payload, "location": {**payload["location"], **changes}}


def with_reporter(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**payload, "reporter": {**payload["reporter"], **changes}}


# ------------------------------------------------------------------ OpenCase


def test_a_good_start_input_parses(open_payload_of: Payload) -> None:
    case = parse_open_case(open_payload_of(title="  路灯坏了  "))
    assert isinstance(case, OpenCase)
    assert case.source is Source.HOTLINE_12345
    assert case.title == "路灯坏了"  # surrounding whitespace stripped
    assert case.reported_at.utcoffset() == timedelta(hours=8)
    assert case.location.orgs == ["G-01", "C-01", "S-01", "D-01"]


def test_source_ref_and_optional_parts_may_be_left_out(open_payload_of: Payload) -> None:
    payload = open_payload_of()
    del payload["source_ref"]
    del payload["location"]["address"]
    payload["reporter"] = {"name": "匿名"}
    case = parse_open_case(payload)
    assert case.source_ref is None
    assert case.location.address is None and case.location.coordinates is None
    assert case.reporter.phone is None and case.reporter.resident_id is None


@pytest.mark.parametrize(
    "field",
    ["source", "title", "description", "category", "location", "reporter", "reported_at"],
)
def test_every_required_field_is_required(open_payload_of: Payload, field: str) -> None:
    payload = open_payload_of()
    del payload[field]
    message = refused_open(payload)
    assert message.startswith("OpenCase refused: ")
    assert f"{field}: Field required" in message


@pytest.mark.parametrize("field", ["grid_id", "community_id", "street_id", "district_id"])
def test_every_org_of_the_location_is_required(open_payload_of: Payload, field: str) -> None:
    payload = open_payload_of()
    del payload["location"][field]
    assert f"location.{field}: Field required" in refused_open(payload)


def test_reporter_name_is_required(open_payload_of: Payload) -> None:
    payload = open_payload_of(reporter={"phone": PHONE})
    message = refused_open(payload)
    assert "reporter.name: Field required" in message
    assert PHONE not in message


@pytest.mark.parametrize(("field", "limit"), [("title", 200), ("description", 4000)])
def test_text_lengths(open_payload_of: Payload, field: str, limit: int) -> None:
    assert len(getattr(parse_open_case(open_payload_of(**{field: "x" * limit})), field)) == limit
    assert f"{field}: String should have at most {limit} characters" in refused_open(
        open_payload_of(**{field: "x" * (limit + 1)})
    )


def test_reporter_name_length(open_payload_of: Payload) -> None:
    parse_open_case(with_reporter(open_payload_of(), name="x" * 100))
    message = refused_open(with_reporter(open_payload_of(), name="x" * 101))
    assert "reporter.name: String should have at most 100 characters" in message


@pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
@pytest.mark.parametrize("field", ["title", "description"])
def test_blank_texts_are_refused(open_payload_of: Payload, field: str, blank: str) -> None:
    assert f"{field}: String should have at least 1 character" in refused_open(
        open_payload_of(**{field: blank})
    )


@pytest.mark.parametrize("value", ["fax", "HOTLINE_12345", "", 12345])
def test_source_must_be_a_known_channel(open_payload_of: Payload, value: object) -> None:
    message = refused_open(open_payload_of(source=value))
    assert "source: Input should be 'mini_program'" in message


def test_every_source_channel_of_the_contract_is_known(open_payload_of: Payload) -> None:
    names = {"mini_program", "hotline_12345", "wechat_qr", "visit", "patrol", "other"}
    assert {s.value for s in Source} == names
    for name in names:
        assert parse_open_case(open_payload_of(source=name)).source.value == name


@pytest.mark.parametrize("category", ["roads", "public_lighting", "a", "a" + "0" * 39])
def test_good_categories(open_payload_of: Payload, category: str) -> None:
    assert parse_open_case(open_payload_of(category=category)).category == category


@pytest.mark.parametrize(
    "category", ["", "Roads", "1roads", "road-works", "roads ", "a" * 41, "道路"]
)
def test_bad_categories(open_payload_of: Payload, category: str) -> None:
    assert "category: String should match pattern" in refused_open(
        open_payload_of(category=category)
    )


def test_a_naive_datetime_is_refused(open_payload_of: Payload) -> None:
    message = refused_open(open_payload_of(reported_at="2026-11-24T09:00:00"))
    assert "reported_at: Value error, must carry a timezone offset" in message


@pytest.mark.parametrize(
    "value", ["2026-11-24T09:00:00+08:00", "2026-11-24T01:00:00Z", "2026-11-24T01:00:00+00:00"]
)
def test_aware_datetimes_are_accepted(open_payload_of: Payload, value: str) -> None:
    reported_at = parse_open_case(open_payload_of(reported_at=value)).reported_at
    assert reported_at.utcoffset() is not None


@pytest.mark.parametrize("value", ["2000-01-01T00:00:00+08:00", "2100-12-31T23:59:59+08:00"])
def test_years_2000_to_2100_are_accepted(open_payload_of: Payload, value: str) -> None:
    parse_open_case(open_payload_of(reported_at=value))


@pytest.mark.parametrize("value", ["1999-12-31T23:59:59+08:00", "2101-01-01T00:00:00+08:00"])
def test_years_outside_2000_to_2100_are_refused(open_payload_of: Payload, value: str) -> None:
    message = refused_open(open_payload_of(reported_at=value))
    assert "reported_at: Value error, must lie between the years 2000 and 2100" in message


def test_a_datetime_that_is_not_one_is_refused(open_payload_of: Payload) -> None:
    assert "reported_at: Input should be a valid datetime" in refused_open(
        open_payload_of(reported_at="next tuesday")
    )


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u202e", "\u2066"])
@pytest.mark.parametrize("field", ["title", "description"])
def test_control_characters_are_refused(open_payload_of: Payload, field: str, char: str) -> None:
    message = refused_open(open_payload_of(**{field: f"lamp{char}broken"}))
    assert f"{field}: Value error, must not contain control characters" in message


def test_control_characters_are_refused_in_nested_texts(open_payload_of: Payload) -> None:
    message = refused_open(with_reporter(open_payload_of(), name="王\x00阿姨"))
    assert "reporter.name: Value error, must not contain control characters" in message
    message = refused_open(with_location(open_payload_of(), address="Bldg\x1b3"))
    assert "location.address: Value error, must not contain control characters" in message


def test_newlines_and_tabs_are_text(open_payload_of: Payload) -> None:
    case = parse_open_case(open_payload_of(description="line one\n\tline two"))
    assert case.description == "line one\n\tline two"


def test_extra_fields_are_refused(open_payload_of: Payload) -> None:
    assert "priority: Extra inputs are not permitted" in refused_open(
        open_payload_of(priority="high")
    )
    assert "location.floor: Extra inputs are not permitted" in refused_open(
        with_location(open_payload_of(), floor=3)
    )
    message = refused_open(with_reporter(open_payload_of(), id_card="110101199003070000"))
    assert "reporter.id_card: Extra inputs are not permitted" in message
    assert "110101199003070000" not in message


@pytest.mark.parametrize("org", ["G-01", "a", "0", "x" * 64, "D:01.S_2-x", "Grid01"])
def test_good_org_ids(open_payload_of: Payload, org: str) -> None:
    case = parse_open_case(with_location(open_payload_of(), grid_id=org))
    assert case.location.grid_id == org


@pytest.mark.parametrize(
    "org", ["", "-G01", ".G01", "G 01", "G/01", "x" * 65, "网格1", "G-01\n", "G;01"]
)
def test_bad_org_ids(open_payload_of: Payload, org: str) -> None:
    message = refused_open(with_location(open_payload_of(), street_id=org))
    assert "location.street_id: String should match pattern" in message


@pytest.mark.parametrize("ref", ["T-0001", "a", "12345", "a.b_c-d", "x" * 64, "-lead"])
def test_good_source_refs(open_payload_of: Payload, ref: str) -> None:
    assert parse_open_case(open_payload_of(source_ref=ref)).source_ref == ref


@pytest.mark.parametrize("ref", ["", "x" * 65, "a b", "a/b", "a:b", "工单1", "a\nb"])
def test_bad_source_refs(open_payload_of: Payload, ref: str) -> None:
    assert "source_ref: String should match pattern" in refused_open(
        open_payload_of(source_ref=ref)
    )


@pytest.mark.parametrize("phone", ["13800138000", "+86 138-0013-8000", "010-12345678"])
def test_good_phone_numbers(open_payload_of: Payload, phone: str) -> None:
    parse_open_case(with_reporter(open_payload_of(), phone=phone))


@pytest.mark.parametrize("phone", ["call me", "1234", "+86 (138) 0013 8000", "1" * 21])
def test_bad_phone_numbers_are_refused_without_being_quoted(
    open_payload_of: Payload, phone: str
) -> None:
    message = refused_open(with_reporter(open_payload_of(), phone=phone))
    assert "reporter.phone" in message
    assert phone not in message


def test_coordinates_are_bounded(open_payload_of: Payload) -> None:
    case = parse_open_case(
        with_location(open_payload_of(), coordinates={"lat": 34.35, "lon": 107.14})
    )
    assert case.location.coordinates is not None
    assert case.location.coordinates.lat == 34.35
    message = refused_open(with_location(open_payload_of(), coordinates={"lat": 91, "lon": 0}))
    assert "location.coordinates.lat: Input should be less than or equal to 90" in message
    message = refused_open(with_location(open_payload_of(), coordinates={"lat": 0, "lon": -181}))
    assert "location.coordinates.lon: Input should be greater than or equal to -180" in message


@pytest.mark.parametrize("payload", [None, [], "a case", 42])
def test_the_start_input_must_be_an_object(payload: object) -> None:
    assert refused_open(payload) == "OpenCase: the start input must be a JSON object"


def test_an_open_case_is_immutable(open_payload_of: Payload) -> None:
    case = parse_open_case(open_payload_of())
    with pytest.raises(ValidationError):
        case.title = "changed"  # type: ignore[misc]


# ------------------------------------------------------------------ refusal messages


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": PHONE}, "category"),
        ({"source_ref": f"tel {PHONE}"}, "source_ref"),
        ({"title": f"call {PHONE}\x00"}, "title"),
        ({"title": f"call {PHONE} " + "x" * 200}, "title"),
        ({"reported_at": PHONE + "x"}, "reported_at"),
        ({"source": PHONE}, "source"),
    ],
)
def test_refusals_name_the_field_but_never_quote_the_value(
    open_payload_of: Payload, change: dict[str, Any], field: str
) -> None:
    message = refused_open(open_payload_of(**change))
    assert f"{field}: " in message
    assert PHONE not in message
    assert "input_value" not in message


def test_a_phone_number_in_a_bad_location_field_is_not_quoted(open_payload_of: Payload) -> None:
    message = refused_open(with_location(open_payload_of(), grid_id=f"tel {PHONE}"))
    assert "location.grid_id" in message and PHONE not in message


def test_many_problems_are_summarised(open_payload_of: Payload) -> None:
    payload = {f"extra_{i}": PHONE for i in range(15)}
    message = refused_open(payload)
    # 7 missing fields and 15 extra ones: the first ten are named, the rest counted
    assert message.endswith("extra_2: Extra inputs are not permitted; and 12 more")
    assert message.count("; ") == 10
    assert PHONE not in message


# ------------------------------------------------------------------ update commands


def test_the_update_names_are_the_public_contract() -> None:
    assert set(COMMANDS) == {
        "dispatch",
        "claim",
        "check_in",
        "record_deliberation",
        "schedule_deliberation",
        "summon_departments",
        "record_department_report",
        "report_resolution",
        "record_feedback",
        "record_revisit",
        "request_extension",
        "decide_extension",
        "return_case",
        "review_return",
        "add_note",
        "withdraw",
        "merge_into",
        "urge_case",
        "offer_case",
    }


def test_parse_command_builds_the_named_command() -> None:
    command = parse_command(
        "dispatch",
        {"actor": ACTOR, "severity": "major", "handling_class": "joint", "assignee": "gw-1"},
    )
    assert isinstance(command, Dispatch)
    assert command.severity is Severity.MAJOR
    assert command.handling_class is HandlingClass.JOINT
    assert command.actor.id == "ca-1"


def test_the_name_decides_the_kind_and_a_contrary_kind_is_refused() -> None:
    command = parse_command("add_note", {"actor": ACTOR, "text": "note", "kind": "add_note"})
    assert isinstance(command, AddNote) and command.kind == "add_note"
    message = refused_command("add_note", {"actor": ACTOR, "text": "note", "kind": "withdraw"})
    assert message == "add_note: kind: must be left out or equal the command name"


def test_line_breaks_are_text(open_payload_of: Payload) -> None:
    case = parse_open_case(open_payload_of(description="第一行\r\n第二行\tend"))
    assert case.description == "第一行\r\n第二行\tend"


def test_an_unknown_field_name_is_not_quoted() -> None:
    message = refused_command("add_note", {"actor": ACTOR, "text": "x", "13912345678": "x"})
    assert "13912345678" not in message
    assert "(unknown field): Extra inputs are not permitted" in message
    assert "colour: Extra inputs" in refused_command(
        "add_note", {"actor": ACTOR, "text": "x", "colour": "red"}
    )


def test_an_unknown_command_is_refused() -> None:
    message = refused_command("close_case", {"actor": ACTOR})
    assert message.startswith("unknown command 'close_case'")
    assert "dispatch" in message and "merge_into" in message


@pytest.mark.parametrize("payload", [None, [], "x", 1, ["actor"]])
def test_a_command_payload_must_be_an_object(payload: object) -> None:
    assert refused_command("claim", payload) == "claim: the payload must be a JSON object"


def test_every_command_needs_an_actor() -> None:
    for name in COMMANDS:
        assert "actor: Field required" in refused_command(name, {})


@pytest.mark.parametrize(
    ("actor", "field"),
    [
        ({"id": "ca-1", "role": "mayor", "org": "C-01"}, "actor.role"),
        ({"id": f"{PHONE} ", "role": "resident", "org": "G-01"}, "actor.id"),
        ({"id": "ca-1", "role": "community_admin", "org": f"+{PHONE}"}, "actor.org"),
        ({"id": "ca-1", "role": "community_admin", "org": "C-01", "phone": PHONE}, "actor.phone"),
    ],
)
def test_bad_actors_are_refused_without_quoting(actor: dict[str, Any], field: str) -> None:
    message = refused_command("claim", {"actor": actor})
    assert message.startswith("claim refused: ")
    assert f"{field}: " in message
    assert PHONE not in message


def test_extra_fields_in_a_command_are_refused() -> None:
    message = refused_command("claim", {"actor": ACTOR, "urgent": True})
    assert message == "claim refused: urgent: Extra inputs are not permitted"


def test_command_texts_are_checked() -> None:
    message = refused_command("add_note", {"actor": ACTOR, "text": f"call {PHONE}\x07"})
    assert "text: Value error, must not contain control characters" in message
    assert PHONE not in message
    message = refused_command("add_note", {"actor": ACTOR, "text": "x" * 4001})
    assert "text: String should have at most 4000 characters" in message


def test_dispatch_enums() -> None:
    message = refused_command(
        "dispatch", {"actor": ACTOR, "severity": "urgent", "handling_class": "joint"}
    )
    assert "severity: Input should be 'minor', 'major' or 'hard'" in message
    message = refused_command(
        "dispatch", {"actor": ACTOR, "severity": "minor", "handling_class": "ignore"}
    )
    assert "handling_class: Input should be" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("PT1H", timedelta(hours=1)),
        ("P1D", timedelta(days=1)),
        ("P30D", timedelta(days=30)),
        (3600, timedelta(hours=1)),
    ],
)
def test_extension_extra_within_bounds(extra: object, expected: timedelta) -> None:
    command = parse_command("request_extension", {"actor": ACTOR, "extra": extra, "reason": "r"})
    assert isinstance(command, RequestExtension)
    assert command.extra == expected


@pytest.mark.parametrize("extra", ["PT59M59S", "P30DT1S", "P31D", "PT0S", "-PT1H", 0, 3599])
def test_extension_extra_outside_bounds(extra: object) -> None:
    message = refused_command("request_extension", {"actor": ACTOR, "extra": extra, "reason": "r"})
    assert "extra: Value error, must be between PT1H and P30D" in message


def test_extension_extra_must_be_a_duration() -> None:
    message = refused_command(
        "request_extension", {"actor": ACTOR, "extra": "a week", "reason": "r"}
    )
    assert "extra: Input should be a valid timedelta" in message


def test_summoned_departments_must_be_distinct() -> None:
    message = refused_command(
        "summon_departments",
        {"actor": ACTOR, "departments": ["water", "police", "water"], "reason": "leak"},
    )
    assert "departments: Value error, must not name the same department twice" in message


def test_summoned_departments_are_one_to_twenty_org_ids() -> None:
    good = parse_command(
        "summon_departments",
        {"actor": ACTOR, "departments": [f"d{i}" for i in range(20)], "reason": "leak"},
    )
    assert isinstance(good, SummonDepartments) and len(good.departments) == 20
    for departments in ([], [f"d{i}" for i in range(21)]):
        message = refused_command(
            "summon_departments", {"actor": ACTOR, "departments": departments, "reason": "r"}
        )
        assert "departments: List should have at " in message
    message = refused_command(
        "summon_departments", {"actor": ACTOR, "departments": ["water works"], "reason": "r"}
    )
    assert "departments.0: String should match pattern" in message


def test_deliberation_participants_are_one_to_fifty() -> None:
    base = {"actor": ACTOR, "decision": "fix it"}
    parse_command("record_deliberation", {**base, "participants": ["a"] * 50})
    for participants in ([], ["a"] * 51):
        message = refused_command("record_deliberation", {**base, "participants": participants})
        assert "participants: List should have at " in message
    message = refused_command("record_deliberation", {**base, "participants": [""]})
    assert "participants.0: String should have at least 1 character" in message


def test_feedback_needs_a_known_satisfaction() -> None:
    message = refused_command(
        "record_feedback", {"actor": ACTOR, "accepted": True, "satisfaction": "meh"}
    )
    assert "satisfaction: Input should be" in message
    message = refused_command(
        "record_feedback", {"actor": ACTOR, "accepted": "maybe", "satisfaction": "satisfied"}
    )
    assert "accepted: Input should be a valid boolean" in message


@pytest.mark.parametrize(
    "target",
    ["case-hotline_12345-T-0002", "case-visit-0b6f3a2e-6f1e-4c1a-9a65-2b1f0c1d2e3f"],
)
def test_merge_target_is_a_case_id(target: str) -> None:
    command = parse_command("merge_into", {"actor": ACTOR, "target_case_id": target})
    assert command.model_dump()["target_case_id"] == target


@pytest.mark.parametrize(
    "target", ["T-0002", "case--x", "case-Hotline-x", "case-visit-a b", f"case-visit-{'x' * 65}"]
)
def test_merge_target_must_be_a_case_id(target: str) -> None:
    message = refused_command("merge_into", {"actor": ACTOR, "target_case_id": target})
    assert "target_case_id: String should match pattern" in message
