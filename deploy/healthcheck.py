#!/usr/bin/env python3
"""Health check of a caseloop container (worker or codec server), for Docker's HEALTHCHECK
and Kubernetes exec probes. Standard library only; exit 0 healthy, 1 not.

It looks at the container's main process (PID 1, or HEALTHCHECK_PID) and decides by its
command line:

- codec server (`-m infra.codec_server [--host H] [--port P]`): an HTTP `OPTIONS /decode`
  to the port must answer 204 within the timeout. The codec server answers OPTIONS without
  a token (CORS preflight) and refuses everything else without one, so this proves the
  event loop serves requests without holding the token.
- Open311 gateway (`-m gateway [--host H] [--port P]`): `GET /services.json` must answer
  200 (the catalogue; it needs neither a key nor the database).
- worker (`-m worker` or `worker.py`): the process must hold an ESTABLISHED TCP connection to
  the port of TEMPORAL_ADDRESS (the SDK keeps its gRPC connection open and long-polls on
  it). One worker per container: more workers are more containers. "Not connected" also
  happens when Temporal itself is down, so use this as a readiness signal, not as a reason
  to restart the worker (see deploy/README.md).
"""

from __future__ import annotations

import http.client
import os
import sys
from pathlib import Path

TIMEOUT = float(os.environ.get("HEALTHCHECK_TIMEOUT", "3"))


def cmdline(pid: str) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def option(args: list[str], name: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def codec_ok(args: list[str]) -> tuple[bool, str]:
    host = option(args, "--host", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = int(option(args, "--port", "8081"))
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request("OPTIONS", "/decode")
        status = conn.getresponse().status
    except OSError as exc:
        return False, f"codec server on {host}:{port}: {exc}"
    finally:
        conn.close()
    return status == 204, f"codec server on {host}:{port}: OPTIONS /decode -> {status}"


def gateway_ok(args: list[str]) -> tuple[bool, str]:
    host = option(args, "--host", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = int(option(args, "--port", os.environ.get("CASE_GATEWAY_PORT", "8311")))
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/services.json")
        status = conn.getresponse().status
    except OSError as exc:
        return False, f"gateway on {host}:{port}: {exc}"
    finally:
        conn.close()
    return status == 200, f"gateway on {host}:{port}: GET /services.json -> {status}"


def socket_inodes(pid: str) -> set[str] | None:
    """Inodes of the process's sockets; None if its fds cannot be read."""
    try:
        links = [os.readlink(entry) for entry in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return None
    return {link[8:-1] for link in links if link.startswith("socket:[")}


def established_to(pid: str, port: int) -> bool:
    mine = socket_inodes(pid)
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state != "01":  # TCP_ESTABLISHED
                continue
            if int(remote.rsplit(":", 1)[1], 16) != port:
                continue
            if mine is None or inode in mine:
                return True
    return False


def worker_ok(pid: str) -> tuple[bool, str]:
    address = os.environ.get("TEMPORAL_ADDRESS") or "localhost:7233"
    try:
        port = int(address.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return False, f"TEMPORAL_ADDRESS {address!r} has no port"
    if established_to(pid, port):
        return True, f"worker connected to Temporal (port {port})"
    return False, f"worker has no established connection to Temporal port {port}"


def main() -> int:
    pid = os.environ.get("HEALTHCHECK_PID", "1")
    try:
        args = cmdline(pid)
    except OSError as exc:
        print(f"unhealthy: cannot read process {pid}: {exc}")
        return 1
    if "infra.codec_server" in args:
        ok, why = codec_ok(args)
    elif "gateway" in args or "gateway.app" in args:
        ok, why = gateway_ok(args)
    elif "worker" in args or any(arg.endswith("worker.py") for arg in args):
        ok, why = worker_ok(pid)
    else:
        # Some other command (casectl, a shell): nothing to check beyond being alive.
        ok, why = True, f"no check for {' '.join(args)[:80]!r}"
    print(("healthy: " if ok else "unhealthy: ") + why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
