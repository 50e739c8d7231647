"""Residents' personal data never reaches Temporal or PostgreSQL in clear text; the codec
server decodes only for those it should; keys rotate."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.store import first_broken_link
from caseloop.client import CaseClient
from infra.codec_server import build_app
from infra.crypto import EncryptionCodec, Keyring
from infra.settings import Settings, SettingsError
from support import KEYRING, LIFECYCLE, report

# A resident no other test reports: the whole database is searched for these values.
NAME, PHONE, ADDRESS = "诸葛秀英", "13912345678", "幸福里7号楼3单元502室"
LAT, LON = 29.317204, 120.075391
TOKEN = "t0ken-for-the-codec-server"
UI = "http://localhost:8233"


def resident_report() -> dict[str, Any]:
    """The suite's report from this resident, about their home (its text names neither)."""
    case = report()
    case["location"] = {
        **case["location"],
        "address": ADDRESS,
        "coordinates": {"lat": LAT, "lon": LON},
    }
    case["reporter"] = {**case["reporter"], "name": NAME, "phone": PHONE}
    return case


def secrets_in(data: bytes) -> list[str]:
    """The resident's values found in `data`, as UTF-8 or as JSON's \\u escapes."""
    values = (NAME, PHONE, ADDRESS, str(LAT), str(LON))
    return [v for v in values if v.encode() in data or json.dumps(v)[1:-1].encode() in data]


async def stored_text(pool: asyncpg.Pool) -> dict[str, bytes]:
    """The text of every column of every row of every table (and materialized view) in
    every schema but PostgreSQL's own, found in the catalog so a new table is covered:
    the bytes as stored, JSON columns included, not a Python dump of them."""
    columns = await pool.fetch(
        """SELECT c.oid::regclass::text AS name,
                  string_agg(quote_ident(a.attname) || '::text', ', ') AS texts
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p', 'm')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%'
            GROUP BY c.oid"""
    )
    text = {}
    for table in columns:
        rows = f"SELECT concat_ws(E'\\n', {table['texts']}) AS row FROM {table['name']}"
        joined = await pool.fetchval(f"SELECT string_agg(row, E'\\n') FROM ({rows}) r")
        text[table["name"]] = str(joined or "").encode()
    return text


async def test_temporal_and_postgresql_see_no_personal_data(
    dev_env: WorkflowEnvironment,
    case_worker: Callable[[Any], Worker],
    task_queue: str,
    pool: asyncpg.Pool,
) -> None:
    client = CaseClient(dev_env.client, task_queue)
    # a client without the codec reads what the server, its database and its UI hold
    raw = await Client.connect(
        dev_env.client.service_client.config.target_host, namespace="default"
    )
    async with case_worker(dev_env.client):
        opened = await client.open_case(resident_report())
        for name, payload in LIFECYCLE:
            await client.send(opened.case_id, name, payload)
        await client.result(opened.case_id)
        # the control: the same report sent by a client without the codec is readable
        plain = await raw.start_workflow(
            "CaseWorkflow", resident_report(), id=f"{opened.case_id}x", task_queue=task_queue
        )
        plain_history = await plain.fetch_history()
        await plain.terminate("control done")
    history = await raw.get_workflow_handle(opened.case_id).fetch_history()
    assert secrets_in(history.to_json().encode()) == []
    raw_bytes = b"".join(e.SerializeToString() for e in history.events)
    assert secrets_in(raw_bytes) == []
    assert secrets_in(b"".join(e.SerializeToString() for e in plain_history.events)) != []
    # the UI's summary of the case is a payload too, encrypted like the rest
    assert history.events[0].user_metadata.summary.metadata["encoding"] == b"binary/encrypted"
    assert b"stairwell" not in raw_bytes
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == b"binary/encrypted"
    # no table of PostgreSQL holds them in clear: not the event store, not the read model
    # (`cases` and its state JSON), not the ledger, nor any table added later; the search
    # reads Chinese as stored (the title, not personal, is found) and the case is archived
    tables = await stored_text(pool)
    title = "楼道灯坏了".encode()
    assert title in tables["cases"] and title in tables["case_events"]
    assert opened.case_id.encode() in tables["ledger"]
    assert {name: secrets_in(text) for name, text in tables.items() if secrets_in(text)} == {}
    # the event store keeps them sealed, yet recoverable by whoever holds the key
    rows = await pool.fetch(
        "SELECT * FROM case_events WHERE case_id = $1 ORDER BY seq", opened.case_id
    )
    case = rows[0]["payload"]["case"]
    assert KEYRING.unseal(case["reporter"]["sealed"], opened.case_id)["name"] == NAME
    assert KEYRING.unseal(case["location"]["address"]["sealed"], opened.case_id) == ADDRESS
    assert KEYRING.unseal(case["location"]["coordinates"]["sealed"], opened.case_id) == {
        "lat": LAT,
        "lon": LON,
    }
    with pytest.raises(ValueError, match="damaged or forged"):
        KEYRING.unseal(case["reporter"]["sealed"], "case-hotline_12345-another")
    assert first_broken_link(rows) is None


async def test_keys_rotate_new_payloads_use_the_new_key_old_ones_still_decode() -> None:
    old_entry = Keyring.generate_entry("k1")
    old = Keyring.parse(old_entry)
    rotated = Keyring.parse(Keyring.generate_entry("k2") + "," + old_entry)
    payload = Payload(metadata={"encoding": b"json/plain"}, data=f'"{PHONE}"'.encode())
    [before] = await EncryptionCodec(old).encode([payload])
    [after] = await EncryptionCodec(rotated).encode([payload])
    assert before.metadata["encryption-key-id"] == b"k1"
    assert after.metadata["encryption-key-id"] == b"k2"
    assert PHONE.encode() not in before.data + after.data
    assert await EncryptionCodec(rotated).decode([before, after]) == [payload, payload]
    with pytest.raises(ValueError, match="no key 'k2'"):
        await EncryptionCodec(old).decode([after])
    # unencrypted payloads (a client without the codec) pass through
    assert await EncryptionCodec(rotated).decode([payload]) == [payload]
    tampered = Payload(metadata=before.metadata, data=before.data[:-1] + b"\x00")
    with pytest.raises(ValueError, match="damaged or forged"):
        await EncryptionCodec(rotated).decode([tampered])


def test_sealing_is_deterministic_per_case_and_bound_to_it() -> None:
    value = {"name": NAME, "phone": PHONE}
    assert KEYRING.seal(value, "case-a-1") == KEYRING.seal(value, "case-a-1")
    assert KEYRING.seal(value, "case-a-1") != KEYRING.seal(value, "case-a-2")
    assert KEYRING.unseal(KEYRING.seal(value, "case-a-1"), "case-a-1") == value


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("k1", "not key_id=base64key"),
        ("k1=notbase64!", "not valid base64"),
        ("k1=" + base64.b64encode(b"short").decode(), "must be 32 bytes"),
        ("bad id=" + base64.b64encode(bytes(32)).decode(), "key id"),
        (Keyring.generate_entry("k1") + "," + Keyring.generate_entry("k1"), "given twice"),
    ],
)
def test_bad_keys_are_refused_naming_the_variable(keys: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_env({"CASE_ENCRYPTION_KEYS": keys})
    assert "CASE_ENCRYPTION_KEYS" in str(refused.value)


@pytest_asyncio.fixture
async def codec_http() -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(EncryptionCodec(KEYRING), TOKEN, ui_origin=UI)
    async with TestClient(TestServer(app)) as http:
        yield http


async def encrypted_body() -> str:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=f'"{PHONE}"'.encode())
    encoded = await EncryptionCodec(KEYRING).encode([payload])
    return json_format.MessageToJson(Payloads(payloads=encoded))


async def test_codec_server_refuses_unauthenticated_requests(
    codec_http: TestClient[Any, Any],
) -> None:
    body = await encrypted_body()
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-of-some-length"},
        {"Authorization": TOKEN},
        {"Origin": "http://evil.example"},
    ):
        response = await codec_http.post("/decode", data=body, headers=headers)
        assert response.status == 401, headers
        assert PHONE not in await response.text()


async def test_codec_server_decodes_for_the_token_and_the_ui(
    codec_http: TestClient[Any, Any],
) -> None:
    body = await encrypted_body()
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"Origin": UI, "X-Namespace": "default"}):
        response = await codec_http.post("/decode", data=body, headers=headers)
        assert response.status == 200, headers
        decoded = json_format.Parse(await response.text(), Payloads())
        assert decoded.payloads[0].data == f'"{PHONE}"'.encode()
    preflight = await codec_http.options(
        "/decode",
        headers={"Origin": UI, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == UI
    assert "X-Namespace" in preflight.headers["Access-Control-Allow-Headers"]
    # encode round-trips, and a malformed body is a clear 400
    encoded = await codec_http.post(
        "/encode",
        data=json_format.MessageToJson(
            Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
        ),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert encoded.status == 200
    assert b"binary/encrypted" in base64.b64decode(
        json.loads(await encoded.text())["payloads"][0]["metadata"]["encoding"]
    )
    bad = await codec_http.post(
        "/decode", data="not json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert bad.status == 400
