"""Which events notify the source system, what the notification says (and does not),
the signature, the retry delays and the webhooks' configuration: pure functions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import rfc8785
from pydantic import ValidationError

from conftest import ACTORS, PHONE, Story
from domain.commands import MergeInto, RecordFeedback, Withdraw
from domain.events import Event
from domain.model import Satisfaction, Step
from domain.notifications import (
    NOTIFYING,
    Kind,
    Notification,
    Webhooks,
    notification_id,
    notifications,
    retry_delay,
    sign,
    signature_ok,
)

SECRET = "s3cret-of-the-hotline-0001"


def fake_hash(event: Event) -> str:
    return hashlib.sha256(f"{event.seq}{event.type}".encode()).hexdigest()


def notified(story: Story, events: list[Event]) -> list[Notification]:
    return notifications(story.state, [(e, fake_hash(e)) for e in events])


def test_a_straight_lifecycle_notifies_accepted_dispatched_resolved_archived(
    story: Callable[..., Story],
) -> None:
    s = story()
    seen = notified(s, s.events)
    seen += notified(s, s.dispatch())
    for step in (Step.DELIBERATE, Step.RESOLVE, Step.FEEDBACK, Step.REVISIT, Step.ARCHIVE):
        before = len(s.events)
        s.advance(step)
        seen += notified(s, s.events[before:])
    assert [n.kind for n in seen] == [
        Kind.ACCEPTED,
        Kind.DISPATCHED,
        Kind.RESOLVED,
        Kind.ARCHIVED,
    ]
    assert [n.step for n in seen] == [Step.COLLECT, Step.COLLECT, Step.FEEDBACK, Step.ARCHIVE]
    assert [n.status for n in seen] == ["open", "open", "open", "closed"]
    seqs = [n.seq for n in seen]
    assert seqs == sorted(seqs) and seqs[0] == 1
    dispatched, resolved, archived = seen[1], seen[2], seen[3]
    assert dispatched.level is not None and dispatched.due_at is not None
    assert resolved.due_at is None or resolved.due_at > resolved.occurred_at
    assert archived.outcome == "completed"
    assert all(n.source_ref == "T-0001" and n.source == "hotline_12345" for n in seen)


def test_the_id_is_stable_and_derived_from_case_seq_and_hash(story: Callable[..., Story]) -> None:
    s = story()
    first = notified(s, s.events)[0]
    again = notified(s, s.events)[0]
    assert first.id == again.id == notification_id(s.state.case_id, 1, fake_hash(s.events[0]))
    assert first.id.startswith(f"{s.state.case_id}:1:")
    assert notification_id("case-x-1", 1, "a" * 64) != notification_id("case-x-1", 1, "b" * 64)


def test_no_personal_data_nor_typed_text_in_the_payload(story: Callable[..., Story]) -> None:
    s = story()
    body = json.dumps(
        [n.model_dump(mode="json") for n in notified(s, s.events)], ensure_ascii=False
    )
    for secret in (PHONE, "王阿姨", "res-1", "Building 3", "stairwell", "楼道灯"):
        assert secret not in body, secret


def test_a_rejected_feedback_reopens_and_notifies(story: Callable[..., Story]) -> None:
    s = story().advance(Step.FEEDBACK)
    events = s.run(
        RecordFeedback(
            actor=ACTORS.resident, accepted=False, satisfaction=Satisfaction.UNSATISFIED
        ),
        Story.FEEDBACK_AT,
    )
    seen = notified(s, events)
    assert [n.kind for n in seen] == [Kind.REOPENED]
    assert seen[0].step is Step.RESOLVE and seen[0].due_at is not None


def test_a_merge_notifies_merged_then_archived(story: Callable[..., Story]) -> None:
    s = story()
    events = s.run(
        MergeInto(actor=ACTORS.community_admin, target_case_id="case-hotline_12345-T-0002"),
        Story.DISPATCH_AT,
    )
    seen = notified(s, events)
    assert [(n.kind, n.seq) for n in seen] == [(Kind.MERGED, 2), (Kind.ARCHIVED, 3)]
    assert seen[0].merged_into == "case-hotline_12345-T-0002"
    assert seen[1].outcome == "merged" and seen[1].status == "closed"


def test_a_withdrawal_notifies_archived_withdrawn(story: Callable[..., Story]) -> None:
    s = story()
    events = s.run(Withdraw(actor=ACTORS.resident, reason="已自行解决"), Story.DISPATCH_AT)
    seen = notified(s, events)
    assert [(n.kind, n.outcome) for n in seen] == [(Kind.ARCHIVED, "withdrawn")]


def test_events_of_other_types_do_not_notify(story: Callable[..., Story]) -> None:
    s = story()
    s.dispatch()
    before = len(s.events)
    s.advance(Step.DELIBERATE)  # claim, check-in
    assert [e.type for e in s.events[before:]] == ["case_claimed", "handler_checked_in"]
    assert notified(s, s.events[before:]) == []
    assert "case_claimed" not in NOTIFYING


def test_the_signature_checks_out_and_a_changed_body_does_not() -> None:
    body = b'{"id":"case-x:1:abc","kind":"accepted"}'
    header = sign(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert signature_ok(SECRET, body, header)
    assert not signature_ok(SECRET, body.replace(b"accepted", b"archived"), header)
    assert not signature_ok("another-secret-0000000", body, header)
    assert not signature_ok(SECRET, body, None)


def test_retry_delays_double_up_to_the_cap() -> None:
    base, cap = timedelta(seconds=2), timedelta(minutes=1)
    assert [retry_delay(n, base, cap).total_seconds() for n in range(1, 8)] == [
        2,
        4,
        8,
        16,
        32,
        60,
        60,
    ]
    assert retry_delay(10_000, base, cap) == cap
    with pytest.raises(ValueError, match="attempts"):
        retry_delay(0, base, cap)


def test_webhooks_are_validated_naming_the_field() -> None:
    hooks = Webhooks.model_validate(
        {"hotline_12345": {"url": "https://hotline.example/hook", "secret": SECRET}}
    )
    assert hooks.sources == ["hotline_12345"]
    assert hooks.get("hotline_12345") is not None and hooks.get("patrol") is None
    assert hooks.get("no-such-source") is None
    with pytest.raises(ValidationError, match="secret"):
        Webhooks.model_validate({"hotline_12345": {"url": "https://h.example/", "secret": "x"}})
    with pytest.raises(ValidationError, match="url"):
        Webhooks.model_validate({"hotline_12345": {"url": "ftp://h.example/", "secret": SECRET}})
    with pytest.raises(ValidationError, match="fax"):
        Webhooks.model_validate({"fax": {"url": "https://h.example/", "secret": SECRET}})


def test_the_readme_shows_a_body_as_sent() -> None:
    """The README's example body is a Notification with every field, in canonical order."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Notifications\n", 1)[1]
    shown = section.split("```json\n", 1)[1].split("\n```", 1)[0]
    body = Notification.model_validate_json(shown)
    assert json.loads(shown) == body.model_dump(mode="json")
    assert rfc8785.dumps(json.loads(shown)).decode() == shown.replace("\n ", "")
    assert body.id.startswith(f"{body.case_id}:{body.seq}:")
