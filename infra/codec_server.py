"""The codec server: lets the Temporal UI and CLI show decrypted payloads to an operator.

    CASE_ENCRYPTION_KEYS=… CASE_CODEC_TOKEN=… python -m infra.codec_server [--port 8081]

Implements Temporal's remote codec protocol (POST /encode and /decode with a JSON
`{"payloads": [...]}` body). Binds to 127.0.0.1 unless told otherwise. Two ways to run:

- Local (`make run`; no CASE_CODEC_SSO_* set): every request must carry
  `Authorization: Bearer $CASE_CODEC_TOKEN`, except a browser request from
  CASE_CODEC_UI_ORIGIN (the local UI, which cannot send a token); whoever gets in sees
  everything in clear, and the server warns so at start.
- Single sign-on (CASE_CODEC_SSO_ISSUER, _AUDIENCE and _JWKS_URL or _PUBLIC_KEY set): every
  request must carry the user's own JWT, as the UI's `passAccessToken` sends it; anything
  else is 401 (the static token and the origin let nobody in). A user whose claim
  CASE_CODEC_PII_CLAIM holds CASE_CODEC_PII_VALUE sees payloads in clear; everyone else
  sees them with residents' personal fields redacted (domain/redaction.py) and the rest
  readable. CASE_CODEC_UI_ORIGIN then only names the origin CORS allows.
"""

from __future__ import annotations

import argparse
import hmac
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from domain.redaction import redact_document
from infra import logs
from infra.crypto import EncryptionCodec
from infra.settings import Settings, SettingsError
from infra.sso import Identity, TokenRefused, TokenVerifier

log = structlog.get_logger("codec_server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 8 * 1024 * 1024
IDENTITY = web.RequestKey("identity", Identity)
REDACTED_META = "redacted"
# what a request let in by the static token or the local UI's origin is (no SSO)
OPERATOR = Identity(subject="codec-token", entitled=True)


def redact_payloads(decoded: Sequence[Payload], encoded: Sequence[Payload]) -> list[Payload]:
    """The decoded payloads as a user without the role sees them: JSON payloads with their
    personal fields redacted (metadata `redacted`), `binary/null` as it is; a payload this
    cannot read as JSON (binary, malformed) stays as it came, encrypted."""
    out = []
    for payload, original in zip(decoded, encoded, strict=True):
        encoding = payload.metadata.get("encoding", b"")
        if encoding == b"binary/null":
            out.append(payload)
            continue
        if not encoding.startswith(b"json/"):
            out.append(original)
            continue
        try:
            document: Any = json.loads(payload.data)
        except ValueError:
            out.append(original)
            continue
        redacted = redact_document(document)
        if redacted == document:
            out.append(payload)
            continue
        metadata = dict(payload.metadata)
        metadata[REDACTED_META] = b"personal-data"
        data = json.dumps(redacted, ensure_ascii=False, separators=(",", ":")).encode()
        out.append(Payload(metadata=metadata, data=data))
    return out


def build_app(
    codec: EncryptionCodec,
    token: str | None,
    ui_origin: str | None = None,
    verifier: TokenVerifier | None = None,
) -> web.Application:
    """The codec server's application. With a `verifier` (single sign-on) every request
    needs a valid JWT and only the entitled see personal data in clear; without one, the
    static `token` or the `ui_origin` lets in, to everything."""

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if ui_origin is not None and origin == ui_origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = (
                "Content-Type, X-Namespace, Authorization"
            )
            response.headers["Vary"] = "Origin"
        return response

    async def identify(request: web.Request) -> Identity:
        given = request.headers.get("Authorization")
        if verifier is not None:
            return await verifier.identify(given)
        if token is not None and hmac.compare_digest(
            (given or "").encode(), f"Bearer {token}".encode()
        ):
            return OPERATOR
        if ui_origin is not None and request.headers.get("Origin") == ui_origin:
            return OPERATOR
        raise TokenRefused("no valid token")

    def refused(reason: str, request: web.Request) -> web.Response:
        challenge = 'Bearer realm="caseloop-codec"'
        if request.headers.get("Authorization"):
            challenge += ', error="invalid_token"'
        return web.json_response(
            {"error": f"unauthorized: {reason}"},
            status=401,
            headers={"WWW-Authenticate": challenge},
        )

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return cors(request, web.Response(status=204))
        try:
            request[IDENTITY] = await identify(request)
        except TokenRefused as exc:
            log.warning(
                "codec request refused", path=request.path, remote=request.remote, reason=str(exc)
            )
            return cors(request, refused(str(exc), request))
        try:
            return cors(request, await handler(request))
        except web.HTTPException as exc:
            return cors(request, exc)

    async def decode(request: web.Request, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = await codec.decode(payloads)
        identity = request[IDENTITY]
        if verifier is not None:
            log.info(
                "codec decode",
                subject=identity.subject,
                namespace=request.headers.get("X-Namespace"),
                payloads=len(payloads),
                clear=identity.entitled,
            )
        return decoded if identity.entitled else redact_payloads(decoded, payloads)

    async def encode(request: web.Request, payloads: Sequence[Payload]) -> list[Payload]:
        return await codec.encode(payloads)

    def endpoint(
        transform: Callable[[web.Request, Sequence[Payload]], Awaitable[list[Payload]]],
    ) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            try:
                payloads = json_format.Parse(await request.text(), Payloads())
            except json_format.ParseError:
                return web.json_response({"error": 'body must be {"payloads": [...]}'}, status=400)
            try:
                result = await transform(request, list(payloads.payloads))
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.Response(
                text=json_format.MessageToJson(Payloads(payloads=result)),
                content_type="application/json",
            )

        return handle

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app.router.add_post("/encode", endpoint(encode))
    app.router.add_post("/decode", endpoint(decode))
    return app


def verifier_of(settings: Settings) -> TokenVerifier | None:
    """The token verifier single sign-on settings describe, or None without them."""
    if settings.sso_issuer is None or settings.sso_audience is None:
        return None
    return TokenVerifier(
        issuer=settings.sso_issuer,
        audience=settings.sso_audience,
        algorithms=settings.sso_algorithms,
        pii_claim=settings.pii_claim,
        pii_value=settings.pii_value,
        jwks_url=settings.sso_jwks_url,
        public_key_file=settings.sso_public_key,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"codec server: {exc}")
    if settings.keyring is None:
        sys.exit("codec server: CASE_ENCRYPTION_KEYS must be set")
    if settings.codec_token is None and not settings.sso:
        sys.exit(
            "codec server: CASE_CODEC_TOKEN must be set, or single sign-on "
            "(CASE_CODEC_SSO_ISSUER, CASE_CODEC_SSO_AUDIENCE, CASE_CODEC_SSO_JWKS_URL or "
            "CASE_CODEC_SSO_PUBLIC_KEY)"
        )
    logs.configure(settings.log_level, settings.log_format)
    try:
        verifier = verifier_of(settings)
    except ValueError as exc:
        sys.exit(f"codec server: CASE_CODEC_SSO_PUBLIC_KEY: {exc}")
    app = build_app(
        EncryptionCodec(settings.keyring),
        settings.codec_token,
        settings.codec_ui_origin,
        verifier,
    )
    if verifier is None:
        log.warning(
            "decoding is not restricted: whoever holds CASE_CODEC_TOKEN, or browses from "
            "CASE_CODEC_UI_ORIGIN, sees residents' personal data in clear; set "
            "CASE_CODEC_SSO_* to restrict it to a role"
        )
    else:
        if settings.codec_token is not None:
            log.warning("CASE_CODEC_TOKEN is set but not accepted under single sign-on")
        log.info(
            "codec server requires single sign-on",
            issuer=settings.sso_issuer,
            audience=settings.sso_audience,
            entitled=f"{settings.pii_claim} contains {settings.pii_value}",
        )
    log.info(
        "codec server listening", host=args.host, port=args.port, ui_origin=settings.codec_ui_origin
    )
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
