"""TalkDayAgenda: a community's agenda for its next talk day (周二说事日), drawn up the day
before by the community's Temporal Schedule (caseloop/talkday_schedules.py).

It works out the talk day from the workflow clock, stores the agenda with the cases
waiting for deliberation (activity `collect_agenda`), tells each case its talk day
(activity `schedule_case_deliberation`), shows the agenda as the workflow's current
details in the Temporal UI, and returns it. Running it again for the same talk day adds
the cases that joined since and duplicates nothing. Input: the JSON of `AgendaRequest`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy

from activities.agenda_contract import (
    COLLECT_AGENDA,
    SCHEDULE_CASE_DELIBERATION,
    WORKFLOW_TYPE,
    Agenda,
    AgendaRequest,
    CollectAgenda,
    ItemResult,
    ScheduleDeliberations,
)
from domain.errors import validation_message
from domain.talkdays import TalkDayRule, Weekday, next_talk_day
from infra.errors import INVALID_AGENDA_INPUT, failure

_COLLECT_TIMEOUT = timedelta(seconds=30)
# one update per case, each given UPDATE_TIMEOUT (30 s) in activities/agenda.py;
# a heartbeat after each case
_SCHEDULE_TIMEOUT = timedelta(minutes=10)
_SCHEDULE_HEARTBEAT = timedelta(minutes=1)
# PostgreSQL or the cases' worker away: keep trying, at most once a minute (the run's
# execution timeout, set by the schedule, bounds it)
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
_REASON_SHOWN = 120


@workflow.defn(name=WORKFLOW_TYPE)
class TalkDayAgenda:
    @workflow.run
    async def run(self, payload: Any) -> Agenda:
        # Any, not the model: input that does not decode would fail the workflow task
        # and retry forever; refused here, naming the field.
        try:
            request = AgendaRequest.model_validate(payload)
        except ValidationError as exc:
            raise failure(
                validation_message("TalkDayAgenda input", exc), INVALID_AGENDA_INPUT
            ) from None
        rule = request.rule
        talk_day = next_talk_day(rule, workflow.now(), request.timezone)
        workflow.set_current_details(
            f"drawing up the agenda of community {rule.community_id} "
            f"for its talk day {talk_day.isoformat()}"
        )
        agenda: Agenda = await workflow.execute_activity(
            COLLECT_AGENDA,
            CollectAgenda(
                community_id=rule.community_id,
                talk_day=talk_day,
                time=rule.time,
                place=rule.place,
            ),
            start_to_close_timeout=_COLLECT_TIMEOUT,
            retry_policy=_RETRY,
            result_type=Agenda,
            summary=f"collect the agenda of {rule.community_id} for {talk_day.isoformat()}",
        )
        workflow.set_current_details(details(agenda, rule, request.timezone))
        if agenda.items:
            agenda = await workflow.execute_activity(
                SCHEDULE_CASE_DELIBERATION,
                ScheduleDeliberations(community_id=rule.community_id, talk_day=talk_day),
                start_to_close_timeout=_SCHEDULE_TIMEOUT,
                heartbeat_timeout=_SCHEDULE_HEARTBEAT,
                retry_policy=_RETRY,
                result_type=Agenda,
                summary=(f"tell {len(agenda.items)} case(s) their talk day {talk_day.isoformat()}"),
            )
            workflow.set_current_details(details(agenda, rule, request.timezone))
        return agenda


# Characters markdown gives a meaning to; a case title is shown as plain text.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~-])")


def _plain(text: str, limit: int = 200) -> str:
    one_line = " ".join(text.split())
    if len(one_line) > limit:
        one_line = one_line[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", one_line)


def details(agenda: Agenda, rule: TalkDayRule, timezone: str) -> str:
    """The agenda as the Temporal UI shows it (markdown): the talk day, time and place,
    then one line per case: id, category, title, step when added, what it answered."""
    weekday = Weekday.of(agenda.talk_day).value.capitalize()
    where = f", {_plain(agenda.place)}" if agenda.place else ""
    street = f" (street {rule.street_id})" if rule.street_id else ""
    lines = [
        f"**Talk day {agenda.talk_day.isoformat()} ({weekday}) {agenda.time}{where}**",
        "",
        f"- community {agenda.community_id}{street}, {_plain(rule.describe())} ({timezone})",
        f"- agenda {agenda.agenda_id}: {len(agenda.items)} case(s)",
        "",
    ]
    if not agenda.items:
        lines.append("No case waits for deliberation.")
    for item in agenda.items:
        result = item.result.value
        if item.result is ItemResult.SKIPPED and item.reason:
            result += f" ({_plain(item.reason, _REASON_SHOWN)})"
        lines.append(
            f"{item.position}. `{item.case_id}` · {_plain(item.category, 64)} · "
            f"{_plain(item.title)} · {item.step.value} · {result}"
        )
    return "\n".join(lines)
