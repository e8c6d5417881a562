"""Webhook delivery of document results (the ``call_external_api`` step).

Each document's outcome is POSTed as JSON. Receivers can trust and dedupe it:

* ``X-Docpipe-Signature: t=<unix>,v1=<hex>`` where ``v1`` is
  HMAC-SHA256(secret, ``"<t>.<body>"``): the timestamp inside the MAC stops
  replays of an old body; :func:`verify_signature` is the receiver's check.
* ``Idempotency-Key: <document_id>:<content sha256>``: the same result
  delivered twice (a retried activity) carries the same key.

5xx, 408, 429 and network errors are retried with exponential backoff; any
other 4xx means the receiver rejected the request and retrying cannot help.

The webhook URL is untrusted like a document source (it comes with a run), so
it goes through the same vetting path (:mod:`docpipe.activities.io.outbound`):
an internal address is refused -- for good, like a 4xx -- unless
WEBHOOK_ALLOWED_NETWORKS allows it, and the connection is pinned to the vetted
address. The URL may carry a token: messages and payloads show it redacted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass, replace

import httpx

from docpipe.activities.io.netguard import NetPolicy
from docpipe.activities.io.outbound import ROUTE, Resolver, Route, require_vetting, system_resolver
from docpipe.errors import DocumentError, TransientError
from docpipe.models import DocumentOutcome
from docpipe.redact import redact_text, redact_url

SIGNATURE_HEADER = "X-Docpipe-Signature"
RETRYABLE_STATUS = {408, 425, 429}


class WebhookRejected(Exception):
    """The receiver answered 4xx: do not retry."""


class WebhookUnavailable(Exception):
    """Still failing after the in-activity retries: Temporal retries the activity later."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance_s: int = 300
) -> bool:
    """The receiver's side: a valid MAC over a recent timestamp."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        expected = sign(secret, timestamp, body)
    except (KeyError, ValueError):
        return False
    fresh = abs((now if now is not None else time.time()) - timestamp) <= tolerance_s
    return fresh and hmac.compare_digest(expected, header)


def payload(outcome: DocumentOutcome) -> bytes:
    """The event body; the source and reason are redacted here too, whoever built the outcome."""
    outcome = replace(
        outcome,
        source=redact_url(outcome.source),
        failure_reason=redact_text(outcome.failure_reason) if outcome.failure_reason else None,
    )
    event = {"type": f"document.{outcome.status}", "document": asdict(outcome)}
    return json.dumps(event, sort_keys=True, default=str).encode()


def idempotency_key(outcome: DocumentOutcome) -> str:
    return f"{outcome.document_id}:{outcome.content_sha256 or outcome.failure_stage or 'none'}"


@dataclass
class Delivery:
    document_id: str
    status_code: int
    attempts: int


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    outcome: DocumentOutcome,
    *,
    secret: str | None,
    policy: NetPolicy | None = None,
    resolver: Resolver | None = None,
    attempts: int = 4,
    timeout_s: float = 10.0,
    backoff_s: float = 0.5,
) -> Delivery:
    """POST ``outcome`` to ``url`` over ``client`` (an OutboundClient), vetted by
    ``policy`` (default: public addresses only; see :meth:`NetPolicy.for_webhooks`)."""
    require_vetting(client, "webhook delivery")
    route = Route(
        policy if policy is not None else NetPolicy(allow_hint="WEBHOOK_ALLOWED_NETWORKS"),
        resolver or system_resolver,
    )
    shown = redact_url(url)
    body = payload(outcome)
    last_error = ""
    for attempt in range(1, attempts + 1):
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key(outcome)}
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, int(time.time()), body)
        try:
            response = await client.post(
                url, content=body, headers=headers, timeout=timeout_s, extensions={ROUTE: route}
            )
        except DocumentError as exc:  # refused by the network policy, or no such host
            raise WebhookRejected(f"webhook {shown} refused: {exc.reason}") from None
        except TransientError as exc:  # the resolver is unreachable
            last_error = redact_text(str(exc))
        except httpx.HTTPError as exc:
            last_error = f"{type(exc).__name__}: {redact_text(str(exc))}"
        else:
            code = response.status_code
            if code < 300:
                return Delivery(outcome.document_id, code, attempt)
            if 400 <= code < 500 and code not in RETRYABLE_STATUS:
                raise WebhookRejected(
                    f"webhook {shown} rejected the result of {outcome.document_id}: HTTP {code}"
                )
            last_error = f"HTTP {code}"
        if attempt < attempts:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    raise WebhookUnavailable(f"webhook {shown} failed {attempts} times: {last_error}")
