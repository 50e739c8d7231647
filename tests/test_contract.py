"""The public contract stays what other systems rely on: update names, schemas, settings,
search attributes."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from devstack.schemas import drift
from domain.commands import parse_open_case
from domain.decider import apply_batch, open_case
from domain.model import Flag, Level, Severity
from domain.policy import DEFAULT_POLICY, Clock
from infra.settings import Settings, SettingsError
from policies import POLICY_2026_2
from support import report
from workflows.details import details
from workflows.search import ALL_KEYS, search_updates


def test_schemas_match_the_models() -> None:
    assert drift() == [], "run `make schemas` and commit schemas/"


def test_settings_defaults_and_overrides() -> None:
    default = Settings.from_env({})
    assert (default.temporal_address, default.temporal_namespace, default.task_queue) == (
        "localhost:7233",
        "default",
        "grievance-cases",
    )
    assert default.database_url is None
    assert default.policy().version == DEFAULT_POLICY.version
    assert default.policy().calendar is not None
    assert default.worker_cache == 1000
    assert default.workflow_sandbox is False
    assert Settings.from_env({"CASE_WORKFLOW_SANDBOX": "true"}).workflow_sandbox is True
    custom = Settings.from_env(
        {
            "CASE_TASK_QUEUE": "q2",
            "DATABASE_URL": "postgresql://u@db/cases",
            "LOG_FORMAT": "json",
            "CASE_WORKER_CACHE": "20000",
        }
    )
    assert (custom.task_queue, custom.database_url, custom.log_format) == (
        "q2",
        "postgresql://u@db/cases",
        "json",
    )
    assert custom.worker_cache == 20000


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"CASE_WORKER_CACHE": "9"}, "CASE_WORKER_CACHE"),
        ({"CASE_WORKER_CACHE": "lots"}, "CASE_WORKER_CACHE"),
        ({"CASE_POLICY": "/nonexistent/policy.json"}, "CASE_POLICY"),
        ({"TEMPORAL_TLS_CERT": __file__}, "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY"),
        ({"TEMPORAL_TLS_KEY": "/nonexistent/key.pem"}, "TEMPORAL_TLS_KEY: no such file"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"CASE_CODEC_TOKEN": "short"}, "CASE_CODEC_TOKEN"),
        ({"CASE_WORKFLOW_SANDBOX": "sometimes"}, "CASE_WORKFLOW_SANDBOX"),
        ({"LOG_LEVEL": "loud", "CASE_WORKER_CACHE": "9"}, r"LOG_LEVEL: .*; CASE_WORKER_CACHE: "),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_settings_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASE_TASK_QUEUE", "q3")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("DATABASE_URL", "")  # empty: unset
    assert (Settings.from_env().task_queue, Settings.from_env().log_level) == ("q3", "warning")
    assert Settings.from_env().database_url is None
    monkeypatch.setenv("CASE_WORKER_CACHE", "lots")
    with pytest.raises(SettingsError, match=r"^CASE_WORKER_CACHE: "):
        Settings.from_env()


def test_policy_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "fast.json"
    good.write_text('{"version": "demo-fast", "on_site": "PT1M", "resolve_street": "PT3M"}')
    policy = Settings.from_env({"CASE_POLICY": str(good)}).policy()
    assert policy.version == "demo-fast" and policy.on_site.total_seconds() == 60
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "x", "on_site": "-PT1M"}')
    with pytest.raises(SettingsError, match="on_site"):
        Settings.from_env({"CASE_POLICY": str(bad)}).policy()


def test_search_attributes_change_only_when_the_case_does() -> None:
    case = parse_open_case(report("T1"))
    now = datetime.fromisoformat("2026-11-23T09:30:00+08:00")
    for policy in (POLICY_2026_2, DEFAULT_POLICY):
        opened = open_case("case-hotline_12345-T1", case, now, policy)
        state, _ = apply_batch(None, opened)
        first = {u.key.name: u.value for u in search_updates(state, None, policy)}
        # 2026.3: the intake clock runs from the opening
        due = {"DueAt": now + timedelta(hours=2)} if policy is DEFAULT_POLICY else {}
        assert first == {
            "CaseStep": "collect",
            "CaseCategory": "public_facilities",
            "FlagColor": "green",
            "CaseSource": "hotline_12345",
            "CaseOrgs": ["G-01", "C-01", "S-01", "D-01"],
            "ReopenCount": 0,
            "EscalationCount": 0,
            **due,
        }
        assert set(first) <= {k.name for k in ALL_KEYS}
        assert search_updates(state, state, policy) == []
    # the flag: the worst colour so far before 2026.3, the light now from 2026.3 on
    red = state.model_copy(update={"flag": Flag.RED})
    assert search_updates(red, state, DEFAULT_POLICY) == []
    assert [(u.key.name, u.value) for u in search_updates(red, state, POLICY_2026_2)] == [
        ("FlagColor", "red")
    ]


def test_example_fast_policy_loads() -> None:
    path = Path(__file__).resolve().parent.parent / "examples" / "fast-policy.json"
    policy = Settings.from_env({"CASE_POLICY": str(path)}).policy()
    assert policy.version == "7135-demo-fast"
    assert policy.resolve_limit(Level.COMMUNITY, Severity.MINOR).total_seconds() == 120
    # the rules of the built-in policy, in minutes
    assert policy.loops is not None and policy.loops.micro_grid.total_seconds() == 120  # type: ignore[union-attr]
    ruled = {"handling_paths", "reviewed_returns", "flag_is_light", "on_site_for"}
    assert {k: getattr(policy, k) for k in ruled} == {k: getattr(DEFAULT_POLICY, k) for k in ruled}


def test_details_show_deadlines_in_local_time() -> None:
    case = parse_open_case(report("T2"))
    now = datetime.fromisoformat("2026-11-23T01:30:00+00:00")
    state, _ = apply_batch(None, open_case("case-hotline_12345-T2", case, now, DEFAULT_POLICY))
    deadline = DEFAULT_POLICY.deadline(Clock.RESOLVE, Level.COMMUNITY, Severity.MAJOR, now)
    text = details(
        state.model_copy(update={"deadlines": {Clock.RESOLVE: deadline}}), DEFAULT_POLICY
    )
    assert "due 2026-11-26 09:30" in text and "3 days left at the last event" in text
    assert "王阿姨" not in text and "13800000000" not in text


def test_a_summary_reads_as_before_for_a_case_under_an_older_policy() -> None:
    """An update's summary gained fields with policy 2026.3: left out where the case's
    policy lacks them (a client built before them reads it), and a reader ignores fields
    it does not know (a client older than the worker keeps working)."""
    from domain.state import CaseSummary, summary

    case = parse_open_case(report("T3"))
    now = datetime.fromisoformat("2026-11-23T09:30:00+08:00")
    before = {
        "case_id",
        "version",
        "step",
        "level",
        "flag",
        "assignee",
        "due_at",
        "reopen_count",
        "escalation_count",
    }
    for policy, added in ((POLICY_2026_2, set()), (DEFAULT_POLICY, {"light"})):
        state, _ = apply_batch(None, open_case("case-hotline_12345-T3", case, now, policy))
        shown = summary(state, light=policy.flag_is_light).model_dump(mode="json")
        assert set(shown) == before | added
    newer = {**shown, "a_field_of_tomorrow": 1}
    assert CaseSummary.model_validate(newer).model_dump(mode="json") == shown
