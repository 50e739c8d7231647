"""What the Temporal UI shows of a case: its current details (markdown) and the summary of
the timer it waits on, in the office's local time."""

from __future__ import annotations

from datetime import datetime

from domain.model import Step
from domain.policy import Deadline, DeadlinePolicy, format_duration, format_local
from domain.state import CaseState


def timer_summary(at: datetime, deadline: Deadline, policy: DeadlinePolicy) -> str:
    """What a timer waits for, as the UI shows it on the timer (local office time)."""
    due = format_local(deadline.due_at, policy.timezone)
    if deadline.breached:
        return f"reminder: deadline {deadline.label}, overdue since {due}"
    if at < deadline.due_at:
        return f"warning before deadline {deadline.label}, due {due}"
    return f"deadline {deadline.label}, due {due}"


def details(state: CaseState, policy: DeadlinePolicy) -> str:
    """The markdown the Temporal UI shows as the case's current details, with times in
    the policy's timezone (the office's local time)."""

    def local(at: datetime) -> str:
        return format_local(at, policy.timezone)

    lines = [
        f"**{state.case.title}**",
        "",
        f"- step: **{state.step.value}**"
        + (f", level **{state.level.value}**" if state.level else "")
        + (f", loop **{state.loop.value}**" if state.loop else ""),
        f"- light: {state.light.value}" if policy.flag_is_light else f"- flag: {state.flag.value}",
        f"- handler: {state.assignee or '—'}",
    ]
    if state.pending_return is not None:
        lines.append(f"- return asked {local(state.pending_return.requested_at)}: under review")
    for deadline in state.deadlines.values():
        left = deadline.due_at - state.updated_at
        lines.append(
            f"- deadline {deadline.label}: due {local(deadline.due_at)}"
            + (
                f" ({format_duration(left)} left at the last event)"
                if left.total_seconds() > 0
                else " (overdue)"
            )
        )
    lines.append(
        f"- last event: {state.last_event} at {local(state.updated_at)} ({policy.timezone})"
    )
    for department, clock in state.department_deadlines.items():
        done = "reported" if department in state.reported else "open"
        late = ", late: escalated" if department in state.late_departments else ""
        lines.append(f"- department {department}: {done}, due {local(clock.due_at)}{late}")
    if state.talk_day is not None and state.step in (Step.COLLECT, Step.DELIBERATE):
        lines.append(f"- talk day: {state.talk_day.isoformat()}")
    if state.reopen_count or state.escalation_count:
        lines.append(f"- reopened {state.reopen_count}×, escalated {state.escalation_count}×")
    if state.feedback_unanswered:
        lines.append("- feedback: no answer from the resident (not rated)")
    if state.evidence:
        lines.append(f"- evidence: {len(state.evidence)} reference(s)")
    if state.merged_reports:
        lines.append(f"- merged reports: {', '.join(state.merged_reports)}")
    if state.urge_count and state.last_urged_at is not None:
        lines.append(f"- urged {state.urge_count}×, last {local(state.last_urged_at)}")
    for breach in state.breaches:
        where = breach.loop.value + " loop" if breach.loop else breach.level.value + " level"
        lines.append(
            f"- record: {breach.clock.value} clock ran out {local(breach.due_at)} ({where})"
        )
    return "\n".join(lines)
