"""Notifications: what a case's source system hears of its case, decided from the events.

A notification is due for each event that changes what the reporter was told (accepted,
dispatched, resolved and asking for feedback, reopened, merged into another case,
archived). Its payload carries no personal data and no free text a resident or a handler
typed: the case, the source's own ticket, what happened, the step and the times. The
outbox (activities/store.py) writes one row per notification in the transaction that
appends the events; the notifier (notifier/) delivers them, signed, in order per case.

Pure: the retry delays and the webhooks' configuration are decided here too, without a
clock or a network."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, RootModel, StringConstraints

from domain.events import (
    CaseArchived,
    CaseDispatched,
    CaseMerged,
    CaseOpened,
    CaseReopened,
    Event,
    ResolutionReported,
)
from domain.model import Frozen, Level, Outcome, Source, Step
from domain.policy import Clock, Deadline
from domain.state import CaseState

# The header of the signature (HMAC-SHA256 over the body's bytes, hex, `sha256=` before
# it), and those naming the notification and the attempt.
SIGNATURE_HEADER = "X-Caseloop-Signature"
ID_HEADER = "X-Caseloop-Notification-Id"
ATTEMPT_HEADER = "X-Caseloop-Attempt"


class Kind(StrEnum):
    """What the source system is told."""

    ACCEPTED = "accepted"  # case_opened: the report is on record (受理)
    DISPATCHED = "dispatched"  # case_dispatched: sent to the level that handles it
    RESOLVED = "resolved"  # resolution_reported: done, the resident is asked for feedback
    REOPENED = "reopened"  # case_reopened: feedback or revisit found it not done
    MERGED = "merged"  # case_merged: the report goes on in another case (merged_into)
    ARCHIVED = "archived"  # case_archived: closed, with its outcome


# The event types that notify, with what each says and the step the case stands in after
# it (a dispatched case stays in collect until its handler claims it).
NOTIFYING: dict[str, tuple[Kind, Step]] = {
    "case_opened": (Kind.ACCEPTED, Step.COLLECT),
    "case_dispatched": (Kind.DISPATCHED, Step.COLLECT),
    "resolution_reported": (Kind.RESOLVED, Step.FEEDBACK),
    "case_reopened": (Kind.REOPENED, Step.RESOLVE),
    "case_merged": (Kind.MERGED, Step.ARCHIVE),
    "case_archived": (Kind.ARCHIVED, Step.ARCHIVE),
}


class Notification(Frozen):
    """The body a source system's webhook receives (JSON). `id` is the same for every
    delivery of the same event: a receiver drops a repeat by it. `seq` orders a case's
    notifications."""

    id: str
    case_id: str
    seq: int
    source: Source
    source_ref: str | None  # the source system's own ticket, as it opened the case
    kind: Kind
    event: str  # the event type in the case's history
    step: Step
    status: Literal["open", "closed"]
    occurred_at: datetime
    level: Level | None = None  # dispatched, reopened: the level holding the case
    due_at: datetime | None = None  # dispatched, reopened: resolve by; resolved: feedback by
    outcome: Outcome | None = None  # archived: completed, withdrawn or merged
    merged_into: str | None = None  # merged: the case it goes on in


def notification_id(case_id: str, seq: int, event_hash: str) -> str:
    """Stable: derived from the case, the seq and the event's hash in the chain (a retry
    of the append writes the same; an event that replaced a lost one gets a new id)."""
    return f"{case_id}:{seq}:{event_hash[:12]}"


def _resolve_due(deadlines: Iterable[Deadline]) -> datetime | None:
    return next((d.due_at for d in deadlines if d.clock is Clock.RESOLVE), None)


def notification(state: CaseState, event: Event, event_hash: str) -> Notification | None:
    """The notification `event` of the case (whose state after its batch is `state`) is
    due, or None when it does not notify."""
    due = NOTIFYING.get(event.type)
    if due is None:
        return None
    kind, step = due
    fields: dict[str, object] = {}
    match event:
        case CaseDispatched():
            fields = {"level": event.level, "due_at": _resolve_due(event.deadlines)}
        case ResolutionReported():
            fields = {"due_at": event.feedback.due_at if event.feedback else None}
        case CaseReopened():
            fields = {"level": event.deadline.level, "due_at": event.deadline.due_at}
        case CaseMerged():
            fields = {"merged_into": event.target_case_id}
        case CaseArchived():
            fields = {"outcome": event.outcome}
        case CaseOpened():
            pass
    return Notification.model_validate(
        {
            "id": notification_id(state.case_id, event.seq, event_hash),
            "case_id": state.case_id,
            "seq": event.seq,
            "source": state.case.source,
            "source_ref": state.case.source_ref,
            "kind": kind,
            "event": event.type,
            "step": step,
            "status": "closed" if step is Step.ARCHIVE else "open",
            "occurred_at": event.occurred_at,
            **fields,
        }
    )


def notifications(state: CaseState, events: Iterable[tuple[Event, str]]) -> list[Notification]:
    """The notifications due for a batch's events (each with its hash), in seq order."""
    due = (notification(state, event, digest) for event, digest in events)
    return [n for n in due if n is not None]


# ---------------------------------------------------------------------------- delivery


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether a received signature header matches the body (compared in constant time)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def retry_delay(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    """The wait after the `attempts`-th failed delivery: base, 2·base, 4·base, … up to cap."""
    if attempts < 1:
        raise ValueError("attempts: must be at least 1")
    return min(cap, base * (1 << min(attempts - 1, 40)))


WebhookUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/?#]+(?:[/?#]\S*)?$")]


class Webhook(Frozen):
    """Where one source system receives its notifications, and the secret they are signed
    with (shared with that system only)."""

    url: Annotated[WebhookUrl, Field(max_length=2000)]
    secret: Annotated[str, Field(min_length=16, max_length=512)]


class Webhooks(RootModel[dict[Source, Webhook]]):
    """The webhooks by source (CASE_WEBHOOKS, JSON): a source without one is not delivered
    to; its notifications wait in the outbox until one is configured."""

    model_config = ConfigDict(frozen=True)

    def get(self, source: str) -> Webhook | None:
        try:
            return self.root.get(Source(source))
        except ValueError:
            return None

    @property
    def sources(self) -> list[str]:
        return sorted(s.value for s in self.root)
