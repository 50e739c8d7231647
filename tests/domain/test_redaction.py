"""Redaction of residents' personal data for users not entitled to it: one rule per kind
of field, applied wherever `PERSONAL_FIELDS` says such a field sits."""

from __future__ import annotations

from typing import Any

import pytest

from domain.events import PERSONAL_FIELDS
from domain.redaction import (
    PERSONAL_SUFFIXES,
    redact_address,
    redact_categories,
    redact_coordinates,
    redact_document,
    redact_name,
    redact_phone,
    redact_reporter,
    redact_resident_id,
    redact_unknown,
)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("张三", "张**"),
        ("张秀英", "张**"),
        ("欧阳娜娜", "欧**"),  # the length is not told either
        ("Wang Fang", "W**"),
        ("张", "张**"),
        ("", ""),
    ],
)
def test_a_name_keeps_its_first_character(name: str, shown: str) -> None:
    assert redact_name(name) == shown


@pytest.mark.parametrize(
    ("phone", "shown"),
    [
        ("13812345678", "138****5678"),
        ("138-1234-5678", "138****5678"),
        ("138 1234 5678", "138****5678"),
        ("+8613812345678", "+86 138****5678"),
        ("+86 138 1234 5678", "+86 138****5678"),
        ("+4930123456789", "+493****6789"),
        ("057188123456", "057****3456"),  # a landline with its area code
        ("88123456", "****56"),  # a landline without: two digits only
        ("12345", "****45"),
        ("12", "****"),
    ],
)
def test_a_phone_keeps_what_the_hotline_shows(phone: str, shown: str) -> None:
    assert redact_phone(phone) == shown


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("幸福里7号楼3单元502室", "幸福里****"),
        ("3号楼2单元", "****"),
        ("北京市朝阳区幸福里小区7号楼", "北京市朝阳区****"),  # six characters at most
        ("富春江路１２号", "富春江路****"),  # full-width digits are digits too
        ("Fuchunjiang Road 12", "Fuchun****"),
    ],
)
def test_an_address_keeps_no_number(address: str, shown: str) -> None:
    assert redact_address(address) == shown
    assert not any(ch.isdigit() for ch in shown)


def test_coordinates_are_rounded_to_the_neighbourhood() -> None:
    assert redact_coordinates({"lat": 29.317204, "lon": 120.075391}) == {
        "lat": 29.32,
        "lon": 120.08,
    }
    assert redact_coordinates("29.317204,120.075391") == "****"


def test_account_and_categories_are_masked_whole() -> None:
    assert redact_resident_id("res-4711") == "****"
    assert redact_categories(["elderly_living_alone", "household_in_difficulty"]) == [
        "****",
        "****",
    ]
    assert redact_categories([]) == []


def test_a_reporter_field_without_a_rule_is_masked_whole() -> None:
    reporter = {
        "name": "诸葛秀英",
        "phone": "13912345678",
        "resident_id": None,
        "id_card": "330106199001011234",
        "household": {"members": 3, "note": "独居"},
    }
    assert redact_reporter(reporter) == {
        "name": "诸**",
        "phone": "139****5678",
        "resident_id": None,
        "id_card": "****",
        "household": {"members": "****", "note": "****"},
    }
    assert redact_unknown(None) is None
    assert redact_reporter("诸葛秀英") == "****"


def report() -> dict[str, Any]:
    return {
        "source": "hotline_12345",
        "title": "楼道灯坏了",
        "description": "3号楼2单元楼道灯一周不亮",
        "location": {
            "grid_id": "G-01",
            "community_id": "C-01",
            "street_id": "S-01",
            "district_id": "D-01",
            "address": "幸福里7号楼3单元502室",
            "coordinates": {"lat": 29.317204, "lon": 120.075391},
        },
        "reporter": {
            "name": "诸葛秀英",
            "phone": "13912345678",
            "resident_id": "res-1",
            "categories": ["elderly_living_alone"],
        },
    }


REDACTED_LOCATION = {
    "grid_id": "G-01",
    "community_id": "C-01",
    "street_id": "S-01",
    "district_id": "D-01",
    "address": "幸福里****",
    "coordinates": {"lat": 29.32, "lon": 120.08},
}
REDACTED_REPORTER = {
    "name": "诸**",
    "phone": "139****5678",
    "resident_id": "****",
    "categories": ["****"],
}


def test_a_report_is_redacted_and_the_rest_kept() -> None:
    original = report()
    redacted = redact_document(original)
    assert redacted == {
        "source": "hotline_12345",
        "title": "楼道灯坏了",
        "description": "3号楼2单元楼道灯一周不亮",
        "location": REDACTED_LOCATION,
        "reporter": REDACTED_REPORTER,
    }
    assert original == report()  # a copy: the input is left as it was


def test_personal_fields_are_found_at_any_depth() -> None:
    """An activity's batch of events, a query's state, a merged report: each shape the
    payloads of a case take."""
    batch = {
        "case_id": "case-hotline_12345-1",
        "events": [
            {"type": "case_opened", "seq": 1, "case": report()},
            {"type": "report_merged", "merged_case_id": "c-2", "reporter": report()["reporter"]},
            {"type": "case_claimed", "actor": {"id": "gw-li", "name": "李网格"}},
        ],
        "state": {"case": report(), "step": "collect"},
    }
    redacted = redact_document(batch)
    opened, merged, claimed = redacted["events"]
    assert opened["case"]["reporter"] == REDACTED_REPORTER
    assert opened["case"]["location"] == REDACTED_LOCATION
    assert merged["reporter"] == REDACTED_REPORTER
    assert claimed == batch["events"][2]  # staff are not residents: shown as they are
    assert redacted["state"]["case"]["reporter"] == REDACTED_REPORTER
    assert redacted["state"]["step"] == "collect"
    # nothing of the resident is left anywhere in it
    text = repr(redacted)
    for value in ("秀英", "12345678", "7号楼", "502", "29.317204", "res-1", "elderly"):
        assert value not in text, value


def test_absent_empty_and_sealed_fields_stay_as_they_are() -> None:
    document = {
        "location": {"grid_id": "G-01", "address": None},
        "reporter": None,
        "case": {"reporter": {"sealed": "k1:AAAA"}},
        "address": "not a location's: left",
    }
    assert redact_document(document) == document
    assert redact_document([1, "two", None]) == [1, "two", None]


def test_every_declared_personal_field_has_a_redaction() -> None:
    """A field added to PERSONAL_FIELDS without a redaction rule fails here."""
    for paths in PERSONAL_FIELDS.values():
        for path in paths:
            assert any(path[-len(suffix) :] == suffix for suffix in PERSONAL_SUFFIXES), path
