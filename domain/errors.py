"""Refusals of the domain. Messages name fields and reasons, never the values given:
a refusal lands in logs and in Temporal's history, and must not leak a phone number."""

from __future__ import annotations

from pydantic import ValidationError


class DomainError(Exception):
    """A command or input the domain refuses; the message says which field and why."""


def validation_message(what: str, exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return f"{what}: {exc}"
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part)[:64] for part in error["loc"]) or "(input)"
        problems.append(f"{field}: {error['msg']}")
    message = f"{what} refused: " + "; ".join(problems[:10])
    if len(problems) > 10:
        message += f"; and {len(problems) - 10} more"
    return message
