"""Refusals of the domain. Messages name fields and reasons, never the values given:
a refusal lands in logs and in Temporal's history, and must not leak a phone number."""

from __future__ import annotations

import re

from pydantic import ValidationError


class DomainError(Exception):
    """A command or input the domain refuses; the message says which field and why."""


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _field_name(part: str | int) -> str:
    """A field name as the contract spells it; an unknown key sent by a caller is itself
    a value (it could be a phone number) and is not quoted."""
    if isinstance(part, int):
        return str(part)
    return part if _IDENTIFIER.match(part) else "(unknown field)"


def validation_message(what: str, exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return f"{what}: {exc}"
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(_field_name(part) for part in error["loc"]) or "(input)"
        problems.append(f"{field}: {error['msg']}")
    message = f"{what} refused: " + "; ".join(problems[:10])
    if len(problems) > 10:
        message += f"; and {len(problems) - 10} more"
    return message
