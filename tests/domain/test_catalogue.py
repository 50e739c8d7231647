"""The service catalogue (domain/catalogue.py, domain/catalogue.json) and the gateway's
Open311 mapping (gateway/open311.py): pure functions, no servers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devstack.demo import DEMO_CASES
from domain.catalogue import parse_catalogue
from domain.commands import parse_open_case
from domain.errors import DomainError
from domain.model import Source
from gateway.open311 import (
    Open311Error,
    open_case_payload,
    parse_query,
    refusal,
    service_definition,
    service_entry,
    service_request,
)
from infra.catalogue import BUILT_IN, load_catalogue

ROOT = Path(__file__).resolve().parent.parent.parent
CATALOGUE = load_catalogue()
ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime.fromisoformat("2026-11-23T09:30:00+08:00")


def catalogue_json(**changes: Any) -> str:
    data = json.loads(BUILT_IN.read_text(encoding="utf-8"))
    data.update(changes)
    return json.dumps(data)


def one_service(**changes: Any) -> str:
    service = {
        "code": "potholes",
        "name_zh": "道路坑洼",
        "name_en": "Potholes",
        "severity": "minor",
        "handling_class": "immediate",
        **changes,
    }
    return json.dumps({"version": "t-1", "services": [service]})


# ------------------------------------------------------------------------ the catalogue


def test_the_built_in_catalogue_has_every_category_the_project_uses() -> None:
    used = {case.category for case in DEMO_CASES}
    for text in (ROOT / "README.md", ROOT / "tests" / "support.py", ROOT / "examples" / "tour.py"):
        used |= set(re.findall(r'"category":\s*"([a-z_]+)"', text.read_text(encoding="utf-8")))
    used |= set(re.findall(r"--category (\w+)", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert used, "no category found: the patterns above no longer match"
    assert used <= set(CATALOGUE.codes), used - set(CATALOGUE.codes)
    assert CATALOGUE.version == "services-2026.1"


def test_each_code_is_a_valid_report_category() -> None:
    for service in CATALOGUE.services:
        case = parse_open_case(
            {
                "source": "visit",
                "title": service.name_zh,
                "description": service.name_en,
                "category": service.code,
                "location": {
                    "grid_id": "G-1",
                    "community_id": "C-1",
                    "street_id": "S-1",
                    "district_id": "D-1",
                },
                "reporter": {"name": "x"},
                "reported_at": NOW.isoformat(),
            }
        )
        assert CATALOGUE.service(case.category) is service


def test_an_unknown_code_is_refused_naming_the_field_and_where_the_codes_are() -> None:
    with pytest.raises(DomainError) as refused:
        CATALOGUE.service("13800000000")
    message = str(refused.value)
    assert message.startswith("category: not a service code of catalogue services-2026.1")
    assert "casectl services" in message and "/services.json" in message
    assert "13800000000" not in message  # what was sent is never quoted


def test_a_service_may_carry_limits_of_its_own() -> None:
    water = CATALOGUE.service("water_supply")
    assert water.limits is not None and water.limits.department is not None
    assert water.departments == ["water", "police"]
    parsed = parse_catalogue(one_service(limits={"on_site": "PT5M", "loops": {"grid": "P2D"}}))
    limits = parsed.services[0].limits
    assert limits is not None and limits.on_site == timedelta(minutes=5)
    assert limits.loops is not None and limits.loops.grid == timedelta(days=2)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (catalogue_json(services=[]), "services: List should have at least 1 item"),
        (
            json.dumps(
                {
                    "version": "t",
                    "services": [json.loads(one_service())["services"][0]] * 2,
                }
            ),
            "services: Value error, a code is listed twice: potholes",
        ),
        (one_service(code="Pot-holes"), "services.0.code: String should match pattern"),
        (one_service(severity="urgent"), "services.0.severity: Input should be"),
        (one_service(handling_class="later"), "services.0.handling_class: Input should be"),
        (one_service(departments=["water", "water"]), "services.0.departments: Value error"),
        (one_service(limits={"on_site": "-PT5M"}), "services.0.limits.on_site"),
        (one_service(limits={"resolve": "P1D"}), "services.0.limits.resolve: Extra inputs"),
        (one_service(name_en=""), "services.0.name_en: String should have at least 1"),
        (catalogue_json(version="a b"), "version: String should match pattern"),
    ],
)
def test_a_malformed_catalogue_is_refused_naming_the_field(data: str, named: str) -> None:
    with pytest.raises(DomainError, match=re.escape(named)):
        parse_catalogue(data, "catalogue")


# ------------------------------------------------------------------ Open311: services


def test_services_in_either_language_and_their_attributes() -> None:
    water = CATALOGUE.service("water_supply")
    assert service_entry(water, "zh")["service_name"] == "供水管网"
    assert service_entry(water, "en")["service_name"] == "Water supply"
    assert service_entry(water, "zh")["metadata"] is True
    attributes = service_definition(water)["attributes"]
    required = [a["code"] for a in attributes if a["required"]]
    assert required == ["ticket", "grid_id", "community_id", "street_id", "district_id"]
    assert [a["order"] for a in attributes] == list(range(1, len(attributes) + 1))


# ---------------------------------------------------------------------- Open311: a POST


def form(**changes: str | None) -> dict[str, list[str]]:
    fields: dict[str, str | None] = {
        "api_key": "k",
        "service_code": "public_lighting",
        "description": "路灯坏了",
        "attribute[ticket]": "T-1",
        "attribute[grid_id]": "G-01",
        "attribute[community_id]": "C-01",
        "attribute[street_id]": "S-01",
        "attribute[district_id]": "D-01",
        "first_name": "阿姨",
        "last_name": "王",
        "phone": "13800000000",
        **changes,
    }
    return {k: [v] for k, v in fields.items() if v is not None}


def test_a_post_becomes_an_open_case_report() -> None:
    payload = open_case_payload(
        form(lat="30.1", long="120.2"), Source.HOTLINE_12345, CATALOGUE, NOW
    )
    case = parse_open_case(payload)
    assert case.source is Source.HOTLINE_12345 and case.source_ref == "T-1"
    assert case.category == "public_lighting" and case.title == "路灯照明"
    assert case.reporter.name == "王 阿姨" and case.reporter.phone == "13800000000"
    assert case.location.coordinates is not None and case.location.coordinates.lon == 120.2
    assert case.reported_at == NOW
    anonymous = open_case_payload(
        form(first_name=None, last_name=None, phone=None), Source.VISIT, CATALOGUE, NOW
    )
    assert anonymous["reporter"] == {"name": "匿名"}


@pytest.mark.parametrize(
    ("changes", "status", "named"),
    [
        ({"service_code": None}, 400, "service_code: required"),
        ({"service_code": "potholes"}, 400, "service_code: not a service"),
        ({"description": None}, 400, "description: required"),
        ({"description": "  "}, 400, "description: required"),
        ({"attribute[ticket]": None}, 400, "attribute[ticket]: required"),
        ({"attribute[grid_id]": None}, 400, "attribute[grid_id]: required"),
        ({"attribute[district_id]": None}, 400, "attribute[district_id]: required"),
        ({"lat": "30.1"}, 400, "long: give lat and long together"),
        ({"lat": "north", "long": "1"}, 400, "lat: must be a decimal number"),
        ({"attribute[colour]": "red"}, 400, "attribute[colour]: an unknown field"),
        ({"13800000000": "x"}, 400, "the request: an unknown field"),
    ],
)
def test_a_bad_post_names_its_field(
    changes: dict[str, str | None], status: int, named: str
) -> None:
    with pytest.raises(Open311Error) as refused:
        open_case_payload(form(**changes), Source.VISIT, CATALOGUE, NOW)
    assert refused.value.status == status
    assert refused.value.description.startswith(named)
    assert "13800000000" not in refused.value.description


def test_a_field_sent_twice_is_refused() -> None:
    fields = form()
    fields["service_code"] = ["roads", "greening"]
    with pytest.raises(Open311Error, match=r"service_code: given more than once"):
        open_case_payload(fields, Source.VISIT, CATALOGUE, NOW)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"attribute[reported_at]": "yesterday"}, "attribute[reported_at]: "),
        ({"attribute[reported_at]": "2026-11-23T09:30:00"}, "attribute[reported_at]: "),
        ({"attribute[ticket]": "T 1"}, "attribute[ticket]: String should match"),
        ({"attribute[grid_id]": "G 1"}, "attribute[grid_id]: String should match"),
        ({"phone": "call me"}, "phone: String should match"),
        ({"lat": "91", "long": "0"}, "lat: Input should be less than or equal to 90"),
        ({"description": "x" * 4001}, "description: String should have at most 4000"),
    ],
)
def test_the_report_models_refusal_names_the_open311_field(
    changes: dict[str, str], named: str
) -> None:
    payload = open_case_payload(form(**changes), Source.VISIT, CATALOGUE, NOW)
    with pytest.raises(DomainError) as refused:
        parse_open_case(payload)
    assert refusal(str(refused.value)).description.startswith(named)


# -------------------------------------------------------------------- Open311: a query


def test_a_query_without_dates_covers_the_last_90_days() -> None:
    q = parse_query({}, CATALOGUE, NOW, ZONE)
    assert q.end == NOW and q.start == NOW - timedelta(days=90) and q.open is None
    q = parse_query({"start_date": "2026-11-01"}, CATALOGUE, NOW, ZONE)
    assert q.start == datetime(2026, 11, 1, tzinfo=ZONE)
    assert q.end == q.start + timedelta(days=90)
    q = parse_query(
        {"end_date": "2026-11-30T16:00:00Z", "status": "closed", "service_code": "roads,greening"},
        CATALOGUE,
        NOW,
        ZONE,
    )
    assert q.end == datetime.fromisoformat("2026-11-30T16:00:00+00:00")
    assert q.open is False and q.codes == ("roads", "greening")
    assert parse_query({"status": "open,closed"}, CATALOGUE, NOW, ZONE).open is None
    ids = parse_query({"service_request_id": "case-visit-1,case-visit-2"}, CATALOGUE, NOW, ZONE)
    assert ids.ids == ("case-visit-1", "case-visit-2")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"start_date": "01/11/2026"}, "start_date: must be a W3C datetime"),
        ({"end_date": "2026-02-30"}, "end_date: not a date that exists"),
        ({"start_date": "2026-11-02", "end_date": "2026-11-01"}, "end_date: must not be before"),
        ({"start_date": "2026-01-01", "end_date": "2026-11-01"}, "end_date: the span"),
        ({"status": "pending"}, "status: must be open, closed"),
        ({"service_code": "potholes"}, "service_code: not a service"),
        ({"service_request_id": "42; DROP TABLE cases"}, "service_request_id: from 1 to 100"),
        ({"service_request_id": ""}, "service_request_id: from 1 to 100"),
        ({"page_size": "0"}, "page_size: must be a whole number from 1 to 1000"),
        ({"page": "x"}, "page: must be a whole number"),
        ({"community_id": "C 1"}, "community_id: not a community id"),
    ],
)
def test_a_bad_query_names_its_filter(query: dict[str, str], named: str) -> None:
    with pytest.raises(Open311Error) as refused:
        parse_query(query, CATALOGUE, NOW, ZONE)
    assert refused.value.status == 400 and refused.value.description.startswith(named)


# ------------------------------------------------------------ Open311: a service request


def row(**changes: Any) -> dict[str, Any]:
    return {
        "case_id": "case-visit-V1",
        "category": "roads",
        "step": "resolve",
        "level": "community",
        "loop": "grid",
        "community_id": "C-01",
        "street_id": "S-01",
        "district_id": "D-01",
        "due_at": NOW + timedelta(days=3),
        "opened_at": NOW,
        "updated_at": NOW + timedelta(hours=1),
        "archived_at": None,
        "outcome": None,
        "satisfaction": None,
        "pending_return": None,
        **changes,
    }


def test_a_service_request_says_where_the_case_stands() -> None:
    open_ = service_request(row(), CATALOGUE, ZONE)
    assert open_["status"] == "open" and open_["status_notes"].startswith("具体解事")
    assert open_["agency_responsible"] == "C-01 (community, grid loop)"
    assert open_["expected_datetime"] == "2026-11-26T09:30:00+08:00"
    assert open_["requested_datetime"] == "2026-11-23T09:30:00+08:00"
    assert open_["service_name"] == "道路设施" and open_["description"] is None
    street = service_request(row(level="street", loop="street"), CATALOGUE, ZONE)
    assert street["agency_responsible"] == "S-01 (street, street loop)"
    new = service_request(row(step="collect", level=None, loop=None), CATALOGUE, ZONE)
    assert new["agency_responsible"] == "C-01 (community, dispatch)"
    returned = service_request(row(pending_return='{"by": "gw-1"}'), CATALOGUE, ZONE)
    assert "returned by its handler" in returned["status_notes"]
    closed = service_request(
        row(
            step="archive",
            archived_at=NOW + timedelta(days=2),
            outcome="completed",
            satisfaction="satisfied",
        ),
        CATALOGUE,
        ZONE,
    )
    assert closed["status"] == "closed" and closed["expected_datetime"] is None
    assert closed["outcome"] == "completed" and closed["satisfaction"] == "satisfied"
    assert closed["closed_datetime"] == "2026-11-25T09:30:00+08:00"
    assert closed["address"] == "D-01 S-01 C-01"
