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

from domain.policy import DeadlinePolicy
from domain.state import CaseState

# What a search attribute shows of a case under its policy (None: unset).
Shown = Callable[[CaseState, DeadlinePolicy], Any]

# Each search attribute with what it shows, in one table: the keys the worker registers
# and the updates the workflow makes both follow it.
_SHOWN: list[tuple[SearchAttributeKey[Any], Shown]] = []


def _shows(
    key: SearchAttributeKey[SearchAttributeValueType], value: Shown
) -> SearchAttributeKey[SearchAttributeValueType]:
    _SHOWN.append((key, value))
    return key


def _value(enum: StrEnum | None) -> str | None:
    return None if enum is None else enum.value


CASE_STEP = _shows(SearchAttributeKey.for_keyword("CaseStep"), lambda s, _: s.step.value)
CASE_LEVEL = _shows(SearchAttributeKey.for_keyword("CaseLevel"), lambda s, _: _value(s.level))
CASE_CATEGORY = _shows(SearchAttributeKey.for_keyword("CaseCategory"), lambda s, _: s.case.category)
CASE_SEVERITY = _shows(
    SearchAttributeKey.for_keyword("CaseSeverity"), lambda s, _: _value(s.severity)
)
HANDLING_CLASS = _shows(
    SearchAttributeKey.for_keyword("HandlingClass"), lambda s, _: _value(s.handling_class)
)
ASSIGNEE = _shows(SearchAttributeKey.for_keyword("Assignee"), lambda s, _: s.assignee)
# the light now where the case's policy says so (2026.3 on), else the worst colour so far
FLAG_COLOR = _shows(
    SearchAttributeKey.for_keyword("FlagColor"),
    lambda s, p: (s.light if p.flag_is_light else s.flag).value,
)
CASE_SOURCE = _shows(SearchAttributeKey.for_keyword("CaseSource"), lambda s, _: s.case.source.value)
CASE_ORGS = _shows(SearchAttributeKey.for_keyword_list("CaseOrgs"), lambda s, _: s.orgs)
REOPEN_COUNT = _shows(SearchAttributeKey.for_int("ReopenCount"), lambda s, _: s.reopen_count)
ESCALATION_COUNT = _shows(
    SearchAttributeKey.for_int("EscalationCount"), lambda s, _: s.escalation_count
)
DUE_AT = _shows(SearchAttributeKey.for_datetime("DueAt"), lambda s, _: s.due_at)
# the 7135 loop (policies with loops; unset otherwise, so older cases never set it)
CASE_LOOP = _shows(SearchAttributeKey.for_keyword("CaseLoop"), lambda s, _: _value(s.loop))

ALL_KEYS: tuple[SearchAttributeKey[Any], ...] = tuple(key for key, _ in _SHOWN)


def search_updates(
    state: CaseState, before: CaseState | None, policy: DeadlinePolicy
) -> list[SearchAttributeUpdate[Any]]:
    """The search attribute changes from `before` (None: a new case) to `state`."""
    updates: list[SearchAttributeUpdate[Any]] = []
    for key, shown in _SHOWN:
        value = shown(state, policy)
        if before is None:
            if value is not None:
                updates.append(key.value_set(value))
        elif shown(before, policy) != value:
            updates.append(key.value_set(value) if value is not None else key.value_unset())
    return updates
