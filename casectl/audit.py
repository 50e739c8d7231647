"""`casectl audit`: export histories, replay them against the code and the event store,
verify the hash chains (caseloop/audit.py does the checking)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

import click
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client

from activities.store import first_broken_link
from casectl.common import CannotRun, Failed, database, run, settings, temporal
from caseloop import audit as core
from infra.crypto import Keyring

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


@click.group()
def audit() -> None:
    """Check from the event logs alone that the ledger tells what happened."""


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


def _date(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise CannotRun(f"{option}: not a date or an ISO-8601 time: {value!r}") from None
    if at.tzinfo is None:
        raise CannotRun(f"{option}: give the offset, e.g. {value}T00:00:00+08:00")
    return at.isoformat()


def export_query(
    cases: tuple[str, ...], query: str | None, since: str | None, until: str | None
) -> str:
    """The visibility query selecting the runs to export (every run of each case)."""
    parts = ["WorkflowType = 'CaseWorkflow'"]
    for case_id in cases:
        if not core.is_case_id(case_id):
            raise CannotRun(f"CASE: not a case id: {case_id!r}")
    if cases:
        parts.append("WorkflowId IN (" + ", ".join(f"'{c}'" for c in cases) + ")")
    if since:
        parts.append(f"StartTime >= '{since}'")
    if until:
        parts.append(f"StartTime < '{until}'")
    if query:
        parts.append(f"({query})")
    return " AND ".join(parts)


@audit.command("export")
@click.argument("cases", nargs=-1)
@click.option("--query", help="a Temporal visibility query, e.g. \"CaseOrgs = 'S-01'\"")
@click.option("--since", help="cases opened at or after this time (ISO-8601 with offset)")
@click.option("--until", help="cases opened before this time")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="folder to write into: one folder per case, one history file per run",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(sorted(core.SUFFIXES)),
    default="json",
    show_default=True,
    help="json: protobuf's JSON, for people and other tools; binary: the History protobuf"
    " message's bytes (.binpb), which replays faster (no JSON to parse)",
)
def export(
    cases: tuple[str, ...],
    query: str | None,
    since: str | None,
    until: str | None,
    out_dir: Path,
    form: str,
) -> None:
    """Write the Temporal histories of CASES (or of every case matching --query, --since,
    --until; all cases when none is given) as Temporal history files.

    The payloads stay as the server holds them (encrypted when keys are configured): the
    files can be handed to an auditor who holds the keys."""
    visibility = export_query(cases, query, _date(since, "--since"), _date(until, "--until"))

    async def work() -> None:
        client = await temporal(settings())
        total = (await client.count_workflows(visibility)).count
        if total == 0:
            raise CannotRun(f"no case matches: {visibility}")
        written = await _export(client, visibility, total, out_dir, form)
        out.print(f"exported {written} histories of {total} runs into {out_dir}")

    run(work)


async def _export(client: Client, visibility: str, total: int, out_dir: Path, form: str) -> int:
    written = 0
    with _progress() as progress:
        task = progress.add_task("export", total=total)
        async for execution in client.list_workflows(visibility):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            history = await handle.fetch_history()
            folder = out_dir / execution.id
            folder.mkdir(parents=True, exist_ok=True)
            started = execution.start_time.strftime("%Y%m%dT%H%M%S.%fZ")
            path = folder / f"{started}~{execution.run_id}{core.SUFFIXES[form]}"
            tmp = path.with_suffix(".part")
            tmp.write_bytes(core.history_bytes(history, form))
            tmp.replace(path)  # a file that exists is complete
            written += 1
            progress.advance(task)
    return written


class Problem(BaseModel):
    """A case whose histories do not replay or do not agree with its rows."""

    case_id: str
    seq: int | None
    problem: str


class ReplayReport(BaseModel):
    """What `casectl audit replay` found (printed as is by --json)."""

    cases: int
    histories: int  # runs replayed, each once
    jobs: int
    seconds: float
    histories_per_second: float
    compared_with_database: bool
    problems: list[Problem]
    duplicates: list[core.Duplicate]  # files holding a run another file holds too


@audit.command("replay")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--no-db", is_flag=True, help="only replay (determinism), do not compare with PostgreSQL"
)
@click.option("--sandbox", is_flag=True, help="replay in the workflow sandbox (slower)")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="processes replaying in parallel (one per CPU core is the most that helps)",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def replay(paths: tuple[Path, ...], no_db: bool, sandbox: bool, jobs: int, as_json: bool) -> None:
    """Replay the histories in PATHS (files or folders) against the current workflow code,
    re-derive each case's domain events and compare them with its case_events rows and
    hash chain. Exit status 1 on any failure or mismatch."""
    s = settings()
    try:
        by_case: dict[str, list[Path]] = defaultdict(list)
        for f in core.history_files(paths):
            by_case[core.case_id_of(f)].append(f)
    except ValueError as exc:
        raise CannotRun(str(exc)) from None
    if not by_case:
        suffixes = ", ".join(f"*{s}" for s in core.SUFFIXES.values())
        raise CannotRun(f"no history files ({suffixes}) in " + ", ".join(map(str, paths)))
    total = sum(len(files) for files in by_case.values())

    async def work() -> ReplayReport:
        pool = None if no_db else await database(s)
        chains: dict[tuple[str, str], list[core.Replayed]] = defaultdict(list)
        duplicates: dict[str, list[core.Duplicate]] = defaultdict(list)
        began = time.perf_counter()
        with _progress() as progress:
            task = progress.add_task("replay", total=total)
            try:
                async for done in _replay_all(list(by_case.values()), s.keyring, sandbox, jobs):
                    for r in done.replayed:
                        chains[(r.workflow_id, r.chain)].append(r)
                    for d in done.duplicates:
                        duplicates[d.case_id].append(d)
                    progress.advance(task, len(done.replayed) + len(done.duplicates))
            except ValueError as exc:  # a file that is not a history
                raise CannotRun(str(exc)) from None
        results: list[core.CaseAudit] = []
        if pool is None:
            results = [
                core.audit_case(c, runs, None, s.keyring, duplicates[c])
                for (c, _), runs in chains.items()
            ]
        else:
            async with pool.acquire() as conn:
                for (case_id, _), runs in sorted(chains.items()):
                    rows = await core.stored_rows(conn, case_id)
                    results.append(
                        core.audit_case(case_id, runs, rows, s.keyring, duplicates[case_id])
                    )
            await pool.close()
        seconds = time.perf_counter() - began
        replayed = sum(len(runs) for runs in chains.values())
        return ReplayReport(
            cases=len(results),
            histories=replayed,
            jobs=jobs,
            seconds=round(seconds, 3),
            histories_per_second=round(replayed / seconds, 1),
            compared_with_database=pool is not None,
            problems=[
                Problem(case_id=r.case_id, seq=r.seq, problem=r.problem)
                for r in results
                if r.problem is not None
            ],
            duplicates=[d for found in duplicates.values() for d in found],
        )

    report = run(work)
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        against = "history and case_events" if report.compared_with_database else "history"
        out.print(
            f"{report.cases} cases, {report.histories} histories replayed in "
            f"{report.seconds} s ({report.histories_per_second} per second), "
            f"checked: {against}"
        )
        if report.duplicates:
            first = report.duplicates[0]
            out.print(
                f"{len(report.duplicates)} duplicate histories counted once (a run held by "
                f"two files, e.g. {first.source} and {first.same_as}; --json lists them)"
            )
        for p in report.problems:
            at = f" at seq {p.seq}" if p.seq is not None else ""
            out.print(f"MISMATCH {p.case_id}{at}: {p.problem}")
    if report.problems:
        raise Failed(f"{len(report.problems)} of {report.cases} cases do not agree")
    if not as_json:
        agree = "agrees with the event store" if report.compared_with_database else "replays"
        out.print(f"clean: every history {agree}")


def _replay_in_child(paths: list[Path], sandboxed: bool) -> core.ReplayedFiles:
    """In a child process: the keys from the same settings (keys are not sent over)."""
    return core.replay_files(paths, settings().keyring, sandboxed)


# Histories per unit of work handed to a process: big enough to pay for its replayer.
REPLAY_CHUNK = 50


async def _replay_all(
    cases: list[list[Path]], keyring: Keyring | None, sandboxed: bool, jobs: int
) -> AsyncIterator[core.ReplayedFiles]:
    """Replayed histories in chunks (every file of a case in the same chunk), in this
    process or in `jobs` processes."""
    chunks: list[list[Path]] = [[]]
    for files in cases:
        if len(chunks[-1]) >= REPLAY_CHUNK:
            chunks.append([])
        chunks[-1].extend(files)
    if jobs == 1:
        for chunk in chunks:
            yield await asyncio.to_thread(core.replay_files, chunk, keyring, sandboxed)
        return
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        pending = [
            loop.run_in_executor(pool, _replay_in_child, chunk, sandboxed) for chunk in chunks
        ]
        for done in asyncio.as_completed(pending):
            yield await done


@audit.command("verify-chain")
@click.argument("cases", nargs=-1)
def verify_chain(cases: tuple[str, ...]) -> None:
    """Check the hash chain of every case in PostgreSQL (or of CASES) and name the first
    row of each broken chain. Exit status 1 when one is broken."""
    s = settings()

    async def work() -> tuple[int, int, list[str]]:
        pool = await database(s)
        broken: list[str] = []
        checked = rows_read = 0
        try:
            async with pool.acquire() as conn, conn.transaction():
                ids = list(cases) or [
                    r["case_id"]
                    for r in await conn.fetch("SELECT DISTINCT case_id FROM case_events")
                ]
                with _progress() as progress:
                    task = progress.add_task("verify", total=len(ids))
                    for case_id in sorted(ids):
                        rows = await core.stored_rows(conn, case_id)
                        if not rows:
                            raise CannotRun(f"no case {case_id} in case_events")
                        checked += 1
                        rows_read += len(rows)
                        seq = first_broken_link(rows)
                        if seq is not None:
                            row = rows[seq - 1] if seq <= len(rows) else rows[-1]
                            broken.append(
                                f"{case_id}: first tampered row seq {seq} ({row['type']})"
                            )
                        progress.advance(task)
        finally:
            await pool.close()
        return checked, rows_read, broken

    checked, rows_read, broken = run(work)
    for line in broken:
        out.print("BROKEN " + line)
    out.print(f"{checked} cases, {rows_read} events checked, {len(broken)} broken chains")
    if broken:
        raise Failed(f"{len(broken)} of {checked} hash chains are broken")
