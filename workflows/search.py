"""The custom search attributes CaseWorkflow keeps current, declared once
(docs/architecture.md, "Search attributes").

Operators filter the Temporal UI's list with them, e.g. `CaseOrgs = 'S-01' AND
FlagColor = 'red'`. Personal data never goes here: search attributes are not encrypted."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributeUpdate,
    SearchAttributeValueType,
)

from domain.state import CaseState

# Each search attribute with what it shows of a case (None: unset), in one table: the
# keys the worker registers and the updates the workflow makes both follow it.
_SHOWN: list[tuple[SearchAttributeKey[Any], Callable[[CaseState], Any]]] = []


def _shows(
    key: SearchAttributeKey[SearchAttributeValueType],
    value: Callable[[CaseState], SearchAttributeValueType | None],
) -> SearchAttributeKey[SearchAttributeValueType]:
    _SHOWN.append((key, value))
    return key


def _value(enum: StrEnum | None) -> str | None:
    return None if enum is None else enum.value


CASE_STEP = _shows(SearchAttributeKey.for_keyword("CaseStep"), lambda s: s.step.value)
CASE_LEVEL = _shows(SearchAttributeKey.for_keyword("CaseLevel"), lambda s: _value(s.level))
CASE_CATEGORY = _shows(SearchAttributeKey.for_keyword("CaseCategory"), lambda s: s.case.category)
CASE_SEVERITY = _shows(SearchAttributeKey.for_keyword("CaseSeverity"), lambda s: _value(s.severity))
HANDLING_CLASS = _shows(
    SearchAttributeKey.for_keyword("HandlingClass"), lambda s: _value(s.handling_class)
)
ASSIGNEE = _shows(SearchAttributeKey.for_keyword("Assignee"), lambda s: s.assignee)
FLAG_COLOR = _shows(SearchAttributeKey.for_keyword("FlagColor"), lambda s: s.flag.value)
CASE_SOURCE = _shows(SearchAttributeKey.for_keyword("CaseSource"), lambda s: s.case.source.value)
CASE_ORGS = _shows(SearchAttributeKey.for_keyword_list("CaseOrgs"), lambda s: s.orgs)
REOPEN_COUNT = _shows(SearchAttributeKey.for_int("ReopenCount"), lambda s: s.reopen_count)
ESCALATION_COUNT = _shows(
    SearchAttributeKey.for_int("EscalationCount"), lambda s: s.escalation_count
)
DUE_AT = _shows(SearchAttributeKey.for_datetime("DueAt"), lambda s: s.due_at)

ALL_KEYS: tuple[SearchAttributeKey[Any], ...] = tuple(key for key, _ in _SHOWN)


def search_updates(state: CaseState, before: CaseState | None) -> list[SearchAttributeUpdate[Any]]:
    """The search attribute changes from `before` (None: a new case) to `state`."""
    updates: list[SearchAttributeUpdate[Any]] = []
    for key, shown in _SHOWN:
        value = shown(state)
        if before is None:
            if value is not None:
                updates.append(key.value_set(value))
        elif shown(before) != value:
            updates.append(key.value_set(value) if value is not None else key.value_unset())
    return updates
