"""What operators see of the social side of a case: the Temporal UI's details and
`casectl show` (its text, rendered in this process from a state the domain derived)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from casectl.cases import _print_case
from domain.commands import MergedReport, parse_command, parse_open_case
from domain.decider import apply_batch, decide, open_case
from domain.events import Event
from domain.model import Reporter, Source
from domain.policy import DEFAULT_POLICY
from domain.state import CaseState
from support import COMMUNITY_ADMIN, GRID_WORKER, LIFECYCLE, STREET_OFFICER, report
from workflows.details import details

OPENED_AT = datetime.fromisoformat("2026-11-23T09:30:00+08:00")
CASE_ID = "case-hotline_12345-V-1"
PHONE, NAME = "13800000000", "王阿姨"  # the reporter of support.report()


class Case:
    """A case moved on by commands, as the workflow would (without it)."""

    def __init__(self) -> None:
        opened = open_case(CASE_ID, parse_open_case(report("V-1")), OPENED_AT, DEFAULT_POLICY)
        self.state: CaseState
        self.state, self.events = apply_batch(None, opened)
        self.now = OPENED_AT

    def send(
        self, name: str, body: dict[str, Any], after: timedelta = timedelta(minutes=5)
    ) -> None:
        self.now += after
        decided = decide(self.state, parse_command(name, body), self.now, DEFAULT_POLICY)
        self.state, stamped = apply_batch(self.state, decided, f"cmd-{len(self.events)}")
        self.events.extend(stamped)


def shown(state: CaseState, events: list[Event], capsys: pytest.CaptureFixture[str]) -> str:
    _print_case(state, events, DEFAULT_POLICY, OPENED_AT + timedelta(days=1))
    return capsys.readouterr().out


def test_urging_is_shown_in_the_details_and_by_casectl_show(
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = Case()
    case.send(
        "dispatch", {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "immediate"}
    )
    assert "urged" not in details(case.state, DEFAULT_POLICY)
    case.send("urge_case", {"actor": STREET_OFFICER, "message": "居民多次来电，请尽快处理"})
    case.send("urge_case", {"actor": STREET_OFFICER, "message": "第二次督办"}, timedelta(hours=1))
    text = details(case.state, DEFAULT_POLICY)
    assert "- urged 2×, last 2026-11-23 10:40" in text
    out = shown(case.state, case.events, capsys)
    assert "urged" in out and "2×, last 2026-11-23 10:40 (督办)" in out
    assert "case_urged" in out and "so-1 (street_officer)" in out and "第二次督办" in out
    assert PHONE not in out and NAME not in out


def test_evidence_is_listed_by_casectl_show(capsys: pytest.CaptureFixture[str]) -> None:
    case = Case()
    case.send(
        "dispatch", {"actor": COMMUNITY_ADMIN, "severity": "minor", "handling_class": "immediate"}
    )
    case.send("claim", {"actor": GRID_WORKER})
    photo = {
        "uri": "https://files.example.gov.cn/cases/V-1/arrival.jpg",
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "media_type": "image/jpeg",
        "caption": "到场照片",
    }
    case.send("check_in", {"actor": GRID_WORKER, "evidence": [photo]})
    out = shown(case.state, case.events, capsys)
    assert "evidence (references; the files are kept elsewhere)" in out
    [row] = [line for line in out.splitlines() if "arrival.jpg" in line]
    assert "handler_checked_in" in row and "deliberate" in row and "gw-1" in row
    assert "image/jpeg" in row and "9f86d081884c…" in row and "到场照片" in row
    # the event's line names the media type, not the whole reference
    assert re.search(r"handler_checked_in .*evidence image/jpeg", out)
    assert "- evidence: 1 reference(s)" in details(case.state, DEFAULT_POLICY)


def test_the_revisit_checklist_is_summed_up_in_the_event_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = Case()
    for name, body in LIFECYCLE[:-1]:
        case.send(name, body)
    checklist = {"contradictions": None, "dissatisfaction": "嫌太慢", "concerns": "停车难"}
    revisit = {**LIFECYCLE[-1][1], "checklist": checklist}
    case.send("record_revisit", revisit, timedelta(days=2))
    out = shown(case.state, case.events, capsys)
    # (the line may wrap in the table's last column)
    assert re.search(r"revisit_recorded .*checklist asked, raised:", out)
    assert "dissatisfaction, concerns" in out and "嫌太慢" not in out


def test_merged_reports_are_listed_without_their_reporters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = Case()
    merged = MergedReport(
        merged_case_id="case-wechat_qr-Q-7",
        source=Source.WECHAT_QR,
        source_ref="Q-7",
        reporter=Reporter(name="欧阳建国", phone="13955554444"),
    )
    case.now += timedelta(minutes=5)
    case.state, stamped = apply_batch(
        case.state, decide(case.state, merged, case.now, DEFAULT_POLICY)
    )
    case.events.extend(stamped)
    out = shown(case.state, case.events, capsys)
    assert re.search(r"merged reports +case-wechat_qr-Q-7", out)
    [line] = [line for line in out.splitlines() if "report_merged " in line]
    assert "merged_case_id case-wechat_qr-Q-7" in line and "source wechat_qr" in line
    assert "timer" not in line
    assert "欧阳建国" not in out and "13955554444" not in out
    text = details(case.state, DEFAULT_POLICY)
    assert "- merged reports: case-wechat_qr-Q-7" in text and "欧阳建国" not in text
