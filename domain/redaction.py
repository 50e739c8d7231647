"""Residents' personal data as shown to someone not entitled to it: each kind of personal
field has its redaction (a pure function), and `redact_document` applies them wherever
such a field sits in a JSON document (a start input, an update, an activity's events, a
query's state), leaving the rest of it as it was.

The codec server uses it for users of the Temporal UI whose role does not entitle them to
residents' data (docs/architecture.md, "Who sees personal data"). The fields are those
`PERSONAL_FIELDS` declares: the reporter (name, phone, account, categories) and the
location's address and coordinates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MASK = "**"
_PHONE_SEPARATORS = re.compile(r"[\s-]")
_COUNTRY_CN = "+86"
# coordinates are rounded to two decimals: about a kilometre, the neighbourhood, not
# the household
COORDINATE_DECIMALS = 2


def redact_name(name: str) -> str:
    """The first character and a fixed mask, whatever the length: `张秀英` -> `张**`."""
    return name[:1] + MASK if name else name


def redact_phone(phone: str) -> str:
    """A mobile number keeps its first three and last four digits (`138****5678`), as
    the hotline shows them; a shorter number only its last two; `+86` stays in front."""
    digits = _PHONE_SEPARATORS.sub("", phone)
    prefix = ""
    if digits.startswith(_COUNTRY_CN) and len(digits) > len(_COUNTRY_CN) + 7:
        prefix, digits = _COUNTRY_CN + " ", digits[len(_COUNTRY_CN) :]
    elif digits.startswith("+"):
        prefix, digits = "+", digits[1:]
    if len(digits) >= 11:
        return f"{prefix}{digits[:3]}****{digits[-4:]}"
    if len(digits) > 2:
        return f"{prefix}****{digits[-2:]}"
    return "****"


def redact_address(address: str) -> str:
    """The leading words up to the first digit (at most six characters: the road or
    estate), never a building, unit or room number: `幸福里7号楼3单元502室` -> `幸福里****`."""
    match = re.match(r"[^\d０-９]{0,6}", address)
    head = match.group(0) if match else ""
    return head.rstrip() + "****"


def redact_coordinates(coordinates: Any) -> Any:
    """Latitude and longitude rounded to `COORDINATE_DECIMALS` (about a kilometre)."""
    if not isinstance(coordinates, dict):
        return redact_unknown(coordinates)
    return {
        key: round(value, COORDINATE_DECIMALS)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else redact_unknown(value)
        for key, value in coordinates.items()
    }


def redact_resident_id(resident_id: str) -> str:
    """A resident's account names them to whoever can look it up: fully masked."""
    return "****"


def redact_categories(categories: Any) -> Any:
    """Which residents are always visited (an elderly person living alone, a household in
    difficulty) is personal: each category masked, only their number shown."""
    if not isinstance(categories, list):
        return redact_unknown(categories)
    return ["****" for _ in categories]


def redact_unknown(value: Any) -> Any:
    """A value in a personal field this module has no rule for: masked entirely (a new
    field is hidden until someone decides how it may be shown)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: redact_unknown(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_unknown(item) for item in value]
    return "****"


_REPORTER: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: redact_name(v) if isinstance(v, str) else redact_unknown(v),
    "phone": lambda v: redact_phone(v) if isinstance(v, str) else redact_unknown(v),
    "resident_id": lambda v: redact_resident_id(v) if isinstance(v, str) else redact_unknown(v),
    "categories": redact_categories,
}


def redact_reporter(reporter: Any) -> Any:
    """The reporter, each field with its rule; a field without a rule masked entirely."""
    if not isinstance(reporter, dict):
        return redact_unknown(reporter)
    return {
        key: None if value is None else _REPORTER.get(key, redact_unknown)(value)
        for key, value in reporter.items()
    }


# Where personal fields sit, by the keys that lead to them at the end of their path in any
# document: a report's `reporter` (an OpenCase, a `case_opened` event's `case`, a state's
# `case`, a merged report), and a location's `address` and `coordinates`. A test checks
# that every path of `PERSONAL_FIELDS` ends in one of these.
PERSONAL_SUFFIXES: dict[tuple[str, ...], Callable[[Any], Any]] = {
    ("reporter",): redact_reporter,
    ("location", "address"): lambda v: (
        redact_address(v) if isinstance(v, str) else redact_unknown(v)
    ),
    ("location", "coordinates"): redact_coordinates,
}


def redact_document(document: Any) -> Any:
    """A copy of a JSON document with every personal field redacted, at any depth; the
    rest unchanged. A sealed field (`{"sealed": …}`, from the event store) stays sealed."""
    return _walk(document, ())


def _walk(value: Any, path: tuple[str, ...]) -> Any:
    if isinstance(value, list):
        return [_walk(item, path) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        here = (*path[-1:], key)
        rule = PERSONAL_SUFFIXES.get(here) or PERSONAL_SUFFIXES.get((key,))
        if rule is None or item is None or _sealed(item):
            out[key] = _walk(item, (key,))
        else:
            out[key] = rule(item)
    return out


def _sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"sealed"}
