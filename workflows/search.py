"""The custom search attributes CaseWorkflow keeps current, declared once
(docs/architecture.md, "Search attributes").

Operators filter the Temporal UI's list with them, e.g. `CaseOrgs = 'S-01' AND
FlagColor = 'red'`. Personal data never goes here: search attributes are not encrypted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributeUpdate,
    SearchAttributeValueType,
)

from domain.state import CaseState

CASE_STEP = SearchAttributeKey.for_keyword("CaseStep")
CASE_LEVEL = SearchAttributeKey.for_keyword("CaseLevel")
CASE_CATEGORY = SearchAttributeKey.for_keyword("CaseCategory")
CASE_SEVERITY = SearchAttributeKey.for_keyword("CaseSeverity")
HANDLING_CLASS = SearchAttributeKey.for_keyword("HandlingClass")
ASSIGNEE = SearchAttributeKey.for_keyword("Assignee")
FLAG_COLOR = SearchAttributeKey.for_keyword("FlagColor")
CASE_SOURCE = SearchAttributeKey.for_keyword("CaseSource")
CASE_ORGS = SearchAttributeKey.for_keyword_list("CaseOrgs")
REOPEN_COUNT = SearchAttributeKey.for_int("ReopenCount")
ESCALATION_COUNT = SearchAttributeKey.for_int("EscalationCount")
DUE_AT = SearchAttributeKey.for_datetime("DueAt")

ALL_KEYS: tuple[SearchAttributeKey[Any], ...] = (
    CASE_STEP,
    CASE_LEVEL,
    CASE_CATEGORY,
    CASE_SEVERITY,
    HANDLING_CLASS,
    ASSIGNEE,
    FLAG_COLOR,
    CASE_SOURCE,
    CASE_ORGS,
    REOPEN_COUNT,
    ESCALATION_COUNT,
    DUE_AT,
)


def _value(enum: Any) -> str | None:
    return None if enum is None else str(enum.value)


def search_updates(state: CaseState, before: CaseState | None) -> list[SearchAttributeUpdate[Any]]:
    """The search attribute changes from `before` (None: a new case) to `state`."""
    updates: list[SearchAttributeUpdate[Any]] = []

    def put(
        key: SearchAttributeKey[SearchAttributeValueType],
        get: Callable[[CaseState], SearchAttributeValueType | None],
    ) -> None:
        value = get(state)
        if before is None:
            if value is not None:
                updates.append(key.value_set(value))
        elif get(before) != value:
            updates.append(key.value_set(value) if value is not None else key.value_unset())

    put(CASE_STEP, lambda s: s.step.value)
    put(CASE_LEVEL, lambda s: _value(s.level))
    put(CASE_CATEGORY, lambda s: s.case.category)
    put(CASE_SEVERITY, lambda s: _value(s.severity))
    put(HANDLING_CLASS, lambda s: _value(s.handling_class))
    put(ASSIGNEE, lambda s: s.assignee)
    put(FLAG_COLOR, lambda s: s.flag.value)
    put(CASE_SOURCE, lambda s: s.case.source.value)
    put(CASE_ORGS, lambda s: s.orgs)
    put(REOPEN_COUNT, lambda s: s.reopen_count)
    put(ESCALATION_COUNT, lambda s: s.escalation_count)
    put(DUE_AT, lambda s: s.due_at)
    return updates
