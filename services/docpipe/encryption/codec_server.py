"""Temporal's remote codec protocol, so the UI and CLI can show encrypted payloads.

``POST .../encode`` and ``POST .../decode`` take and return ``{"payloads": [...]}``
(the ``Payloads`` message in proto3 JSON); only the last path segment counts,
so the server can sit under any prefix (``http://host/default/decode``). A bad
body or a payload that will not open is a 400 with the reason.

Who may decode: when a token is configured (CODEC_SERVER_TOKEN) every
encode/decode request must carry ``Authorization: Bearer <token>``; the UI
sends it when its codec settings say so, the CLI with ``--codec-auth``.
Requests naming another namespace in ``X-Namespace`` are refused: the keys
belong to this deployment's namespace. Browsers get CORS headers only for the
origins given (the Temporal UI's), and preflight requests need no token, as
browsers send none with them.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

log = logging.getLogger("docpipe.codec_server")

DEFAULT_PORT = 8081
MAX_BODY_BYTES = 64 * 1024 * 1024
"""A history page can hold many payloads of up to Temporal's 2 MB each."""
_ALLOWED_HEADERS = "authorization, content-type, x-namespace"


@dataclass(frozen=True)
class CodecServerConfig:
    namespace: str
    """The one namespace whose payloads this server's keys open."""
    cors_origins: frozenset[str] = frozenset()
    token: str | None = field(default=None, repr=False)


def cors_headers(origin: str | None, allowed: Collection[str]) -> dict[str, str]:
    """The CORS answer for a request from ``origin``: none unless it is an allowed origin."""
    if origin is None or origin.rstrip("/") not in allowed:
        return {}
    return {
        hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: "POST, OPTIONS",
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: _ALLOWED_HEADERS,
        hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS: "true",
        hdrs.ACCESS_CONTROL_MAX_AGE: "600",
        hdrs.VARY: "Origin",
    }


def authorized(header: str | None, token: str | None) -> bool:
    """True when no token is required, or ``header`` is ``Bearer <token>`` (compared in
    constant time, so response timing does not reveal how much of a guess was right)."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def operation(path: str) -> str | None:
    """``encode`` or ``decode`` from the request path's last segment, else None."""
    last = path.rstrip("/").rpartition("/")[2]
    return last if last in ("encode", "decode") else None


async def apply_codec(codec: PayloadCodec, op: str, body: bytes) -> str:
    """The protocol's whole job: Payloads JSON in, the encoded or decoded Payloads JSON out."""
    payloads = json_format.Parse(body, Payloads())
    convert = codec.encode if op == "encode" else codec.decode
    result = Payloads(payloads=await convert(list(payloads.payloads)))
    return json_format.MessageToJson(result)


def build_app(codec: PayloadCodec, config: CodecServerConfig) -> web.Application:
    """The aiohttp application: /encode, /decode under any prefix, and /healthz."""

    async def handle(request: web.Request) -> web.StreamResponse:
        cors = cors_headers(request.headers.get(hdrs.ORIGIN), config.cors_origins)
        try:
            response = await _answer(request)
        except web.HTTPException as refused:
            refused.headers.update(cors)  # a browser must be able to read the refusal
            raise
        response.headers.update(cors)
        return response

    async def _answer(request: web.Request) -> web.StreamResponse:
        if request.method == hdrs.METH_OPTIONS:
            return web.Response(status=204)
        if request.method == hdrs.METH_GET and request.path.rstrip("/").endswith("/healthz"):
            return web.Response(text="ok")
        op = operation(request.path)
        if op is None:
            raise web.HTTPNotFound(text="POST to .../encode or .../decode")
        if request.method != hdrs.METH_POST:
            raise web.HTTPMethodNotAllowed(request.method, [hdrs.METH_POST])
        if not authorized(request.headers.get(hdrs.AUTHORIZATION), config.token):
            raise web.HTTPUnauthorized(
                text="a bearer token is required", headers={hdrs.WWW_AUTHENTICATE: "Bearer"}
            )
        namespace = request.headers.get("X-Namespace")
        if namespace and namespace != config.namespace:
            raise web.HTTPForbidden(
                text=f"this codec server holds the keys of namespace {config.namespace!r} only"
            )
        try:
            text = await apply_codec(codec, op, await request.read())
        except json_format.ParseError as exc:
            raise web.HTTPBadRequest(text=f"body is not Payloads JSON: {exc}") from None
        except ValueError as exc:  # a payload that will not open: unknown key, altered
            log.warning("%s refused: %s", op, exc)
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.Response(text=text, content_type="application/json")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def serve(
    codec: PayloadCodec, config: CodecServerConfig, host: str, port: int
) -> None:  # pragma: no cover - exercised through the CLI in the integration test
    """Run until SIGINT/SIGTERM."""
    if config.token is None:
        log.warning("CODEC_SERVER_TOKEN is not set: anyone who reaches this server can decode")
    log.info("codec server for namespace %s on http://%s:%d", config.namespace, host, port)
    web.run_app(build_app(codec, config), host=host, port=port, print=None, access_log=None)
