"""The Open311 gateway on the embedded stack: the Temporal dev server with the real
worker, PostgreSQL, and the gateway on a port of its own. Reads go through `georeport`
(an Open311 GeoReport v2 client from PyPI; it has no call to create a request, so the
POSTs are made as the spec describes them, form-encoded, with `requests`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import pytest_asyncio
import requests
from aiohttp import web
from georeport import GeoReport
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from caseloop.client import CaseClient
from domain.model import Source
from gateway.app import MAX_BODY, Gateway, build_app
from infra.catalogue import load_catalogue
from notifier.delivery import Notifier
from support import COMMUNITY, DISTRICT, GRID, LIFECYCLE, STREET
from webhooks import FAST, Receiver, hooks

KEYS = ((Source.HOTLINE_12345, "hotline-key-0123456789abcdef"), (Source.VISIT, "visit-key-" * 3))
ZONE = ZoneInfo("Asia/Shanghai")
NAME, PHONE = "王阿姨", "13912345678"
DESCRIPTION = "3号楼2单元楼道灯一周不亮，王阿姨晚上上下楼不便。"


class Served:
    def __init__(self, url: str, client: CaseClient, pool: asyncpg.Pool) -> None:
        self.url = url
        self.client = client
        self.pool = pool
        self.open311 = GeoReport(url)

    async def post(self, fields: dict[str, str], **kwargs: Any) -> requests.Response:
        return await asyncio.to_thread(
            requests.post, f"{self.url}/requests.json", data=fields, timeout=30, **kwargs
        )

    async def get(self, path: str, **params: str) -> requests.Response:
        return await asyncio.to_thread(
            requests.get, f"{self.url}/{path}", params=params, timeout=30
        )

    async def request(self, case_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await asyncio.to_thread(self.open311.get_service_request, case_id)
        return found


@pytest_asyncio.fixture
async def served(
    dev_env: WorkflowEnvironment,
    task_queue: str,
    pool: asyncpg.Pool,
    case_worker: Callable[..., Worker],
) -> AsyncIterator[Served]:
    client = CaseClient(dev_env.client, task_queue)
    gateway = Gateway(pool, client, load_catalogue(), KEYS, ZONE)
    runner = web.AppRunner(build_app(gateway))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with case_worker(dev_env.client):
        yield Served(f"http://127.0.0.1:{port}", client, pool)
    await runner.cleanup()


def fields(ticket: str, **changes: str) -> dict[str, str]:
    return {
        "api_key": KEYS[0][1],
        "service_code": "public_lighting",
        "description": DESCRIPTION,
        "address_string": "3号楼2单元",
        "lat": "29.3",
        "long": "120.07",
        "first_name": "阿姨",
        "last_name": "王",
        "phone": PHONE,
        "account_id": "res-1",  # the resident who answers the feedback (support.RESIDENT)
        "attribute[ticket]": ticket,
        "attribute[grid_id]": GRID,
        "attribute[community_id]": COMMUNITY,
        "attribute[street_id]": STREET,
        "attribute[district_id]": DISTRICT,
        "attribute[title]": "楼道灯不亮",
        **changes,
    }


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 10) -> None:
    for _ in range(int(within / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


def no_personal_data(text: str) -> None:
    for personal in (NAME, "阿姨", PHONE, DESCRIPTION, "楼道灯不亮", "3号楼", "29.3", "120.07"):
        assert personal not in text


async def test_a_case_opened_through_open311_is_followed_to_its_closure(
    served: Served, receiver: Receiver
) -> None:
    """The whole path of a report from another system: opened through the gateway, a
    workflow the Temporal UI lists (its search attributes), its status read back through
    the gateway after every step, and each change its source should hear of delivered to
    the source's webhook by the notifier, signed and in order."""
    await receiver.start()
    stop = asyncio.Event()
    async with Notifier(served.pool, hooks(receiver.url), FAST) as notifier:
        delivering = asyncio.create_task(notifier.run(stop, poll=0.05))
        try:
            await follow_a_case_to_its_closure(served, receiver)
        finally:
            stop.set()
            await delivering


async def follow_a_case_to_its_closure(served: Served, receiver: Receiver) -> None:
    listed = await asyncio.to_thread(served.open311.get_service_list)
    assert {s["service_code"] for s in listed} >= {"public_lighting", "water_supply"}
    definition = await asyncio.to_thread(served.open311.get_service_definition, "public_lighting")
    assert {a["code"] for a in definition["attributes"] if a["required"]} >= {"ticket"}

    ticket = f"T-{uuid.uuid4().hex[:10]}"
    created = await served.post(fields(ticket))
    assert created.status_code == 201, created.text
    [answer] = created.json()
    case_id = answer["service_request_id"]
    assert case_id == f"case-hotline_12345-{ticket}"
    # the same ticket again (a retry after a timeout): the same case, nothing new
    again = await served.post(fields(ticket))
    assert again.status_code == 200 and again.json()[0]["service_request_id"] == case_id

    async def opened() -> bool:
        return bool(await served.pool.fetchval("SELECT 1 FROM cases WHERE case_id = $1", case_id))

    await until(opened, "the case is in the read model")
    # it is a workflow on Temporal, as any case opened through the client, and the UI's
    # list finds it by its search attributes
    described = await served.client.client.get_workflow_handle(case_id).describe()
    assert described.workflow_type == "CaseWorkflow"
    query = (
        f"WorkflowId = '{case_id}' AND CaseOrgs = '{COMMUNITY}' "
        "AND CaseCategory = 'public_lighting' AND CaseSource = 'hotline_12345'"
    )

    async def listed_in_the_ui() -> bool:
        return [w.id async for w in served.client.client.list_workflows(query)] == [case_id]

    await until(listed_in_the_ui, "the Temporal UI's list shows the case")

    seen = [await served.request(case_id)]
    for name, payload in LIFECYCLE:
        await served.client.send(case_id, name, payload)
        seen.append(await served.request(case_id))
    assert seen[0]["status"] == "open" and seen[0]["status_notes"].startswith("网格问事")
    assert seen[0]["agency_responsible"] == f"{COMMUNITY} (community, dispatch)"
    assert seen[0]["service_code"] == "public_lighting" and seen[0]["expected_datetime"]
    assert seen[1]["agency_responsible"] == f"{COMMUNITY} (community, micro-grid loop)"
    notes = [s["status_notes"].split(":")[0] for s in seen]
    assert notes == [
        "网格问事",
        "网格问事",  # dispatched, not yet claimed
        "商议说事",
        "商议说事",
        "具体解事",
        "反馈息事",
        "回访宁事",
        "归档完事",
    ]
    assert [s["status"] for s in seen] == ["open"] * 7 + ["closed"]
    closed = seen[-1]
    assert closed["outcome"] == "completed" and closed["satisfaction"] == "very_satisfied"
    assert closed["expected_datetime"] is None and closed["closed_datetime"]
    assert datetime.fromisoformat(closed["updated_datetime"]) >= datetime.fromisoformat(
        closed["requested_datetime"]
    )

    # the public list of closed cases (办结公示): this community, this service
    start = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    public = await asyncio.to_thread(
        served.open311.get_service_requests,
        service_code="public_lighting",
        start_date=start,
        status="closed",
    )
    assert case_id in [r["service_request_id"] for r in public]
    still_open = await asyncio.to_thread(
        served.open311.get_service_requests, start_date=start, status="open"
    )
    assert case_id not in [r["service_request_id"] for r in still_open]
    by_id = await asyncio.to_thread(served.open311.get_service_requests, service_request_id=case_id)
    assert [r["service_request_id"] for r in by_id] == [case_id]
    xml = GeoReport(served.url, output_format="xml")
    as_xml = await asyncio.to_thread(xml.get_service_request, case_id)
    assert as_xml["service_request_id"] == case_id and as_xml["status"] == "closed"

    for response in (
        created,
        await served.get(f"requests/{case_id}.json"),
        await served.get(f"requests/{case_id}.xml"),
        await served.get("requests.json", start_date=start, community_id=COMMUNITY),
    ):
        assert response.status_code in (200, 201)
        no_personal_data(response.text)

    # the hotline heard of each change, in order, signed, and of nothing personal
    async def told_of_the_archive() -> bool:
        return any(
            a.case_id == case_id and a.payload["kind"] == "archived" for a in receiver.arrivals
        )

    # (the notifier serves the whole suite's outbox: other tests' cases are delivered too)
    await until(told_of_the_archive, "the hotline hears that the case is archived", within=90)
    heard = [a for a in receiver.arrivals if a.case_id == case_id]
    assert [a.payload["kind"] for a in heard] == ["accepted", "dispatched", "resolved", "archived"]
    assert all(a.signed and a.payload["source"] == "hotline_12345" for a in heard)
    assert [a.seq for a in heard] == sorted(a.seq for a in heard)
    assert heard[-1].payload["status"] == "closed"
    for a in heard:
        no_personal_data(a.body)


async def test_requests_are_read_from_the_read_model(served: Served) -> None:
    """A row in `cases` with no workflow behind it: the gateway shows it all the same,
    and filters by each filter."""
    case_id = f"case-visit-{uuid.uuid4().hex[:12]}"
    community = f"C-{uuid.uuid4().hex[:6]}"
    opened = datetime.fromisoformat("2026-03-02T10:00:00+08:00")
    await served.pool.execute(
        """INSERT INTO cases (case_id, version, step, level, flag, category, source, grid_id,
               community_id, street_id, district_id, reopen_count, escalation_count,
               return_count, opened_at, updated_at, archived_at, outcome, state)
           VALUES ($1, 9, 'archive', 'street', 'green', 'water_supply', 'visit', 'G-9', $2,
                   'S-9', 'D-9', 0, 0, 0, $3, $4, $4, 'completed',
                   '{"satisfaction": "basically_satisfied", "loop": "street"}')""",
        case_id,
        community,
        opened,
        opened + timedelta(days=4),
    )
    march = {"start_date": "2026-03-01T00:00:00+08:00", "end_date": "2026-03-31T23:59:59+08:00"}
    for query, found in [
        ({**march, "community_id": community}, True),
        ({**march, "community_id": community, "status": "closed"}, True),
        ({**march, "community_id": community, "status": "open"}, False),
        ({**march, "community_id": community, "service_code": "water_supply"}, True),
        ({**march, "community_id": community, "service_code": "roads"}, False),
        ({"start_date": "2026-04-01", "community_id": community}, False),
        ({"service_request_id": case_id}, True),
    ]:
        response = await served.get("requests.json", **query)
        assert response.status_code == 200, response.text
        ids = [r["service_request_id"] for r in response.json()]
        assert (case_id in ids) is found, query
    [closed] = (await served.get(f"requests/{case_id}.json")).json()
    assert closed["satisfaction"] == "basically_satisfied"
    assert closed["closed_datetime"] == "2026-03-06T10:00:00+08:00"
    assert closed["agency_responsible"] == "S-9 (street, street loop)"
    assert closed["address"] == f"D-9 S-9 {community}"


async def nothing_left(served: Served, ticket: str) -> None:
    for source, _ in KEYS:
        case_id = f"case-{source.value}-{ticket}"
        assert await served.pool.fetchval("SELECT 1 FROM cases WHERE case_id = $1", case_id) is None
        with pytest.raises(RPCError) as missing:
            await served.client.client.get_workflow_handle(case_id).describe()
        assert missing.value.status is RPCStatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("changes", "status", "named"),
    [
        ({"api_key": "not-a-key"}, 403, "api_key: missing, or not the key"),
        ({"api_key": ""}, 403, "api_key: missing, or not the key"),
        ({"service_code": ""}, 400, "service_code: required"),
        ({"service_code": "potholes"}, 400, "service_code: not a service of catalogue"),
        ({"description": ""}, 400, "description: required"),
        ({"attribute[community_id]": ""}, 400, "attribute[community_id]: required"),
        ({"attribute[reported_at]": "2026-13-01T00:00:00+08:00"}, 400, "attribute[reported_at]"),
        ({"attribute[reported_at]": "23/11/2026"}, 400, "attribute[reported_at]"),
        ({"phone": "call me"}, 400, "phone: String should match"),
        ({"description": "灯" * (MAX_BODY // 3 + 10)}, 413, "the request: the body exceeds"),
    ],
)
async def test_bad_input_gets_an_open311_error_and_leaves_nothing(
    served: Served, changes: dict[str, str], status: int, named: str
) -> None:
    ticket = f"B-{uuid.uuid4().hex[:10]}"
    response = await served.post(fields(ticket, **changes))
    assert response.status_code == status, response.text
    [error] = response.json()
    assert error["code"] == status and error["description"].startswith(named), error
    no_personal_data(response.text)
    await nothing_left(served, ticket)


async def test_a_missing_api_key_and_a_body_that_is_no_form(served: Served) -> None:
    ticket = f"B-{uuid.uuid4().hex[:10]}"
    without = fields(ticket)
    del without["api_key"]
    response = await served.post(without)
    assert response.status_code == 403 and response.json()[0]["description"].startswith("api_key")
    plain = await asyncio.to_thread(
        requests.post,
        f"{served.url}/requests.json",
        data=b"service_code=roads",
        headers={"Content-Type": "text/plain"},
        timeout=30,
    )
    assert plain.status_code == 400 and "x-www-form-urlencoded" in plain.text
    as_json = await asyncio.to_thread(
        requests.post, f"{served.url}/requests.json", json=fields(ticket, api_key="x"), timeout=30
    )
    assert as_json.status_code == 403  # JSON is read too; the key is still wrong
    await nothing_left(served, ticket)


@pytest.mark.parametrize(
    ("path", "params", "status", "named"),
    [
        ("requests.json", {"start_date": "yesterday"}, 400, "start_date: must be a W3C"),
        ("requests.json", {"end_date": "2026-02-30"}, 400, "end_date: not a date that exists"),
        (
            "requests.json",
            {"start_date": "2026-01-01", "end_date": "2026-06-01"},
            400,
            "end_date: the span",
        ),
        ("requests.json", {"status": "pending"}, 400, "status: must be open, closed"),
        ("requests.json", {"service_code": "potholes"}, 400, "service_code: not a service"),
        ("requests/nothing-here.json", {}, 400, "service_request_id: from 1 to 100"),
        ("requests/case-visit-nothing.json", {}, 404, "service_request_id: no such"),
        ("services/potholes.json", {}, 404, "service_code: no such service"),
        ("services.csv", {}, 404, "the request: no such resource"),
    ],
)
async def test_bad_queries_get_open311_errors(
    served: Served, path: str, params: dict[str, str], status: int, named: str
) -> None:
    response = await served.get(path, **params)
    assert response.status_code == status, response.text
    [error] = response.json()
    assert error == {"code": status, "description": error["description"]}
    assert error["description"].startswith(named)


async def test_errors_in_xml_too(served: Served) -> None:
    response = await served.get("requests.xml", status="pending")
    assert response.status_code == 400
    assert response.text.startswith("<?xml")
    assert "<errors><error><code>400</code><description>status:" in response.text
