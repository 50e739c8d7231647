"""`casectl open | act | show | list` as operators run it: the console script in a
subprocess against the Temporal dev server, with the real worker on this test's queue.
Input refused before anything is sent is checked in-process (click's CliRunner)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from casectl.cases import list_query, register
from caseloop.client import CaseClient
from domain.model import Step
from support import COMMUNITY, COMMUNITY_ADMIN, KEYS, LIFECYCLE, RESIDENT, casectl, report
from workflows.search import CASE_LEVEL, CASE_STEP

MakeWorker = Callable[[Client], Worker]
PHONE = "13800000000"  # the reporter's phone in support.report()


@pytest.fixture
def env(dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "CASE_TASK_QUEUE": task_queue,
        "CASE_ENCRYPTION_KEYS": KEYS,
        "CASELOOP_DATA": str(tmp_path / "no-stack"),  # no local `make run` settings
        "COLUMNS": "200",  # rich tables: no wrapped case ids
    }


@pytest.fixture
def client(dev_env: WorkflowEnvironment, task_queue: str) -> CaseClient:
    return CaseClient(dev_env.client, task_queue)


def invoke(*args: str, stdin: str = "") -> Result:
    """Run a casectl command in this process: only for input refused before any I/O."""
    group = click.Group()
    register(group)
    return CliRunner().invoke(group, list(args), input=stdin)


def one_line_error(err: str) -> str:
    """The error a user sees: one line, no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


async def test_open_from_flags_and_from_a_file_then_existing(
    env: dict[str, str], client: CaseClient, case_worker: MakeWorker, tmp_path: Path
) -> None:
    ref, file_ref = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps(report(file_ref), ensure_ascii=False), encoding="utf-8")
    flags = [
        *("--source", "visit", "--ref", ref, "--title", "单元门禁损坏"),
        *("--description", "入户走访时居民反映单元门禁坏了", "--category", "public_facilities"),
        *("--grid", "G-0101", "--community", "C-01", "--street", "S-01", "--district", "D-01"),
        *("--reporter-name", "刘先生", "--reporter-phone", "13900000000"),
        *("--reported-at", "2026-11-23T10:00:00+08:00"),
    ]
    async with case_worker(client.client):
        (code_flags, out_flags, _), (code_file, out_file, _) = await asyncio.gather(
            casectl(env, "open", *flags), casectl(env, "open", "--file", str(case_file))
        )
        assert (code_flags, out_flags.strip()) == (0, f"created case-visit-{ref}")
        assert (code_file, out_file.strip()) == (0, f"created case-hotline_12345-{file_ref}")
        # the same ticket again, from standard input: the existing case
        code, out, _ = await casectl(env, "open", "--file", "-", stdin=case_file.read_text())
        assert code == 0 and out.startswith(f"existing case-hotline_12345-{file_ref}")

        state = await client.state(f"case-visit-{ref}")
    assert state.case.location.grid_id == "G-0101" and state.case.title == "单元门禁损坏"
    assert state.case.reporter.phone == "13900000000"
    assert state.case.reported_at == datetime.fromisoformat("2026-11-23T10:00:00+08:00")


def test_open_refuses_bad_input_in_one_line_without_personal_data(tmp_path: Path) -> None:
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{\n  "source": "visit",\n  "title": "x",,\n}\n', encoding="utf-8")
    no_title = tmp_path / "no-title.json"
    no_title.write_text(json.dumps({k: v for k, v in report().items() if k != "title"}))
    bad_phone = report(reporter={"name": "王阿姨", "phone": f"{PHONE}x"})
    results = [
        invoke("open", "--file", str(malformed)),
        invoke("open", "--file", str(no_title)),
        invoke("open", "--file", "-", stdin=json.dumps(bad_phone)),
        invoke("open", "--source", "visit", "--title", "x", "--reporter-phone", PHONE),
        invoke("open", "--file", str(no_title), "--title", "x"),
    ]
    assert [r.exit_code for r in results] == [2] * 5
    errors = [one_line_error(r.stderr) for r in results]
    assert f"{malformed}: not valid JSON at line 3, column 16" in errors[0]
    assert "title: Field required" in errors[1]
    assert "reporter.phone" in errors[2]
    assert "--description" in errors[3] and "--reporter-name" in errors[3]
    assert "--file" in errors[4] and "--title" in errors[4]
    for result in results:
        assert PHONE not in result.output


async def test_act_prints_the_summary_refuses_and_lists_commands(
    env: dict[str, str], client: CaseClient, case_worker: MakeWorker
) -> None:
    async with case_worker(client.client):
        case_id = (await client.open_case(report())).case_id
        dispatch = ("act", case_id, "dispatch", "--json")
        payload = '{"severity": "minor", "handling_class": "immediate", "assignee": "gw-1"}'
        actor = ("--actor", f"ca-1:community_admin:{COMMUNITY}")
        code, out, err = await casectl(env, *dispatch, payload, *actor, "--command-id", "d-1")
        assert code == 0, err
        assert "command id: d-1" in err
        assert re.search(r"level +community", out) and re.search(r"assignee +gw-1", out)
        assert "Asia/Shanghai" in out

        claim = json.dumps({"actor": RESIDENT})  # a resident may not claim
        results = await asyncio.gather(
            # the same command id again: applied once, same summary as JSON
            casectl(env, *dispatch, payload, *actor, "--command-id", "d-1", "-o", "json"),
            casectl(env, "act", case_id, "claim", "--file", "-", stdin=claim),
            casectl(env, "act", "case-visit-nope", "claim", *actor),
        )
        (again, _, _), refused, no_case = results
        assert again == 0
        summary = json.loads(results[0][1])
        assert (summary["level"], summary["assignee"], summary["version"]) == (
            "community",
            "gw-1",
            3,  # opened, its intake clock, dispatched
        )
        assert refused[0] == 1
        command_id, error = refused[2].splitlines()  # the id first, for a retry
        assert command_id.startswith("command id: ")
        assert error == (
            "Error: refused: claim: actor (resident) may not claim: "
            "not a handler of this case at its level (it is assigned to someone else)"
        )
        assert no_case[0] == 2 and "no case case-visit-nope in this namespace" in no_case[2]
        events = await client.events(case_id)
    assert [e.type for e in events] == ["case_opened", "deadline_started", "case_dispatched"]


def test_act_refuses_an_unknown_command_and_a_bad_payload() -> None:
    actor = ("--actor", f"ca-1:community_admin:{COMMUNITY}")
    unknown = invoke("act", "case-visit-1", "frobnicate", *actor)
    assert unknown.exit_code == 2
    assert "'dispatch', 'claim'" in unknown.stderr and "'merge_into'" in unknown.stderr
    invalid = invoke("act", "case-visit-1", "dispatch", *actor)
    assert invalid.exit_code == 2
    assert one_line_error(invalid.stderr) == (
        "Error: dispatch refused: severity: Field required; handling_class: Field required"
    )
    bad_actor = invoke("act", "case-visit-1", "claim", "--actor", "gw-1:boss:G-01")
    assert bad_actor.exit_code == 2 and "--actor: expected ID:ROLE:ORG" in bad_actor.stderr
    not_json = invoke("act", "case-visit-1", "claim", "--json", "{actor: 1}")
    assert not_json.exit_code == 2
    assert "--json: not valid JSON at line 1, column 2" in one_line_error(not_json.stderr)


async def test_show_a_case_open_and_archived(
    env: dict[str, str], client: CaseClient, case_worker: MakeWorker
) -> None:
    async with case_worker(client.client):
        running = (await client.open_case(report())).case_id
        await client.send(running, *LIFECYCLE[0])
        archived = (await client.open_case(report())).case_id
        for name, payload in LIFECYCLE:
            await client.send(archived, name, payload)
        (
            (code, out, err),
            (jcode, jout, _),
            (acode, aout, _),
            (ncode, _, nerr),
        ) = await asyncio.gather(
            casectl(env, "show", running),
            casectl(env, "show", running, "--json"),
            casectl(env, "show", archived),
            casectl(env, "show", "case-visit-nope"),
        )
    assert code == 0, err
    assert re.search(r"step +collect", out) and re.search(r"level +community, micro_grid loop", out)
    assert re.search(r"light +green", out) and re.search(r"flag +green \(worst so far\)", out)
    assert "case_opened" in out and "case_dispatched" in out and "ca-1 (community_admin)" in out
    assert "open deadlines" in out and "resolve due" in out and "on_site due" in out
    assert PHONE not in out
    assert jcode == 0
    shown = json.loads(jout)
    assert shown["state"]["case_id"] == running and shown["state"]["level"] == "community"
    assert [e["type"] for e in shown["events"]] == [
        "case_opened",
        "deadline_started",
        "case_dispatched",
    ]
    # an archived case is answered by the worker replaying its history
    assert acode == 0 and re.search(r"step +archive \(completed\)", aout)
    assert "case_archived" in aout
    assert ncode == 2 and one_line_error(nerr) == "Error: no case case-visit-nope in this namespace"

    # no worker any more: the closed case cannot be read, and the command says why
    began = time.monotonic()
    code, _, err = await casectl(env, "show", archived, "--timeout", "1")
    assert code == 2 and time.monotonic() - began < 8
    line = one_line_error(err)
    assert f"{archived} is closed (completed)" in line and "no worker on task queue" in line


async def wait_listed(client: Client, query: str, expected: set[str]) -> None:
    """Wait until visibility (eventually consistent) lists exactly `expected`."""
    found: set[str] = set()
    for _ in range(50):
        found = {e.id async for e in client.list_workflows(query)}
        if found == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"visibility lists {found}, not {expected}")


async def test_list_filters_by_search_attributes(
    env: dict[str, str], client: CaseClient, case_worker: MakeWorker
) -> None:
    grid = f"G-{uuid.uuid4().hex[:10]}"  # cases of this test only
    async with case_worker(client.client):
        minor, hard, withdrawn = [
            (
                await client.open_case(report(location={**report()["location"], "grid_id": grid}))
            ).case_id
            for _ in range(3)
        ]
        await client.send(minor, "dispatch", {**LIFECYCLE[0][1], "assignee": "gw-9"})
        await client.send(
            hard,
            "dispatch",
            {"actor": COMMUNITY_ADMIN, "severity": "hard", "handling_class": "joint"},
        )
        await client.send(withdrawn, "withdraw", {"actor": RESIDENT, "reason": "已自行解决"})
        await wait_listed(
            client.client, f"CaseOrgs = '{grid}' AND ExecutionStatus != 'Running'", {withdrawn}
        )
        await wait_listed(
            client.client,
            f"CaseOrgs = '{grid}' AND (CaseLevel = 'street' OR Assignee = 'gw-9')",
            {minor, hard},
        )

    async def listed(*args: str) -> list[dict[str, Any]]:
        code, out, err = await casectl(env, "list", "--org", grid, *args, "--json")
        assert code == 0, err
        rows: list[dict[str, Any]] = json.loads(out)
        return rows

    def ids(rows: list[dict[str, Any]]) -> set[str]:
        return {row["case_id"] for row in rows}

    results = await asyncio.gather(
        listed(),
        listed("--all"),
        listed("--level", "street", "--org", "S-01"),
        listed("--step", "collect", "--flag", "green", "--assignee", "gw-9"),
        listed("--due-within", "1d"),
        listed("--overdue"),
        listed("--flag", "red"),
        listed("--query", "CaseSeverity = 'hard'"),
        casectl(env, "list", "--org", grid, "--severity", "minor"),
    )
    assert ids(results[0]) == {minor, hard}
    assert ids(results[1]) == {minor, hard, withdrawn}
    assert ids(results[2]) == {hard}
    assert ids(results[3]) == {minor}
    assert ids(results[4]) == {minor}  # a minor matter is due in a day; a hard one in five
    assert ids(results[5]) == ids(results[6]) == set()
    assert ids(results[7]) == {hard}
    row = next(r for r in results[1] if r["case_id"] == withdrawn)
    assert (row["status"], row["step"], row["flag"]) == ("completed", "archive", "green")
    (minor_row,) = results[3]
    due = datetime.fromisoformat(minor_row["due_at"])
    assert timedelta(hours=23) < due - datetime.now(UTC) <= timedelta(days=1)
    assert minor_row["orgs"] == [grid, "C-01", "S-01", "D-01"]
    code, table, _ = results[8]
    assert code == 0 and minor in table and hard not in table and "1 case," in table


def test_list_refuses_bad_filter_values_naming_the_option() -> None:
    cases = {
        ("--org", "S-01' OR 'x' = 'x"): "Invalid value for '--org': must be non-empty, without",
        ("--assignee", "gw\u202e1"): "Invalid value for '--assignee': must be non-empty",
        ("--category", ""): "Invalid value for '--category': must be non-empty",
        ("--due-within", "3x"): "Invalid value for '--due-within': expected a duration",
        ("--step", "done"): "Invalid value for '--step': 'done' is not one of 'collect'",
        ("--limit", "0"): "Invalid value for '--limit'",
    }
    for args, message in cases.items():
        result = invoke("list", *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)


async def test_list_refuses_a_bad_query_and_an_unreachable_server(env: dict[str, str]) -> None:
    unreachable = {**env, "TEMPORAL_ADDRESS": "localhost:1"}
    began = time.monotonic()
    (code, _, err), (unreachable_code, _, unreachable_err) = await asyncio.gather(
        casectl(env, "list", "--query", "CaseStep = "), casectl(unreachable, "list")
    )
    assert time.monotonic() - began < 8
    assert code == 2
    assert one_line_error(err).startswith("Error: --query: Temporal refused the query")
    assert unreachable_code == 2
    assert one_line_error(unreachable_err).startswith(
        "Error: cannot reach Temporal at localhost:1 (TEMPORAL_ADDRESS)"
    )


def test_list_query_quotes_values_and_ands_the_filters() -> None:
    due = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    assert list_query(
        {CASE_STEP: Step.RESOLVE.value, CASE_LEVEL: None},
        orgs=("S-01", "G-01"),
        due_before=due,
        reopened=True,
        open_only=False,
        raw="FlagColor = 'red' OR FlagColor = 'yellow'",
    ) == (
        "WorkflowType = 'CaseWorkflow' AND ExecutionStatus != 'ContinuedAsNew' "
        "AND CaseStep = 'resolve' AND CaseOrgs = 'S-01' AND CaseOrgs = 'G-01' "
        "AND DueAt < '2026-11-24T09:30:00+00:00' AND ReopenCount > 0 "
        "AND (FlagColor = 'red' OR FlagColor = 'yellow')"
    )
    assert list_query({}) == "WorkflowType = 'CaseWorkflow' AND ExecutionStatus = 'Running'"
