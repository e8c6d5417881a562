"""Webhook delivery (call_external_api) against a real HTTP server on 127.0.0.1.

The receiver is on loopback, which a webhook may reach only when allowed
(WEBHOOK_ALLOWED_NETWORKS): these tests allow it, except where the refusal is
what they check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import httpx
import pytest
from http_serving import serving

from docpipe.activities.io.download import make_http_client
from docpipe.activities.io.netguard import NetPolicy
from docpipe.activities.io.webhook import (
    SIGNATURE_HEADER,
    WebhookRejected,
    WebhookUnavailable,
    deliver,
    sign,
    verify_signature,
)
from docpipe.config import load_settings
from docpipe.models import DocumentOutcome, Stage, Status

pytestmark = pytest.mark.integration

SECRET = "whsec-test-0123456789"
LOOPBACK_ALLOWED = NetPolicy.for_webhooks(load_settings(webhook_allowed_networks="127.0.0.0/8"))


def vetted_client() -> httpx.AsyncClient:
    """The IO worker's shared client: every request vetted and pinned."""
    return make_http_client(load_settings())


class Receiver(BaseHTTPRequestHandler):
    """Answers with the next status of its script, then 200; records every request."""

    script: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = type(self).script.pop(0) if type(self).script else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Handler", (Receiver,), {"script": [], "received": []})
    with serving(handler) as base_url:
        yield f"{base_url}/hook", handler


def outcome() -> DocumentOutcome:
    return DocumentOutcome(
        "doc-1", "/data/a.txt", 2, Status.SUCCEEDED, "run-1", content_sha256="abc", chunk_count=3
    )


async def test_the_result_is_posted_signed_and_the_receiver_can_verify_it(receiver):
    url, handler = receiver
    async with vetted_client() as client:
        delivery = await deliver(client, url, outcome(), secret=SECRET, policy=LOOPBACK_ALLOWED)
    assert (delivery.status_code, delivery.attempts) == (200, 1)
    [(headers, body)] = handler.received
    assert verify_signature(SECRET, headers[SIGNATURE_HEADER], body)
    assert not verify_signature("another-secret", headers[SIGNATURE_HEADER], body)
    assert not verify_signature(SECRET, headers[SIGNATURE_HEADER], body + b" ")
    assert headers["Idempotency-Key"] == "doc-1:abc"
    event = json.loads(body)
    assert event["type"] == "document.succeeded"
    assert event["document"]["chunk_count"] == 3


def test_an_old_signature_is_refused_as_a_replay():
    body = b"{}"
    header = sign(SECRET, 1_000_000, body)
    assert verify_signature(SECRET, header, body, now=1_000_100)
    assert not verify_signature(SECRET, header, body, now=1_000_000 + 3600)


async def test_server_errors_are_retried_with_the_same_idempotency_key(receiver):
    url, handler = receiver
    handler.script = [503, 500]
    async with vetted_client() as client:
        delivery = await deliver(
            client, url, outcome(), secret=SECRET, policy=LOOPBACK_ALLOWED, backoff_s=0.01
        )
    assert delivery.attempts == 3
    assert len({h["Idempotency-Key"] for h, _ in handler.received}) == 1


async def test_a_4xx_is_not_retried(receiver):
    url, handler = receiver
    handler.script = [400]
    async with vetted_client() as client:
        with pytest.raises(WebhookRejected, match="HTTP 400"):
            await deliver(
                client, url, outcome(), secret=SECRET, policy=LOOPBACK_ALLOWED, backoff_s=0.01
            )
    assert len(handler.received) == 1


async def test_a_receiver_that_stays_down_raises_for_temporal_to_retry_later(receiver):
    url, handler = receiver
    handler.script = [502] * 10
    async with vetted_client() as client:
        with pytest.raises(WebhookUnavailable, match="failed 3 times: HTTP 502"):
            await deliver(
                client,
                url,
                outcome(),
                secret=None,
                policy=LOOPBACK_ALLOWED,
                attempts=3,
                backoff_s=0.01,
            )
    assert SIGNATURE_HEADER not in handler.received[0][0], "unsigned without a secret"


# ------------------------------------------------------------- network policy


async def test_a_webhook_to_an_internal_address_is_refused_with_the_reason(receiver):
    url, handler = receiver
    async with vetted_client() as client:
        with pytest.raises(WebhookRejected) as caught:
            await deliver(client, url, outcome(), secret=SECRET, backoff_s=0.01)
    message = str(caught.value)
    assert message.startswith(f"webhook {url} refused: refused host '127.0.0.1': a loopback")
    assert message.endswith("(allow it with WEBHOOK_ALLOWED_NETWORKS)")
    assert handler.received == []  # refused before connecting, and not retried


async def test_the_download_allowances_do_not_open_webhooks(receiver):
    url, handler = receiver
    settings = load_settings(
        download_allowed_networks="127.0.0.0/8", download_allow_private_networks=True
    )
    async with make_http_client(settings) as client:
        with pytest.raises(WebhookRejected, match="loopback"):
            await deliver(
                client, url, outcome(), secret=None, policy=NetPolicy.for_webhooks(settings)
            )
    assert handler.received == []


async def test_a_plain_httpx_client_is_refused():
    async with httpx.AsyncClient() as plain:
        with pytest.raises(TypeError, match="OutboundClient"):
            await deliver(plain, "https://hooks.example/", outcome(), secret=None)


async def test_a_token_in_the_webhook_url_stays_out_of_messages(receiver):
    url, handler = receiver
    handler.script = [403]
    secret_url = url.replace("http://", "http://hook-user:hunter2@") + "?token=tok-123"
    async with vetted_client() as client:
        with pytest.raises(WebhookRejected) as caught:
            await deliver(client, secret_url, outcome(), secret=None, policy=LOOPBACK_ALLOWED)
    assert "hunter2" not in str(caught.value) and "tok-123" not in str(caught.value)
    assert "token=REDACTED" in str(caught.value)


async def test_the_payload_carries_the_source_redacted(receiver):
    url, handler = receiver
    leaky = DocumentOutcome(
        "doc-2",
        "https://u:pw@bucket.example/a.pdf?X-Amz-Signature=sig-abc",
        1,
        Status.FAILED,
        "run-1",
        failure_stage=Stage.DOWNLOAD,
        failure_reason="HTTP 403 Forbidden from https://u:pw@bucket.example/a.pdf?sig=sig-abc",
    )
    async with vetted_client() as client:
        await deliver(client, url, leaky, secret=None, policy=LOOPBACK_ALLOWED)
    [(_headers, body)] = handler.received
    assert b"pw" not in body and b"sig-abc" not in body
    document = json.loads(body)["document"]
    assert document["source"] == "https://***@bucket.example/a.pdf?X-Amz-Signature=REDACTED"
