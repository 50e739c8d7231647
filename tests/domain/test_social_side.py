"""The social side of a case: urging by the street and district (督办/催办), evidence by
reference, the three questions of every revisit (三必问), the residents' representative
among those always visited (四必访), and the reports merged into a case."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from domain.commands import (
    Claim,
    MergedReport,
    MergeInto,
    ReportResolution,
    UrgeCase,
    parse_command,
)
from domain.decider import merged_report
from domain.errors import DomainError
from domain.events import (
    PERSONAL_FIELDS,
    CaseUrged,
    HandlerCheckedIn,
    ReportMerged,
    ResolutionReported,
    RevisitRecorded,
    event_payload,
)
from domain.model import Actor, Evidence, Level, Reporter, ResidentCategory, Source, Step
from domain.policy import DEFAULT_POLICY, Clock, DeadlinePolicy, RevisitRule
from policies import POLICY_2026_2, POLICY_2026_3

if TYPE_CHECKING:
    from conftest import Actors, Story

NewStory = Callable[..., "Story"]
HOUR = timedelta(hours=1)


def refused(s: Story, command: object, at: object, pattern: str) -> str:
    with pytest.raises(DomainError, match=pattern) as refusal:
        s.decide(command, at)
    return str(refusal.value)


# ------------------------------------------------------------------ 督办/催办


def urge(actor: Actor, message: str = "请尽快处理 (please hurry)") -> UrgeCase:
    return UrgeCase(actor=actor, message=message)


@pytest.mark.parametrize("who", ["street_officer", "district_officer"])
def test_an_officer_of_the_street_or_district_urges_a_case_in_any_step(
    story: NewStory, actors: Actors, who: str
) -> None:
    officer = getattr(actors, who)
    s = story()
    # before the dispatch: recorded, with no level yet
    [before] = s.run(urge(officer), s.DISPATCH_AT - timedelta(seconds=30))
    assert isinstance(before, CaseUrged) and before.level is None
    assert before.actor == officer and before.message == "请尽快处理 (please hurry)"
    for step in (Step.COLLECT, Step.DELIBERATE, Step.RESOLVE, Step.FEEDBACK, Step.REVISIT):
        s.advance(step)
        at = s.state.updated_at + timedelta(minutes=1)
        [urged] = s.run(urge(officer), at)
        assert isinstance(urged, CaseUrged) and urged.level is Level.COMMUNITY
        assert s.state.last_urged_at == at
    assert s.state.urge_count == 6


def test_urging_moves_no_handler_level_or_clock(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.RESOLVE)
    before = s.state
    s.run(urge(actors.district_officer), s.RESOLVE_AT - HOUR)
    after = s.state
    assert (after.assignee, after.level, after.loop, after.step, after.deadlines) == (
        before.assignee,
        before.level,
        before.loop,
        before.step,
        before.deadlines,
    )
    assert (after.flag, after.on_time, after.escalation_count) == (
        before.flag,
        before.on_time,
        before.escalation_count,
    )
    assert after.urge_count == 1 and after.last_urged_at == s.RESOLVE_AT - HOUR
    assert after.version == before.version + 1 and after.last_event == "case_urged"
    # a timer after it sees the same clocks it would have seen without it
    assert Clock.RESOLVE in after.deadlines


def test_the_event_records_the_level_at_the_time(story: NewStory, actors: Actors) -> None:
    s = story()
    s.dispatch()
    [urged] = s.run(urge(actors.street_officer), s.DISPATCH_AT + HOUR)
    payload = event_payload(urged)
    assert payload["type"] == "case_urged" and payload["level"] == "community"
    assert payload["actor"] == {"id": "so-1", "role": "street_officer", "org": "S-01"}


@pytest.mark.parametrize(
    "who",
    [
        "grid_worker",
        "community_admin",
        "resident",
        "other_resident",
        "water",
        "system",
        "other_street_officer",
        "other_district_officer",
    ],
)
def test_urging_is_refused_to_anyone_but_the_cases_street_and_district(
    story: NewStory, actors: Actors, who: str
) -> None:
    s = story()
    s.dispatch()
    message = refused(
        s, urge(getattr(actors, who)), s.DISPATCH_AT + HOUR, r"^urge_case: actor .* may not urge"
    )
    assert "only a street officer of the case's street or a district officer of its district" in (
        message
    )
    assert s.state.urge_count == 0


def test_an_archived_case_is_not_urged(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.REVISIT)
    s.advance(Step.ARCHIVE)
    refused(s, urge(actors.street_officer), s.REVISIT_AT + HOUR, "^urge_case: the case is archived")


def test_an_empty_message_is_refused_naming_the_field(actors: Actors) -> None:
    with pytest.raises(DomainError, match=r"^urge_case refused: message: "):
        parse_command(
            "urge_case", {"actor": actors.street_officer.model_dump(mode="json"), "message": " "}
        )


# ------------------------------------------------------------------ evidence by reference

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PHOTO = {"uri": "https://files.example.gov.cn/cases/T-0001/lamp.jpg", "sha256": SHA}


def evidence(n: int = 1, **changes: object) -> list[dict[str, object]]:
    return [
        {
            "uri": f"s3://case-evidence/T-0001/{i}.jpg",
            "sha256": f"{i:064x}",
            "media_type": "image/jpeg",
            **changes,
        }
        for i in range(n)
    ]


def with_evidence(name: str, actor: Actor, items: object, **body: object) -> Any:
    return parse_command(name, {"actor": actor.model_dump(mode="json"), "evidence": items, **body})


def test_check_in_resolution_and_revisit_carry_evidence_into_events_and_state(
    story: NewStory, actors: Actors
) -> None:
    s = story()
    s.dispatch()
    s.run(Claim(actor=actors.grid_worker), s.CLAIM_AT)
    photo = [{**PHOTO, "media_type": "image/jpeg", "caption": "到场 (on site)"}]
    [checked_in] = s.run(
        with_evidence("check_in", actors.grid_worker, photo),
        s.CHECK_IN_AT,
    )
    assert isinstance(checked_in, HandlerCheckedIn)
    assert checked_in.evidence == [Evidence.model_validate(photo[0])]
    s.advance(Step.RESOLVE)
    signed = evidence(2, media_type="application/pdf")
    [resolved] = s.run(
        with_evidence("report_resolution", actors.grid_worker, signed, summary="lamp replaced"),
        s.RESOLVE_AT,
    )
    assert isinstance(resolved, ResolutionReported) and len(resolved.evidence) == 2
    s.advance(Step.REVISIT)
    revisit = with_evidence(
        "record_revisit",
        actors.grid_worker,
        evidence(1, uri="urn:uuid:0f1e2d3c-visit"),
        satisfaction="satisfied",
    )
    revisited, _archived = s.run(revisit, s.REVISIT_AT)
    assert isinstance(revisited, RevisitRecorded) and revisited.evidence[0].uri.startswith("urn:")
    kept = s.state.evidence
    assert [(r.step, r.event, r.seq, r.by) for r in kept] == [
        (Step.DELIBERATE, "handler_checked_in", checked_in.seq, "gw-1"),
        (Step.RESOLVE, "resolution_reported", resolved.seq, "gw-1"),
        (Step.RESOLVE, "resolution_reported", resolved.seq, "gw-1"),
        (Step.REVISIT, "revisit_recorded", revisited.seq, "gw-1"),
    ]
    assert kept[0].evidence.caption == "到场 (on site)"
    assert kept[0].recorded_at == s.CHECK_IN_AT
    assert [r.evidence.media_type for r in kept[1:3]] == ["application/pdf"] * 2


def test_events_without_evidence_keep_their_recorded_content(story: NewStory) -> None:
    s = story().advance(Step.ARCHIVE)
    for event in s.events:
        if isinstance(event, HandlerCheckedIn | ResolutionReported | RevisitRecorded):
            assert "evidence" not in event_payload(event), event.type
    assert s.state.evidence == []
    body = ReportResolution(actor=Actor(id="gw-1", role="grid_worker", org="G-01"), summary="x")
    assert "evidence" not in body.model_dump(mode="json")


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        (evidence(21), r"evidence: List should have at most 20 items"),
        (evidence(1, sha256="ABC"), r"evidence\.0\.sha256: String should match pattern"),
        (evidence(1, sha256=SHA.upper()), r"evidence\.0\.sha256: String should match pattern"),
        (evidence(1, media_type="JPEG"), r"evidence\.0\.media_type: String should match"),
        (evidence(1, media_type="image/jpeg; q=1"), r"evidence\.0\.media_type: String should"),
        (evidence(1, uri="ftp://files/x.jpg"), r"evidence\.0\.uri: String should match pattern"),
        (evidence(1, uri="file:///etc/passwd"), r"evidence\.0\.uri: String should match"),
        (evidence(1, uri="javascript:alert(1)"), r"evidence\.0\.uri: String should match"),
        (evidence(1, uri="https://user:pw@host/x"), r"evidence\.0\.uri: String should match"),
        (evidence(1, uri="https://host/a b.jpg"), r"evidence\.0\.uri: String should match"),
        (
            evidence(1, uri="https://host/" + "x" * 490),
            r"evidence\.0\.uri: String should have at most 500",
        ),
        (evidence(1, caption=""), r"evidence\.0\.caption: String should have at least 1"),
        (evidence(1, caption="x" * 101), r"evidence\.0\.caption: String should have at most 100"),
        (
            evidence(1, content="aGVsbG8="),
            r"evidence\.0\.content: Extra inputs are not permitted",
        ),
        (
            evidence(1)[:1] * 2,
            r"evidence: Value error, must not list the same file \(sha256\) twice",
        ),
        ([{"uri": PHOTO["uri"], "sha256": SHA}], r"evidence\.0\.media_type: Field required"),
    ],
)
def test_bad_evidence_is_refused_naming_the_field(
    actors: Actors, items: list[dict[str, object]], problem: str
) -> None:
    for name, body in (
        ("check_in", {}),
        ("report_resolution", {"summary": "done"}),
        ("record_revisit", {"satisfaction": "satisfied"}),
    ):
        with pytest.raises(DomainError, match=rf"^{name} refused: {problem}"):
            with_evidence(name, actors.grid_worker, items, **body)


def test_the_schemes_and_media_types_accepted(actors: Actors) -> None:
    for uri in (
        "https://files.example.gov.cn/a/b.jpg?v=1#p",
        "http://10.0.0.5:8080/evidence/1.png",
        "s3://case-evidence/2026/11/T-0001.mp4",
        "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
        "https://host",
    ):
        for media_type in ("image/jpeg", "application/pdf", "video/mp4", "image/svg+xml"):
            command = with_evidence(
                "check_in", actors.grid_worker, evidence(1, uri=uri, media_type=media_type)
            )
            assert command.evidence[0].uri == uri


# ------------------------------------------------------------------ 三必问 at the revisit

ANSWERS = {
    "contradictions": None,
    "dissatisfaction": "嫌维修太慢 (the repair took too long)",
    "concerns": "楼道堆物 (things stacked in the stairwell)",
}
CHECKLIST_POLICY = POLICY_2026_2.model_copy(update={"revisit_checklist": True})


def revisit(actor: Actor, **body: object) -> Any:
    return parse_command(
        "record_revisit",
        {"actor": actor.model_dump(mode="json"), "satisfaction": "satisfied", **body},
    )


def test_the_three_answers_are_recorded_on_the_revisit(story: NewStory, actors: Actors) -> None:
    s = story().advance(Step.REVISIT)
    recorded, _archived = s.run(revisit(actors.grid_worker, checklist=ANSWERS), s.REVISIT_AT)
    assert isinstance(recorded, RevisitRecorded) and recorded.checklist is not None
    assert recorded.checklist.contradictions is None
    assert recorded.checklist.concerns == ANSWERS["concerns"]
    # every answer stays in the JSON, null ones too: all three were asked
    assert event_payload(recorded)["checklist"] == ANSWERS


def test_without_the_policy_flag_the_checklist_is_optional(story: NewStory, actors: Actors) -> None:
    assert POLICY_2026_2.revisit_checklist is False and POLICY_2026_3.revisit_checklist is False
    # left out of the policy's JSON while off: recorded policies read as they did before
    assert "revisit_checklist" not in POLICY_2026_3.model_dump(mode="json")
    assert CHECKLIST_POLICY.model_dump(mode="json")["revisit_checklist"] is True
    # the built-in policy asks the three questions at every revisit since 7135-2026.4
    assert DEFAULT_POLICY.model_dump(mode="json")["revisit_checklist"] is True
    s = story().advance(Step.REVISIT)
    recorded, archived = s.run(revisit(actors.grid_worker), s.REVISIT_AT)
    assert archived.type == "case_archived"
    assert "checklist" not in event_payload(recorded)  # as recorded before the checklist


def test_a_policy_that_requires_the_checklist_refuses_a_revisit_without_it(
    story: NewStory, actors: Actors
) -> None:
    s = story(policy=CHECKLIST_POLICY).advance(Step.REVISIT)
    message = refused(
        s, revisit(actors.grid_worker), s.REVISIT_AT, r"^record_revisit: checklist: required"
    )
    assert "三必问" in message
    assert s.run(revisit(actors.grid_worker, checklist=ANSWERS), s.REVISIT_AT)[-1].type == (
        "case_archived"
    )


def test_nothing_raised_is_an_answer_too(story: NewStory, actors: Actors) -> None:
    s = story(policy=CHECKLIST_POLICY).advance(Step.REVISIT)
    nothing = {"contradictions": None, "dissatisfaction": None, "concerns": None}
    recorded, _ = s.run(revisit(actors.grid_worker, checklist=nothing), s.REVISIT_AT)
    assert event_payload(recorded)["checklist"] == nothing


def test_a_policy_file_without_the_flag_loads_with_it_off() -> None:
    loaded = DeadlinePolicy.model_validate_json('{"version": "older"}')
    assert loaded.revisit_checklist is False
    assert DeadlinePolicy.model_validate(
        {"version": "v", "revisit_checklist": True}
    ).revisit_checklist


@pytest.mark.parametrize(
    ("checklist", "problem"),
    [
        ({"contradictions": None, "dissatisfaction": None}, r"checklist\.concerns: Field required"),
        ({}, r"checklist\.contradictions: Field required"),
        ({**ANSWERS, "concerns": "  "}, r"checklist\.concerns: String should have at least 1"),
        ({**ANSWERS, "others": "x"}, r"checklist\.others: Extra inputs are not permitted"),
        ({**ANSWERS, "concerns": "x" * 4001}, r"checklist\.concerns: String should have at most"),
        ("all fine", r"checklist: Input should be a valid dictionary"),
    ],
)
def test_a_checklist_must_answer_all_three_keys(
    actors: Actors, checklist: object, problem: str
) -> None:
    with pytest.raises(DomainError, match=rf"^record_revisit refused: {problem}"):
        revisit(actors.grid_worker, checklist=checklist)


# ------------------------------------------------------------------ 四必访: 居民代表

REPRESENTATIVE = {
    "name": "李师傅",
    "resident_id": "res-1",
    "categories": ["residents_representative"],
}


def test_a_residents_representative_is_a_category_of_the_report(story: NewStory) -> None:
    s = story(reporter=REPRESENTATIVE)
    assert s.state.case.reporter.categories == [ResidentCategory.RESIDENTS_REPRESENTATIVE]
    both = {**REPRESENTATIVE, "categories": ["residents_representative", "old_party_member"]}
    assert len(story(reporter=both).state.case.reporter.categories) == 2


def test_a_policy_rule_for_representatives_requires_the_visit_in_person(
    story: NewStory, actors: Actors
) -> None:
    rules = {ResidentCategory.RESIDENTS_REPRESENTATIVE: RevisitRule()}
    policy = POLICY_2026_2.model_copy(update={"revisit_rules": rules})
    s = story(policy=policy, reporter=REPRESENTATIVE).advance(Step.REVISIT)
    assert "in person" in s.state.deadlines[Clock.REVISIT].label
    message = refused(
        s,
        revisit(actors.grid_worker, in_person=False),
        s.REVISIT_AT,
        r"^record_revisit: in_person: this resident must be visited in person",
    )
    assert "representative" not in message  # the category is personal data
    assert s.run(revisit(actors.grid_worker), s.REVISIT_AT)[-1].type == "case_archived"


def test_without_a_rule_for_representatives_the_revisit_may_be_by_phone(
    story: NewStory, actors: Actors
) -> None:
    """Policy 7135-2026.3 has no rule for the category: the category alone changes nothing
    (the built-in policy has one since 2026.4)."""
    assert ResidentCategory.RESIDENTS_REPRESENTATIVE not in POLICY_2026_3.revisit_rules
    assert DEFAULT_POLICY.revisit_rule([ResidentCategory.RESIDENTS_REPRESENTATIVE]).in_person
    s = story(policy=POLICY_2026_3, reporter=REPRESENTATIVE).advance(Step.REVISIT)
    assert "in person" not in s.state.deadlines[Clock.REVISIT].label
    by_phone = revisit(actors.grid_worker, in_person=False)
    assert s.run(by_phone, s.REVISIT_AT)[-1].type == "case_archived"


# ------------------------------------------------------------------ merged reports

OTHER = {"name": "欧阳建国", "phone": "13955554444", "resident_id": "res-2"}


def merged_into(story: NewStory, actors: Actors, target: str) -> Story:
    """A second report of the matter (another ticket, another resident), merged."""
    s = story(source="wechat_qr", source_ref="Q-7", reporter=OTHER)
    s.run(MergeInto(actor=actors.community_admin, target_case_id=target), s.DISPATCH_AT)
    return s


def test_a_merged_case_tells_its_report_and_reporter(story: NewStory, actors: Actors) -> None:
    target = story()
    s = merged_into(story, actors, target.state.case_id)
    told = merged_report(s.state)
    assert told == MergedReport(
        merged_case_id="case-wechat_qr-Q-7",
        source=Source.WECHAT_QR,
        source_ref="Q-7",
        reporter=Reporter.model_validate(OTHER),
    )
    # the signal's JSON reads back as the same report
    assert MergedReport.model_validate(told.model_dump(mode="json")) == told
    with pytest.raises(ValueError, match="not merged into another case"):
        merged_report(target.state)


def test_the_target_records_the_merged_report_once(story: NewStory, actors: Actors) -> None:
    target = story()
    told = merged_report(merged_into(story, actors, target.state.case_id).state)
    [event] = target.run(told, target.DISPATCH_AT + HOUR)
    assert isinstance(event, ReportMerged) and event.actor is None
    assert (event.merged_case_id, event.source, event.source_ref) == (
        "case-wechat_qr-Q-7",
        Source.WECHAT_QR,
        "Q-7",
    )
    assert event.reporter.name == "欧阳建国"
    assert target.state.merged_reports == ["case-wechat_qr-Q-7"]
    assert target.state.step is Step.COLLECT and target.state.last_event == "report_merged"
    # told again (a retried or forged signal): nothing
    assert target.decide(told, target.DISPATCH_AT + 2 * HOUR) == []
    # another report merged too
    second = told.model_copy(update={"merged_case_id": "case-visit-V-9", "source": Source.VISIT})
    target.run(second, target.DISPATCH_AT + 2 * HOUR)
    assert target.state.merged_reports == ["case-wechat_qr-Q-7", "case-visit-V-9"]


def test_the_merged_reporter_is_personal_data(story: NewStory, actors: Actors) -> None:
    target = story()
    told = merged_report(merged_into(story, actors, target.state.case_id).state)
    [event] = target.run(told, target.DISPATCH_AT)
    assert PERSONAL_FIELDS["report_merged"] == (("reporter",),)
    payload = event_payload(event)
    assert payload["reporter"] == OTHER  # the store seals this path (test_workflow_merge)
    # the state keeps the case ids only: nothing personal beyond the case's own report
    assert "欧阳建国" not in target.state.model_dump_json(exclude={"case"})


def test_an_archived_target_or_the_case_itself_records_nothing(
    story: NewStory, actors: Actors
) -> None:
    target = story().advance(Step.ARCHIVE)
    told = merged_report(merged_into(story, actors, target.state.case_id).state)
    assert target.decide(told, target.REVISIT_AT + HOUR) == []
    itself = story()
    own = told.model_copy(update={"merged_case_id": itself.state.case_id})
    assert itself.decide(own, itself.DISPATCH_AT) == []


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"merged_case_id": "../case-visit-1", "source": "visit", "reporter": {"name": "x"}},
        {"merged_case_id": "case-visit-1", "source": "fax", "reporter": {"name": "x"}},
        {"merged_case_id": "case-visit-1", "source": "visit"},
        {"merged_case_id": "case-visit-1", "source": "visit", "reporter": {"name": "x"}, "x": 1},
    ],
)
def test_a_bad_merged_report_is_not_a_report(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        MergedReport.model_validate(payload)


# ------------------------------------------------------------------ older readers


def test_a_state_without_the_social_side_dumps_as_before(story: NewStory, actors: Actors) -> None:
    """The state a run carries into the next (and the read model's copy) leaves the new
    fields out while empty: a worker of the code before them still reads it."""
    new = {"urge_count", "last_urged_at", "evidence", "merged_reports"}
    s = story().advance(Step.ARCHIVE)
    assert not new & set(s.state.model_dump(mode="json"))
    t = story()
    t.run(urge(actors.street_officer), t.DISPATCH_AT)
    t.run(merged_report(merged_into(story, actors, t.state.case_id).state), t.DISPATCH_AT)
    dumped = t.state.model_dump(mode="json")
    assert {"urge_count", "last_urged_at", "merged_reports"} <= set(dumped)
    assert type(t.state).model_validate(dumped) == t.state
