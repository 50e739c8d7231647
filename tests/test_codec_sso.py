"""The codec server behind single sign-on: the user's JWT (as the Temporal UI's
`passAccessToken` sends it) is verified; the entitled role sees residents' personal data in
clear, every other user sees it redacted and the rest of the payload readable; no valid
token, no decoding. Payloads come from the project's own codec: encrypted models, and the
history and query result of a real case on the Temporal dev server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from caseloop.client import CaseClient
from domain.commands import parse_open_case
from infra.codec_server import build_app
from infra.crypto import EncryptionCodec
from infra.settings import Settings, SettingsError
from infra.sso import TokenVerifier, claim_values, entitled
from support import CONVERTER, GRID_WORKER, KEYRING, KEYS, LIFECYCLE, report

ROOT = Path(__file__).resolve().parent.parent
ISSUER, AUDIENCE, KID = "https://sso.example.gov.cn/realms/grid", "caseloop-codec", "idp-1"
ROLE = "case-pii-reader"
NAME, PHONE, ADDRESS = "慕容桂兰", "13687654321", "桂花苑12幢1单元301室"
LAT, LON = 30.274084, 120.155070
SHOWN = ("慕**", "136****4321", "桂花苑****")
STATIC_TOKEN = "the-local-static-codec-token"
UI = "https://temporal.example.gov.cn"

IDP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FORGER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def token(key: Any = IDP_KEY, algorithm: str = "RS256", **claims: Any) -> str:
    """A token as the identity provider would issue it, with `claims` changed (a claim
    given as None is left out)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "officer-1",
        "iat": now,
        "exp": now + 300,
        "roles": [ROLE],
    }
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": KID})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}", "X-Namespace": "default"}


def resident_report() -> dict[str, Any]:
    case = report()
    case["location"] = {
        **case["location"],
        "address": ADDRESS,
        "coordinates": {"lat": LAT, "lon": LON},
    }
    case["reporter"] = {
        **case["reporter"],
        "name": NAME,
        "phone": PHONE,
        "categories": ["elderly_living_alone"],
    }
    return case


def secrets_in(text: str) -> list[str]:
    """The resident's values found in `text` (their category is not among them: the
    policy in a case's history names every category)."""
    values = (NAME, PHONE, ADDRESS, str(LAT), str(LON))
    return [v for v in values if v in text or json.dumps(v)[1:-1] in text]


def texts(body: str) -> str:
    """The data of every payload of a codec response, as text (JSON payloads decoded)."""
    payloads = json_format.Parse(body, Payloads()).payloads
    return "\n".join(p.data.decode("utf-8", "replace") for p in payloads)


async def encrypted_report() -> str:
    """The start input of a case from this resident, through the project's converter."""
    payloads = await CONVERTER.encode([parse_open_case(resident_report())])
    assert payloads[0].metadata["encoding"] == b"binary/encrypted"
    return json_format.MessageToJson(Payloads(payloads=payloads))


# --- the identity provider's keys: a PEM file, or a JWKS URL served on this machine


@pytest.fixture(scope="module")
def pem_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sso") / "idp.pem"
    path.write_bytes(public_pem(IDP_KEY))
    return path


@pytest_asyncio.fixture
async def jwks_url() -> AsyncIterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(IDP_KEY.public_key()))
    jwks = {"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]}

    async def serve(request: web.Request) -> web.Response:
        return web.json_response(jwks)

    app = web.Application()
    app.router.add_get("/protocol/openid-connect/certs", serve)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/protocol/openid-connect/certs"))


def verifier(pem: Path | None = None, jwks: str | None = None) -> TokenVerifier:
    return TokenVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
        pii_claim="roles",
        pii_value=ROLE,
        jwks_url=jwks,
        public_key_file=pem,
    )


@pytest_asyncio.fixture(params=["pem", "jwks"])
async def sso_http(
    request: pytest.FixtureRequest, pem_file: Path, jwks_url: str
) -> AsyncIterator[TestClient[Any, Any]]:
    """The codec server with single sign-on, its keys from a PEM file or a JWKS URL; the
    static token and the UI origin are configured too, and must let nobody in."""
    keys = verifier(pem=pem_file) if request.param == "pem" else verifier(jwks=jwks_url)
    app = build_app(EncryptionCodec(KEYRING), STATIC_TOKEN, ui_origin=UI, verifier=keys)
    async with TestClient(TestServer(app)) as http:
        yield http


async def test_the_entitled_role_sees_the_report_in_clear(
    sso_http: TestClient[Any, Any],
) -> None:
    response = await sso_http.post(
        "/decode", data=await encrypted_report(), headers=bearer(token())
    )
    assert response.status == 200
    text = texts(await response.text())
    assert secrets_in(text) == [NAME, PHONE, ADDRESS, str(LAT), str(LON)]
    assert "elderly_living_alone" in text
    # a role among others, and a claim value given as a string, entitle as well
    for claims in ({"roles": ["case-viewer", ROLE]}, {"roles": ROLE}):
        response = await sso_http.post(
            "/decode", data=await encrypted_report(), headers=bearer(token(**claims))
        )
        assert NAME in texts(await response.text()), claims


async def test_another_role_sees_it_redacted_and_the_rest_readable(
    sso_http: TestClient[Any, Any],
) -> None:
    for claims in ({"roles": ["case-viewer"]}, {"roles": None}, {"roles": "case-pii-reader-x"}):
        response = await sso_http.post(
            "/decode", data=await encrypted_report(), headers=bearer(token(**claims))
        )
        assert response.status == 200, claims
        [payload] = json_format.Parse(await response.text(), Payloads()).payloads
        assert payload.metadata["encoding"] == b"json/plain"
        assert payload.metadata["redacted"] == b"personal-data"
        shown = json.loads(payload.data)
        assert secrets_in(payload.data.decode()) == [], claims
        assert "elderly_living_alone" not in payload.data.decode()
        assert shown["reporter"] == {
            "name": "慕**",
            "phone": "136****4321",
            "resident_id": "****",
            "categories": ["****"],
        }
        assert shown["location"]["address"] == "桂花苑****"
        assert shown["location"]["coordinates"] == {"lat": 30.27, "lon": 120.16}
        # the rest is the report as sent
        sent = resident_report()
        assert shown["title"] == sent["title"]
        assert shown["description"] == sent["description"]
        assert shown["location"]["community_id"] == sent["location"]["community_id"]
        assert shown["source"] == sent["source"] and shown["reported_at"] == sent["reported_at"]


async def test_no_valid_token_no_decoding(sso_http: TestClient[Any, Any]) -> None:
    body = await encrypted_report()
    now = int(time.time())
    refused: dict[str, dict[str, str]] = {
        "no token": {"X-Namespace": "default"},
        "UI origin, no token": {"Origin": UI, "X-Namespace": "default"},
        "the static token": bearer(STATIC_TOKEN),
        "not a bearer": {"Authorization": f"Basic {token()}"},
        "expired": bearer(token(iat=now - 3600, exp=now - 120)),
        "not yet valid": bearer(token(nbf=now + 600)),
        "without expiry": bearer(token(exp=None)),
        "forged (another key, same kid)": bearer(token(key=FORGER_KEY)),
        "wrong audience": bearer(token(aud="temporal-ui")),
        "wrong issuer": bearer(token(iss="https://evil.example/realms/grid")),
        "unsigned (alg none)": bearer(
            jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "roles": [ROLE]},
                None,
                algorithm="none",
            )
        ),
        "HS256 keyed with the public key": bearer(
            _hs256_with(
                public_pem(IDP_KEY),
                {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "roles": [ROLE]},
            )
        ),
        "garbage": bearer("not.a.jwt"),
    }
    for why, headers in refused.items():
        for path in ("/decode", "/encode"):
            response = await sso_http.post(path, data=body, headers=headers)
            assert response.status == 401, (why, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), why
            text = await response.text()
            assert secrets_in(text) == [], why
            assert "unauthorized" in json.loads(text)["error"], why
    expired = await sso_http.post(
        "/decode", data=body, headers=bearer(token(iat=now - 3600, exp=now - 120))
    )
    assert "expired" in (await expired.json())["error"]
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    # the health check's preflight still answers, with CORS for the UI's origin only
    preflight = await sso_http.options(
        "/decode", headers={"Origin": UI, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == UI
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def _hs256_with(secret: bytes, claims: dict[str, Any]) -> str:
    """An HMAC token keyed with the provider's public key (the algorithm-confusion
    forgery), built by hand: PyJWT refuses to make one."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, head + b"." + body, hashlib.sha256).digest()
    return (head + b"." + body + b"." + b64(signature)).decode()


async def test_encoding_needs_a_valid_token_but_not_the_role(
    sso_http: TestClient[Any, Any],
) -> None:
    plain = Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    response = await sso_http.post(
        "/encode",
        data=json_format.MessageToJson(plain),
        headers=bearer(token(roles=["case-viewer"])),
    )
    assert response.status == 200
    [encoded] = json_format.Parse(await response.text(), Payloads()).payloads
    assert encoded.metadata["encoding"] == b"binary/encrypted"


async def test_payloads_that_cannot_be_read_as_json_stay_encrypted_for_others(
    sso_http: TestClient[Any, Any],
) -> None:
    """A binary payload might hold anything: someone without the role gets it back as it
    came (encrypted); null stays null."""
    binary = Payload(metadata={"encoding": b"binary/plain"}, data=PHONE.encode())
    broken = Payload(metadata={"encoding": b"json/plain"}, data=b'{"reporter": ' + PHONE.encode())
    null = Payload(metadata={"encoding": b"binary/null"})
    encoded = await EncryptionCodec(KEYRING).encode([binary, broken, null])
    body = json_format.MessageToJson(Payloads(payloads=encoded))
    others = await sso_http.post("/decode", data=body, headers=bearer(token(roles=[])))
    got = json_format.Parse(await others.text(), Payloads()).payloads
    assert list(got[:2]) == encoded[:2]
    assert got[2] == null
    entitled_ = await sso_http.post("/decode", data=body, headers=bearer(token()))
    assert list(json_format.Parse(await entitled_.text(), Payloads()).payloads) == [
        binary,
        broken,
        null,
    ]


def _payloads_in(value: Any) -> Iterator[Payload]:
    """Every payload in a history event (as JSON): inputs, results, failures, memo."""
    if isinstance(value, dict):
        if isinstance(value.get("metadata"), dict) and "encoding" in value["metadata"]:
            yield json_format.ParseDict(value, Payload())
            return
        for item in value.values():
            yield from _payloads_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _payloads_in(item)


async def test_a_real_cases_history_and_state_through_the_codec_server(
    dev_env: WorkflowEnvironment,
    case_worker: Callable[[Any], Worker],
    task_queue: str,
    pool: asyncpg.Pool,
    pem_file: Path,
) -> None:
    """What the UI decodes of a case: its whole history (start input, updates, activity
    inputs and results, the summary) and its `state` query, as the server holds them."""
    client = CaseClient(dev_env.client, task_queue)
    raw = await Client.connect(
        dev_env.client.service_client.config.target_host, namespace="default"
    )
    async with case_worker(dev_env.client):
        opened = await client.open_case(resident_report())
        for name, payload in LIFECYCLE[:3]:
            await client.send(opened.case_id, name, payload)
        queried = await raw.workflow_service.query_workflow(
            QueryWorkflowRequest(
                namespace="default",
                execution=WorkflowExecution(workflow_id=opened.case_id),
                query=WorkflowQuery(query_type="state"),
            )
        )
        history = await raw.get_workflow_handle(opened.case_id).fetch_history()
    payloads = [
        *queried.query_result.payloads,
        *(p for event in history.events for p in _payloads_in(json_format.MessageToDict(event))),
    ]
    assert len(payloads) > 10
    assert all(p.metadata["encoding"] == b"binary/encrypted" for p in payloads[:2])
    body = json_format.MessageToJson(Payloads(payloads=payloads))
    app = build_app(EncryptionCodec(KEYRING), None, verifier=verifier(pem=pem_file))
    async with TestClient(TestServer(app)) as http:
        clear = texts(await (await http.post("/decode", data=body, headers=bearer(token()))).text())
        others = await http.post("/decode", data=body, headers=bearer(token(roles=["case-viewer"])))
        redacted = texts(await others.text())
    assert NAME in clear and PHONE in clear and ADDRESS in clear
    assert secrets_in(redacted) == []
    for shown in SHOWN:
        assert shown in redacted, shown
    # the case itself stays readable: its title, step and the staff's actions
    assert "楼道灯坏了" in redacted, redacted[:3000]
    assert "handler_checked_in" in redacted and GRID_WORKER["id"] in redacted
    state = json.loads(json_format.Parse(await others.text(), Payloads()).payloads[0].data)
    assert state["case"]["reporter"]["name"] == "慕**"
    assert state["case"]["location"]["community_id"] == "C-01"


# --- the program itself: settings, start-up, refusal


def test_single_sign_on_settings_are_checked_naming_the_variable(pem_file: Path) -> None:
    full = {
        "CASE_CODEC_SSO_ISSUER": ISSUER,
        "CASE_CODEC_SSO_AUDIENCE": AUDIENCE,
        "CASE_CODEC_SSO_PUBLIC_KEY": str(pem_file),
    }
    settings = Settings.from_env(full)
    assert settings.sso and settings.pii_claim == "roles" and settings.pii_value == ROLE
    assert not Settings.from_env({}).sso
    for env, variable in [
        ({"CASE_CODEC_SSO_ISSUER": ISSUER}, "CASE_CODEC_SSO_AUDIENCE"),
        ({**full, "CASE_CODEC_SSO_PUBLIC_KEY": ""}, "CASE_CODEC_SSO_JWKS_URL"),
        ({**full, "CASE_CODEC_SSO_JWKS_URL": "https://sso.example/certs"}, "not both"),
        ({**full, "CASE_CODEC_SSO_PUBLIC_KEY": "/no/such.pem"}, "CASE_CODEC_SSO_PUBLIC_KEY"),
        (
            {
                **full,
                "CASE_CODEC_SSO_PUBLIC_KEY": "",
                "CASE_CODEC_SSO_JWKS_URL": "http://sso.example/certs",
            },
            "CASE_CODEC_SSO_JWKS_URL",
        ),
        ({**full, "CASE_CODEC_SSO_ALGORITHMS": "HS256"}, "CASE_CODEC_SSO_ALGORITHMS"),
    ]:
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env(env)


def test_claims_are_read_by_dotted_path_list_or_words() -> None:
    claims = {"realm_access": {"roles": ["x", ROLE]}, "scope": f"openid {ROLE}", "roles": 3}
    assert claim_values(claims, "realm_access.roles") == ["x", ROLE]
    assert claim_values(claims, "scope") == ["openid", ROLE]
    assert claim_values(claims, "roles") == []
    assert claim_values(claims, "realm_access.roles.more") == []
    assert entitled(claims, "realm_access.roles", ROLE)
    assert not entitled(claims, "realm_access.roles", "case-pii")
    assert not entitled({"scope": "openid case-pii-reader-x"}, "scope", ROLE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_for(port: int, proc: subprocess.Popen[str]) -> None:
    for _ in range(100):
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("codec server did not start")


def _start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "infra.codec_server", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "LOG_FORMAT": "json", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    """Its log (standard output and error), once stopped."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    return out


async def test_the_program_under_single_sign_on_and_without(pem_file: Path) -> None:
    """`python -m infra.codec_server`: configured for single sign-on it refuses a request
    without a valid token and decodes by role; without, it decodes for the static token as
    `make run` has it, and says at start that decoding is not restricted."""
    body = await encrypted_report()
    port = _free_port()
    sso = _start(
        {
            "CASE_ENCRYPTION_KEYS": KEYS,
            "CASE_CODEC_TOKEN": STATIC_TOKEN,
            "CASE_CODEC_SSO_ISSUER": ISSUER,
            "CASE_CODEC_SSO_AUDIENCE": AUDIENCE,
            "CASE_CODEC_SSO_PUBLIC_KEY": str(pem_file),
        },
        port,
    )
    try:
        await _wait_for(port, sso)
        url = f"http://127.0.0.1:{port}/decode"
        async with ClientSession() as http:
            for headers, status, clear in [
                ({}, 401, False),
                (bearer(STATIC_TOKEN), 401, False),
                (bearer(token(key=FORGER_KEY)), 401, False),
                (bearer(token(roles=["case-viewer"])), 200, False),
                (bearer(token()), 200, True),
            ]:
                async with http.post(url, data=body, headers=headers) as response:
                    assert response.status == status, headers
                    text = await response.text()
                    shown = texts(text) if status == 200 else text
                    assert (NAME in shown) == clear, headers
                    assert (SHOWN[0] in shown) == (status == 200 and not clear), headers
    finally:
        err = _stop(sso)
    assert "requires single sign-on" in err
    assert "CASE_CODEC_TOKEN is set but not accepted" in err
    assert "not restricted" not in err
    assert NAME not in err and PHONE not in err  # the audit log names users, not residents

    port = _free_port()
    local = _start({"CASE_ENCRYPTION_KEYS": KEYS, "CASE_CODEC_TOKEN": STATIC_TOKEN}, port)
    try:
        await _wait_for(port, local)
        async with ClientSession() as http:
            async with http.post(
                f"http://127.0.0.1:{port}/decode", data=body, headers=bearer(STATIC_TOKEN)
            ) as response:
                assert response.status == 200
                assert NAME in texts(await response.text())
    finally:
        err = _stop(local)
    assert "decoding is not restricted" in err


async def test_the_identity_providers_keys_unreachable_refuse_everyone() -> None:
    """The JWKS URL does not answer (the provider down, or the manifests' `.invalid`
    placeholders): nobody is let in, not even with a well-signed token."""
    closed = f"http://127.0.0.1:{_free_port()}/certs"
    app = build_app(EncryptionCodec(KEYRING), None, verifier=verifier(jwks=closed))
    async with TestClient(TestServer(app)) as http:
        response = await http.post(
            "/decode", data=await encrypted_report(), headers=bearer(token())
        )
        assert response.status == 401
        assert "keys unavailable" in (await response.json())["error"]
