"""Names and payloads of the talk-day agenda: the TalkDayAgenda workflow's input and
result, and its activities' (activities/agenda.py).

This module imports only the domain and pydantic: the workflow sandbox may load it."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from domain.model import Frozen, OrgId, Step
from domain.talkdays import (
    DEFAULT_AGENDA_AT,
    DEFAULT_TIMEZONE,
    LocalTime,
    TalkDayRule,
    TimezoneName,
)

WORKFLOW_TYPE = "TalkDayAgenda"
COLLECT_AGENDA = "collect_agenda"
SCHEDULE_CASE_DELIBERATION = "schedule_case_deliberation"
# The actor the agenda sends the update as (its org is the community).
AGENDA_ACTOR_ID = "talk-day-agenda"


class AgendaRequest(Frozen):
    """The TalkDayAgenda workflow's input (plain JSON): one community's rule and the
    configuration's timezone. The Schedule of the community starts it with this."""

    timezone: TimezoneName = DEFAULT_TIMEZONE
    agenda_at: LocalTime = DEFAULT_AGENDA_AT
    rule: TalkDayRule


class ItemResult(StrEnum):
    PENDING = "pending"  # on the agenda, the case not told yet
    SCHEDULED = "scheduled"  # the case accepted its talk day
    SKIPPED = "skipped"  # the case refused (moved on, not self-governance…): see reason


class AgendaItem(Frozen):
    """One case on the agenda, as it stood when it was added. No personal data: the
    title and category only, never the reporter."""

    case_id: str
    position: int
    title: str
    category: str
    step: Step
    opened_at: datetime
    result: ItemResult = ItemResult.PENDING
    reason: str | None = None  # why the case refused, when skipped


class Agenda(Frozen):
    """A community's agenda for one talk day (talk_agendas + talk_agenda_items)."""

    community_id: OrgId
    talk_day: date
    time: LocalTime
    place: str | None
    workflow_id: str  # the run that drew it up first
    created_at: datetime
    items: list[AgendaItem]

    @property
    def agenda_id(self) -> str:
        return agenda_id(self.community_id, self.talk_day)


class CollectAgenda(Frozen):
    """Input of `collect_agenda`: the talk day to draw up for."""

    community_id: OrgId
    talk_day: date
    time: LocalTime
    place: str | None = None


class ScheduleDeliberations(Frozen):
    """Input of `schedule_case_deliberation`: tell the cases of a stored agenda."""

    community_id: OrgId
    talk_day: date


def agenda_id(community_id: str, talk_day: date) -> str:
    """`<community_id>/<talk_day>`, the id the cases record (`^[A-Za-z0-9._:/-]{1,100}$`)."""
    return f"{community_id}/{talk_day.isoformat()}"


def command_id(community_id: str, talk_day: date) -> str:
    """The update id (= command id) of a case's `schedule_deliberation`: one per agenda, so
    a retried activity or a rerun of the agenda applies it once."""
    return f"agenda:{community_id}:{talk_day.isoformat()}"
