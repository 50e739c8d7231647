"""Open311 GeoReport v2 in the terms of the case loop: the catalogue as services, a POST
as an OpenCase report, a row of the read model (`cases`) as a service request, and the
query's filters. No I/O here: gateway/app.py serves it.

What leaves: codes, the place down to the community, steps, times and outcomes. Never
the reporter (name, phone, account), the address or coordinates, nor any text the
resident typed (title, description, comments): a service request is public (办结公示).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from domain.catalogue import Service, ServiceCatalogue
from domain.model import CASE_ID_PATTERN, Source

# the longest span one query covers (the spec's 90 days), and its page size
MAX_SPAN = timedelta(days=90)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_IDS = 100
WHERE_THE_CODES_ARE = "GET /services.json lists them (or `casectl services`)"


class Open311Error(Exception):
    """An error the gateway answers with `[{"code": status, "description": ...}]`; the
    description names the field and says why (never quoting what was sent)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description

    def body(self) -> list[dict[str, Any]]:
        return [{"code": self.status, "description": self.description}]


# ---------------------------------------------------------------------------- services

# the attributes of every service (Open311 `attribute[code]` in a POST): where the case
# belongs, and the calling system's ticket, which makes a POST idempotent
ATTRIBUTES: list[tuple[str, bool, str, str]] = [
    (
        "ticket",
        True,
        "string",
        "your system's ticket number (A-Z a-z 0-9 . _ -, at most 64): "
        "a second POST of the same ticket returns the same service_request_id",
    ),
    ("grid_id", True, "string", "the grid (网格) where the matter is, e.g. G-0101"),
    ("community_id", True, "string", "its community (社区), e.g. C-01"),
    ("street_id", True, "string", "its street (街道), e.g. S-01"),
    ("district_id", True, "string", "its district (区), e.g. D-01"),
    ("title", False, "string", "a short title (default: the service's name)"),
    (
        "reported_at",
        False,
        "datetime",
        "when the resident reported it, W3C with offset (default: when it is posted)",
    ),
]


def service_entry(service: Service, locale: str) -> dict[str, Any]:
    """GET /services.json: one service."""
    english = locale.startswith("en")
    return {
        "service_code": service.code,
        "service_name": service.name_en if english else service.name_zh,
        "description": service.name_zh if english else service.name_en,
        "metadata": True,  # the attributes above
        "type": "realtime",
        "keywords": ", ".join([service.severity.value, service.handling_class.value]),
        "group": service.handling_class.value,
    }


def service_definition(service: Service) -> dict[str, Any]:
    """GET /services/{code}.json."""
    return {
        "service_code": service.code,
        "attributes": [
            {
                "variable": True,
                "code": code,
                "datatype": datatype,
                "required": required,
                "datatype_description": description,
                "order": order,
                "description": description,
            }
            for order, (code, required, datatype, description) in enumerate(ATTRIBUTES, 1)
        ],
    }


# ----------------------------------------------------------------------------- a POST

# the POST's fields by the OpenCase field they fill: a refusal of OpenCase names them
_FIELD_OF = {
    "source_ref": "attribute[ticket]",
    "title": "attribute[title]",
    "reported_at": "attribute[reported_at]",
    "location.grid_id": "attribute[grid_id]",
    "location.community_id": "attribute[community_id]",
    "location.street_id": "attribute[street_id]",
    "location.district_id": "attribute[district_id]",
    "location.address": "address_string",
    "location.coordinates.lat": "lat",
    "location.coordinates.lon": "long",
    "location.coordinates": "lat",
    "reporter.name": "first_name",
    "reporter.phone": "phone",
    "reporter.resident_id": "account_id",
    "description": "description",
}
_KNOWN = {
    "api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string",
    "address_id", "email", "device_id", "account_id", "first_name", "last_name", "phone",
    "description", "media_url",
    *(f"attribute[{code}]" for code, *_ in ATTRIBUTES),
}  # fmt: skip
ANONYMOUS = "匿名"  # a report without a name: Open311 lets a resident stay anonymous


def _one(form: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = form.get(name, [])
    if len(values) > 1:
        raise Open311Error(400, f"{name}: given more than once")
    value = values[0].strip() if values else ""
    return value or None


def _number(form: Mapping[str, Sequence[str]], name: str) -> float | None:
    value = _one(form, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise Open311Error(400, f"{name}: must be a decimal number (WGS84)") from None


def open_case_payload(
    form: Mapping[str, Sequence[str]],
    source: Source,
    catalogue: ServiceCatalogue,
    now: datetime,
) -> dict[str, Any]:
    """The OpenCase report of a POST /requests.json (its fields, each a list of the values
    sent); Open311Error 400 naming the first field that is missing or wrong. The api_key
    is checked before (it decides `source`)."""
    unknown = [name for name in form if name not in _KNOWN]
    if unknown:
        attribute = next((n for n in unknown if n.startswith("attribute[")), None)
        raise Open311Error(
            400,
            f"{attribute or 'the request'}: an unknown field"
            + (
                " (attributes: GET /services/{service_code}.json)"
                if attribute
                else "; see GET /services/{service_code}.json"
            ),
        )
    code = _one(form, "service_code")
    if code is None:
        raise Open311Error(400, "service_code: required; " + WHERE_THE_CODES_ARE)
    service = catalogue.get(code)
    if service is None:
        raise Open311Error(
            400,
            f"service_code: not a service of catalogue {catalogue.version}; {WHERE_THE_CODES_ARE}",
        )
    for name, required, *_ in ATTRIBUTES:
        if required and _one(form, f"attribute[{name}]") is None:
            raise Open311Error(400, f"attribute[{name}]: required")
    if _one(form, "description") is None:
        raise Open311Error(400, "description: required")
    lat, lon = _number(form, "lat"), _number(form, "long")
    if (lat is None) != (lon is None):
        raise Open311Error(400, f"{'long' if lon is None else 'lat'}: give lat and long together")
    name = " ".join(p for p in (_one(form, "last_name"), _one(form, "first_name")) if p)
    location: dict[str, Any] = {
        key: _one(form, f"attribute[{key}]")
        for key in ("grid_id", "community_id", "street_id", "district_id")
    }
    if (address := _one(form, "address_string")) is not None:
        location["address"] = address
    if lat is not None:
        location["coordinates"] = {"lat": lat, "lon": lon}
    reporter: dict[str, Any] = {"name": name or ANONYMOUS}
    if (phone := _one(form, "phone")) is not None:
        reporter["phone"] = phone
    if (account := _one(form, "account_id")) is not None:
        reporter["resident_id"] = account
    return {
        "source": source.value,
        "source_ref": _one(form, "attribute[ticket]"),
        "title": _one(form, "attribute[title]") or service.name_zh,
        "description": _one(form, "description"),
        "category": service.code,
        "location": location,
        "reporter": reporter,
        "reported_at": _one(form, "attribute[reported_at]") or now.isoformat(),
    }


def refusal(message: str) -> Open311Error:
    """An OpenCase refusal ("OpenCase refused: location.grid_id: …; …") in the POST's
    own field names."""
    head, _, problems = message.partition("refused: ")
    described = []
    for problem in (problems or head).split("; "):
        field, sep, why = problem.partition(": ")
        described.append(f"{_FIELD_OF.get(field, field)}: {why}" if sep else problem)
    return Open311Error(400, "; ".join(described))


# ---------------------------------------------------------------------- the query

_W3C = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2}))?$")
_ORG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CASE_ID = re.compile(CASE_ID_PATTERN)


@dataclass(frozen=True)
class Query:
    """GET /requests.json's filters. `ids` overrides all the others (the spec's rule)."""

    ids: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    open: bool | None = None  # None: open and closed
    community_id: str | None = None
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE


def _date(name: str, value: str, zone: ZoneInfo) -> datetime:
    """A W3C datetime (a date alone is its midnight, local time)."""
    if not _W3C.match(value):
        raise Open311Error(400, f"{name}: must be a W3C datetime, e.g. 2026-11-01T00:00:00+08:00")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name}: not a date that exists") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


def _int(query: Mapping[str, str], name: str, default: int, high: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise Open311Error(400, f"{name}: must be a whole number from 1 to {high}")
    return int(value)


def parse_query(
    query: Mapping[str, str], catalogue: ServiceCatalogue, now: datetime, zone: ZoneInfo
) -> Query:
    """The filters of GET /requests.json; Open311Error 400 naming a bad one. Without
    dates the last 90 days; one date alone spans 90 days from (or to) it; a span may not
    exceed 90 days."""
    page = _int(query, "page", 1, 10_000)
    page_size = _int(query, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if (ids := query.get("service_request_id")) is not None:
        wanted = tuple(i.strip() for i in ids.split(",") if i.strip())
        if not wanted or len(wanted) > MAX_IDS or not all(_CASE_ID.match(i) for i in wanted):
            raise Open311Error(
                400, f"service_request_id: from 1 to {MAX_IDS} ids (case-…), comma separated"
            )
        return Query(ids=wanted, page=page, page_size=page_size)
    codes: tuple[str, ...] = ()
    if (given := query.get("service_code")) is not None:
        codes = tuple(c.strip() for c in given.split(",") if c.strip())
        if not codes or any(catalogue.get(c) is None for c in codes):
            raise Open311Error(
                400,
                f"service_code: not a service of catalogue "
                f"{catalogue.version}; {WHERE_THE_CODES_ARE}",
            )
    start = _date("start_date", query["start_date"], zone) if "start_date" in query else None
    end = _date("end_date", query["end_date"], zone) if "end_date" in query else None
    if start is None and end is None:
        end = now
    if start is None:
        assert end is not None
        start = end - MAX_SPAN
    if end is None:
        end = start + MAX_SPAN
    if end < start:
        raise Open311Error(400, "end_date: must not be before start_date")
    if end - start > MAX_SPAN:
        raise Open311Error(400, "end_date: the span from start_date may not exceed 90 days")
    is_open: bool | None = None
    if (status := query.get("status")) is not None:
        statuses = {s.strip() for s in status.split(",")}
        if not statuses or not statuses <= {"open", "closed"}:
            raise Open311Error(400, "status: must be open, closed, or both comma separated")
        is_open = None if len(statuses) == 2 else "open" in statuses
    community = query.get("community_id")
    if community is not None and not _ORG.match(community):
        raise Open311Error(400, "community_id: not a community id")
    return Query(
        codes=codes, start=start, end=end, open=is_open, community_id=community,
        page=page, page_size=page_size,
    )  # fmt: skip


# ------------------------------------------------------------------ a service request

# the read model's columns a service request is made of (nothing personal among them)
COLUMNS = """case_id, category, step, level, state ->> 'loop' AS loop, community_id,
    street_id, district_id, due_at, opened_at, updated_at, archived_at, outcome,
    state ->> 'satisfaction' AS satisfaction, state ->> 'pending_return' AS pending_return"""

STEP_NOTES = {
    "collect": "网格问事: reported, waiting to be dispatched",
    "deliberate": "商议说事: the people concerned are agreeing what to do",
    "resolve": "具体解事: being resolved",
    "feedback": "反馈息事: resolved, waiting for the resident's feedback",
    "revisit": "回访宁事: accepted, waiting for the revisit",
}
OUTCOME_NOTES = {
    "completed": "归档完事: completed and archived",
    "withdrawn": "撤回: withdrawn and archived",
    "merged": "并案: merged into another report of the same matter",
}
LOOP_NAMES = {
    "micro_grid": "micro-grid loop",
    "grid": "grid loop",
    "street": "street loop",
    "district": "district",
}


def _w3c(at: datetime | None, zone: ZoneInfo) -> str | None:
    return None if at is None else at.astimezone(zone).isoformat(timespec="seconds")


class Row(Protocol):
    """A row of the query below (an asyncpg Record, or a dict in a test)."""

    def __getitem__(self, key: str) -> Any: ...


def service_request(
    row: Row, catalogue: ServiceCatalogue, zone: ZoneInfo, locale: str = "zh"
) -> dict[str, Any]:
    """One row of `cases` as an Open311 service request (plus the place down to the
    community, and for a closed case its outcome and the resident's satisfaction)."""
    service = catalogue.get(row["category"])
    closed = row["archived_at"] is not None
    if closed:
        notes = OUTCOME_NOTES.get(row["outcome"] or "", "archived")
    else:
        notes = STEP_NOTES.get(row["step"], row["step"])
        if row["pending_return"] is not None:
            notes += " (returned by its handler, under review)"
    level = row["level"]
    holder = {"community": row["community_id"], "street": row["street_id"]}.get(
        level or "", row["district_id"]
    )
    if level is None:  # not dispatched yet: the community dispatches it
        agency = f"{row['community_id']} (community, dispatch)"
    else:
        loop = LOOP_NAMES.get(row["loop"] or "", level)
        agency = f"{holder} ({level}{', ' + loop if loop != level else ''})"
    name = None
    if service is not None:
        name = service.name_en if locale.startswith("en") else service.name_zh
    return {
        "service_request_id": row["case_id"],
        "status": "closed" if closed else "open",
        "status_notes": notes,
        "service_name": name,
        "service_code": row["category"],
        "description": None,  # the resident's words stay in the case
        "agency_responsible": agency,
        "service_notice": None,
        "requested_datetime": _w3c(row["opened_at"], zone),
        "updated_datetime": _w3c(row["updated_at"], zone),
        "expected_datetime": None if closed else _w3c(row["due_at"], zone),
        "address": f"{row['district_id']} {row['street_id']} {row['community_id']}",
        "address_id": row["community_id"],
        "zipcode": None,
        "lat": None,
        "long": None,
        "media_url": None,
        "community_id": row["community_id"],
        "street_id": row["street_id"],
        "district_id": row["district_id"],
        "closed_datetime": _w3c(row["archived_at"], zone),
        "outcome": row["outcome"],
        "satisfaction": row["satisfaction"] if closed else None,
    }
