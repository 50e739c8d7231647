"""The Open311 GeoReport v2 gateway: an aiohttp service over the case loop.

    DATABASE_URL=… CASE_GATEWAY_KEYS=mini_program=… python -m gateway [--port 8311]

GET /services.json, /services/{code}.json: the service catalogue. POST /requests.json:
opens a case through caseloop.client (as every other system does), idempotent by the
caller's ticket (`attribute[ticket]`), with the API key of the calling system (the key
decides the case's source). GET /requests.json and /requests/{id}.json: read from the
read model (`cases`, PostgreSQL), never from Temporal; nothing personal in any answer.
`.xml` instead of `.json` answers in the spec's XML. Errors: `[{"code", "description"}]`
with the HTTP status, the description naming the field.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from aiohttp import web
from temporalio.service import RPCError

from activities.db import create_pool
from caseloop.client import CaseClient
from domain.catalogue import ServiceCatalogue
from domain.errors import DomainError
from domain.model import Source
from gateway.open311 import (
    COLUMNS,
    Open311Error,
    Query,
    open_case_payload,
    parse_query,
    refusal,
    service_definition,
    service_entry,
    service_request,
)
from infra import logs
from infra.settings import GatewayKeys, Settings, SettingsError

log = structlog.get_logger("gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 64 * 1024  # a report is at most 4,000 characters of description
FORMAT = "{fmt:json|xml}"
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")


class Gateway:
    """What the handlers need: the read model, the client, the catalogue, the keys."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: CaseClient,
        catalogue: ServiceCatalogue,
        keys: GatewayKeys,
        zone: ZoneInfo,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.client = client
        self.catalogue = catalogue
        # keys compared as SHA-256 digests: constant time, and no length to learn
        self.keys = [(source, hashlib.sha256(key.encode()).digest()) for source, key in keys]
        self.zone = zone
        self.clock = clock

    def system(self, api_key: str | None) -> Source:
        """The calling system whose key this is; every key is compared (constant time)."""
        given = hashlib.sha256((api_key or "").encode()).digest()
        found = None
        for source, digest in self.keys:
            if hmac.compare_digest(given, digest):
                found = source
        if found is None or not api_key:
            raise Open311Error(403, "api_key: missing, or not the key of a calling system")
        return found

    async def requests(self, q: Query) -> list[asyncpg.Record]:
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if q.ids:
            where = [f"case_id = ANY({arg(list(q.ids))}::text[])"]
        else:
            where = [f"opened_at >= {arg(q.start)}", f"opened_at <= {arg(q.end)}"]
            if q.codes:
                where.append(f"category = ANY({arg(list(q.codes))}::text[])")
            if q.open is not None:
                where.append("archived_at IS NULL" if q.open else "archived_at IS NOT NULL")
            if q.community_id is not None:
                where.append(f"community_id = {arg(q.community_id)}")
        sql = (
            f"SELECT {COLUMNS} FROM cases WHERE {' AND '.join(where)} "
            f"ORDER BY opened_at DESC, case_id LIMIT {arg(q.page_size)} "
            f"OFFSET {arg((q.page - 1) * q.page_size)}"
        )
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))


# ------------------------------------------------------------------------- answers

_ITEM = {"services": "service", "service_requests": "request", "errors": "error",
         "attributes": "attribute", "values": "value"}  # fmt: skip


def _xml(parent: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _xml(ET.SubElement(parent, key), inner)
    elif isinstance(value, list):
        for inner in value:
            _xml(ET.SubElement(parent, _ITEM.get(parent.tag, "item")), inner)
    elif isinstance(value, bool):
        parent.text = "true" if value else "false"
    elif value is not None:
        parent.text = str(value)


def answer(fmt: str, root: str, body: Any, status: int = 200) -> web.Response:
    """JSON as is; XML under the spec's root element (`services`, `service_requests`,
    `service_definition`, `errors`)."""
    if fmt == "xml":
        element = ET.Element(root)
        _xml(element, body)
        text = ET.tostring(element, encoding="unicode", xml_declaration=True)
        return web.Response(text=text, status=status, content_type="text/xml")
    return web.Response(
        text=json.dumps(body, ensure_ascii=False),
        status=status,
        content_type="application/json",
    )


def _fmt(request: web.Request) -> str:
    return "xml" if request.path.endswith(".xml") else "json"


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as an Open311 error list, with its HTTP status."""
    try:
        return await handler(request)
    except Open311Error as exc:
        if request.method == "POST":  # the description names a field, never a value
            log.info("request refused", status=exc.status, reason=exc.description)
        return answer(_fmt(request), "errors", exc.body(), exc.status)
    except web.HTTPRequestEntityTooLarge:
        error = Open311Error(413, f"the request: the body exceeds {MAX_BODY // 1024} KiB")
        return answer(_fmt(request), "errors", error.body(), 413)
    except web.HTTPMethodNotAllowed as exc:
        error = Open311Error(405, f"the request: {request.method} is not allowed here")
        response = answer(_fmt(request), "errors", error.body(), 405)
        response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except web.HTTPNotFound:
        error = Open311Error(
            404,
            "the request: no such resource (services.json, services/{code}.json, "
            "requests.json, requests/{id}.json; or .xml)",
        )
        return answer(_fmt(request), "errors", error.body(), 404)


# ------------------------------------------------------------------------ handlers


def _locale(request: web.Request) -> str:
    return request.query.get("locale", "zh")


async def services(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    body = [service_entry(s, _locale(request)) for s in gw.catalogue.services]
    return answer(request.match_info["fmt"], "services", body)


async def definition(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    service = gw.catalogue.get(request.match_info["code"])
    if service is None:
        raise Open311Error(404, "service_code: no such service; GET /services.json lists them")
    return answer(request.match_info["fmt"], "service_definition", service_definition(service))


async def _form(request: web.Request) -> dict[str, list[str]]:
    """The POST's fields, each with the values sent: form-encoded (the spec's), multipart,
    or a JSON object of strings."""
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Open311Error(400, "the request: the body is not valid JSON") from None
        if not isinstance(body, dict) or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in body.values()
        ):
            raise Open311Error(400, "the request: the JSON body must map fields to strings")
        return {str(k): [str(v)] for k, v in body.items()}
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise Open311Error(400, "the request: send the fields as application/x-www-form-urlencoded")
    form: dict[str, list[str]] = {}
    for key, value in (await request.post()).items():
        if not isinstance(value, str):
            raise Open311Error(400, "media: uploads are not taken; give media_url")
        form.setdefault(key, []).append(value)
    return form


async def post_request(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    fmt = request.match_info["fmt"]
    form = await _form(request)
    keys = form.get("api_key", [])
    source = gw.system(keys[0] if len(keys) == 1 else None)
    payload = open_case_payload(form, source, gw.catalogue, gw.clock().astimezone(gw.zone))
    try:
        opened = await gw.client.open_case(payload)
    except DomainError as exc:
        raise refusal(str(exc)) from None
    except RPCError as exc:
        log.error("opening refused by Temporal", source=source.value, status=exc.status.name)
        raise Open311Error(503, "the request: the case store is unavailable; retry") from None
    log.info("case opened", case_id=opened.case_id, created=opened.created, source=source.value)
    notice = "received" if opened.created else "this ticket was received before"
    body = [{"service_request_id": opened.case_id, "service_notice": notice, "account_id": None}]
    return answer(fmt, "service_requests", body, 201 if opened.created else 200)


async def get_requests(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    query = parse_query(request.query, gw.catalogue, gw.clock(), gw.zone)
    rows = await gw.requests(query)
    body = [service_request(r, gw.catalogue, gw.zone, _locale(request)) for r in rows]
    return answer(request.match_info["fmt"], "service_requests", body)


async def get_request(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    case_id = request.match_info["id"]
    query = parse_query({"service_request_id": case_id}, gw.catalogue, gw.clock(), gw.zone)
    rows = await gw.requests(query)
    if not rows:
        raise Open311Error(404, "service_request_id: no such service request")
    body = [service_request(rows[0], gw.catalogue, gw.zone, _locale(request))]
    return answer(request.match_info["fmt"], "service_requests", body)


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[GATEWAY] = gateway
    app.router.add_get(f"/services.{FORMAT}", services)
    app.router.add_get(f"/services/{{code}}.{FORMAT}", definition)
    app.router.add_get(f"/requests.{FORMAT}", get_requests)
    app.router.add_post(f"/requests.{FORMAT}", post_request)
    app.router.add_get(f"/requests/{{id:[^/]+}}.{FORMAT}", get_request)
    return app


def check(settings: Settings) -> str:
    """The database URL, once the settings the gateway needs are there (SettingsError)."""
    if settings.database_url is None:
        raise SettingsError("DATABASE_URL: required by the gateway (it reads `cases`)")
    if not settings.gateway_keys:
        raise SettingsError("CASE_GATEWAY_KEYS: required (source=key, one per calling system)")
    settings.catalogue()
    return settings.database_url


async def start(settings: Settings) -> web.Application:
    """The gateway of these settings: its pool and client made here; SystemExit with the
    server named when PostgreSQL or Temporal cannot be reached."""
    try:
        pool = await create_pool(check(settings), max_size=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"gateway: cannot reach PostgreSQL (DATABASE_URL): {exc}") from None
    try:
        client = await CaseClient.connect(settings)
    except RuntimeError as exc:
        await pool.close()
        raise SystemExit(
            f"gateway: cannot reach Temporal at {settings.temporal_address} "
            f"(TEMPORAL_ADDRESS): {exc}"
        ) from None
    zone = ZoneInfo(settings.policy().timezone)
    app = build_app(Gateway(pool, client, settings.catalogue(), settings.gateway_keys, zone))

    async def close(_: web.Application) -> None:
        await pool.close()

    app.on_cleanup.append(close)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default CASE_GATEWAY_PORT")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        check(settings)
    except SettingsError as exc:
        sys.exit(f"gateway: {exc}")
    logs.configure(settings.log_level, settings.log_format)
    port = args.port or settings.gateway_port
    log.info(
        "gateway listening",
        host=args.host,
        port=port,
        systems=[s.value for s, _ in settings.gateway_keys],
        catalogue=settings.catalogue().version,
    )
    # no access log: one line per case opened is logged above, without personal data
    web.run_app(start(settings), host=args.host, port=port, print=None, access_log=None)
