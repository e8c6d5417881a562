"""The codec server speaks Temporal's remote codec protocol to whoever may use it.

The server runs in-process on a loopback port (aiohttp's test server); the
end-to-end check with the real ``temporal`` CLI is in
tests/integration/test_encrypted_payloads.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import DataConverter

from docpipe.encryption.codec import ENCODING, EncryptionCodec
from docpipe.encryption.codec_server import CodecServerConfig, build_app
from docpipe.encryption.keyring import parse_keyring

TOKEN = "let-me-decode"
UI = "http://localhost:8233"
CODEC = EncryptionCodec(parse_keyring(f"k1:{base64.b64encode(os.urandom(32)).decode()}"))


def body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def payloads_of(text: str) -> list[Payload]:
    return list(json_format.Parse(text, Payloads()).payloads)


def clear(value: str) -> Payload:
    return DataConverter.default.payload_converter.to_payloads([value])[0]


@pytest.fixture
async def server() -> AsyncIterator[TestClient]:
    config = CodecServerConfig("default", frozenset({UI}), TOKEN)
    async with TestClient(TestServer(build_app(CODEC, config))) as client:
        yield client


AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}


async def test_decode_returns_the_payloads_the_workers_encrypted(server: TestClient) -> None:
    (sealed,) = await CODEC.encode([clear("Zanzibar merger")])
    response = await server.post("/decode", data=body(sealed), headers=AUTH)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert payloads_of(await response.text()) == [clear("Zanzibar merger")]


async def test_encode_then_decode_round_trips_under_any_path_prefix(server: TestClient) -> None:
    encoded = await server.post("/default/encode", data=body(clear("x")), headers=AUTH)
    (sealed,) = payloads_of(await encoded.text())
    assert sealed.metadata["encoding"] == ENCODING
    decoded = await server.post("/some/prefix/decode", data=body(sealed), headers=AUTH)
    assert payloads_of(await decoded.text()) == [clear("x")]


async def test_payloads_that_were_never_encrypted_come_back_as_they_are(
    server: TestClient,
) -> None:
    response = await server.post("/decode", data=body(clear("old history")), headers=AUTH)
    assert payloads_of(await response.text()) == [clear("old history")]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN, "Bearer"])
async def test_without_the_token_nothing_is_decoded(
    server: TestClient, authorization: str | None
) -> None:
    (sealed,) = await CODEC.encode([clear("Zanzibar merger")])
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await server.post("/decode", data=body(sealed), headers=headers)
    assert response.status == 401
    assert "Zanzibar" not in await response.text()


async def test_another_namespace_is_refused(server: TestClient) -> None:
    headers = AUTH | {"X-Namespace": "payments"}
    response = await server.post("/decode", data=body(clear("x")), headers=headers)
    assert response.status == 403
    assert "'default'" in await response.text()


async def test_a_body_that_is_not_payloads_json_is_a_bad_request(server: TestClient) -> None:
    response = await server.post("/decode", data="{not json", headers=AUTH)
    assert response.status == 400


async def test_a_payload_that_will_not_open_is_a_bad_request_with_the_reason(
    server: TestClient,
) -> None:
    other = EncryptionCodec(parse_keyring(f"k9:{base64.b64encode(os.urandom(32)).decode()}"))
    (sealed,) = await other.encode([clear("x")])
    response = await server.post("/decode", data=body(sealed), headers=AUTH)
    assert response.status == 400
    assert "'k9'" in await response.text()


async def test_the_ui_origin_gets_cors_headers_and_a_preflight_needs_no_token(
    server: TestClient,
) -> None:
    preflight = await server.options(
        "/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == UI
    allowed = preflight.headers["Access-Control-Allow-Headers"].replace(" ", "").split(",")
    assert {"authorization", "content-type", "x-namespace"} <= set(allowed)
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    # The actual request, and a refusal, are readable by the UI too.
    (sealed,) = await CODEC.encode([clear("x")])
    ok = await server.post("/decode", data=body(sealed), headers=AUTH | {"Origin": UI})
    refused = await server.post("/decode", data=body(sealed), headers={"Origin": UI})
    assert ok.headers["Access-Control-Allow-Origin"] == UI
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == UI


async def test_other_origins_get_no_cors_headers(server: TestClient) -> None:
    response = await server.options("/decode", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_a_token_is_optional_and_health_is_open() -> None:
    config = CodecServerConfig("default")
    async with TestClient(TestServer(build_app(CODEC, config))) as client:
        (sealed,) = await CODEC.encode([clear("x")])
        decoded = await client.post("/decode", data=body(sealed))
        assert payloads_of(await decoded.text()) == [clear("x")]
        assert (await client.get("/healthz")).status == 200
        assert (await client.post("/elsewhere", data="{}")).status == 404


async def test_the_json_is_proto3_json() -> None:
    """What the CLI and UI send: camelCase field names, base64 bytes."""
    text = body(clear("x"))
    parsed = json.loads(text)
    assert set(parsed) == {"payloads"}
    assert base64.b64decode(parsed["payloads"][0]["metadata"]["encoding"]) == b"json/plain"


def test_the_cli_has_a_codec_server_command() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "docpipe", "codec-server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    for option in ("--port", "--cors-origin", "--host"):
        assert option in shown.stdout


def test_the_codec_server_refuses_to_start_without_keys() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYLOAD_ENCRYPTION_KEYS")}
    started = subprocess.run(
        [sys.executable, "-m", "docpipe", "codec-server", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert started.returncode == 2
    assert "PAYLOAD_ENCRYPTION_KEYS" in started.stdout + started.stderr
