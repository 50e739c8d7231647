"""The codec server: lets the Temporal UI and CLI show decrypted payloads to an operator.

    CASE_ENCRYPTION_KEYS=… CASE_CODEC_TOKEN=… python -m infra.codec_server [--port 8081]

Implements Temporal's remote codec protocol (POST /encode and /decode with a JSON
`{"payloads": [...]}` body). Every request must carry `Authorization: Bearer <token>`;
the one exception is a browser request from CASE_CODEC_UI_ORIGIN (set by `make run` for
the local UI, which cannot send a token): on a shared machine, leave it unset and put the
UI behind authentication that passes its access token instead. Binds to 127.0.0.1 unless
told otherwise.
"""

from __future__ import annotations

import argparse
import hmac
import sys
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from infra import logs
from infra.crypto import EncryptionCodec
from infra.settings import Settings, SettingsError

log = structlog.get_logger("codec_server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 8 * 1024 * 1024


def build_app(codec: EncryptionCodec, token: str, ui_origin: str | None = None) -> web.Application:
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

    def authorized(request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
        return ui_origin is not None and request.headers.get("Origin") == ui_origin

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return cors(request, web.Response(status=204))
        if not authorized(request):
            log.warning("codec request refused", path=request.path, remote=request.remote)
            return cors(request, web.json_response({"error": "unauthorized"}, status=401))
        try:
            return cors(request, await handler(request))
        except web.HTTPException as exc:
            return cors(request, exc)

    def endpoint(
        transform: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
    ) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            try:
                payloads = json_format.Parse(await request.text(), Payloads())
            except json_format.ParseError:
                return web.json_response({"error": 'body must be {"payloads": [...]}'}, status=400)
            try:
                result = await transform(list(payloads.payloads))
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.Response(
                text=json_format.MessageToJson(Payloads(payloads=result)),
                content_type="application/json",
            )

        return handle

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app.router.add_post("/encode", endpoint(codec.encode))
    app.router.add_post("/decode", endpoint(codec.decode))
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"codec server: {exc}")
    if settings.keyring is None or settings.codec_token is None:
        sys.exit("codec server: CASE_ENCRYPTION_KEYS and CASE_CODEC_TOKEN must both be set")
    logs.configure(settings.log_level, settings.log_format)
    app = build_app(
        EncryptionCodec(settings.keyring), settings.codec_token, settings.codec_ui_origin
    )
    log.info(
        "codec server listening", host=args.host, port=args.port, ui_origin=settings.codec_ui_origin
    )
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
