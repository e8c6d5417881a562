"""One vetting path for every outbound connection, and a pool that cannot be poisoned.

Two keep-alive HTTP servers on loopback play an *internal* host (10.0.0.5) and a
*public* one (93.184.216.34); the network backend takes each address to its
server, so where a response came from shows which address the connection went
to. The resolver stub says what "DNS" answers at each moment.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from docpipe.activities.io.download import download, make_http_client
from docpipe.activities.io.netguard import NetPolicy
from docpipe.activities.io.outbound import ROUTE, OutboundClient, Route
from docpipe.activities.io.webhook import WebhookRejected, deliver
from docpipe.config import load_settings
from docpipe.errors import DocumentError
from docpipe.models import DocumentOutcome, Status

pytestmark = pytest.mark.integration

INTERNAL_IP = "10.0.0.5"
PUBLIC_IP = "93.184.216.34"
NAME = "docs.example"


class Site(BaseHTTPRequestHandler):
    """Answers every request with its site's body, over keep-alive connections."""

    protocol_version = "HTTP/1.1"
    body = b""

    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._reply()

    def _reply(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def serve(body: bytes) -> tuple[ThreadingHTTPServer, int]:
    handler = type("Handler", (Site,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class Network(httpcore.AnyIOBackend):
    """Takes each address (or a name, as a fresh DNS lookup would) to its server;
    records every connection made."""

    def __init__(self, routes: dict[str, int]) -> None:
        self.routes = routes
        self.connects: list[str] = []

    async def connect_tcp(
        self, host: str, port: int, **kwargs: object
    ) -> httpcore.AsyncNetworkStream:  # type: ignore[override]
        self.connects.append(host)
        return await super().connect_tcp("127.0.0.1", self.routes[host], **kwargs)  # type: ignore[arg-type]


class Dns:
    """A resolver stub whose answer the test changes as it goes."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    async def __call__(self, host: str, port: int) -> list[str]:
        return [self.answer]


@pytest.fixture(scope="module")
def sites() -> Iterator[dict[str, int]]:
    internal, internal_port = serve(b"INTERNAL: cloud credentials")
    public, public_port = serve(b"public document")
    # NAME -> internal: what a connection that resolved the name itself would reach.
    yield {INTERNAL_IP: internal_port, PUBLIC_IP: public_port, NAME: internal_port}
    for server in (internal, public):
        server.shutdown()
        server.server_close()


@pytest.fixture
async def network(sites: dict[str, int]) -> AsyncIterator[tuple[httpx.AsyncClient, Network]]:
    """The IO worker's shared client with default (production) settings."""
    backend = Network(sites)
    async with make_http_client(load_settings(), network_backend=backend) as client:
        yield client, backend


def outcome() -> DocumentOutcome:
    return DocumentOutcome("doc-1", "https://docs.example/a.txt", 1, Status.SUCCEEDED, "run-1")


async def test_a_webhook_to_an_internal_address_cannot_poison_a_later_download(
    network: tuple[httpx.AsyncClient, Network],
) -> None:
    client, backend = network
    dns = Dns(INTERNAL_IP)
    with pytest.raises(WebhookRejected, match=r"resolves to 10\.0\.0\.5, a private address"):
        await deliver(client, f"http://{NAME}/hook", outcome(), secret=None, resolver=dns)
    assert backend.connects == []  # refused before any connection
    dns.answer = PUBLIC_IP  # the name now answers a public address, which passes vetting
    got = await download(f"http://{NAME}/a.txt", client, max_bytes=1024, resolver=dns)
    assert got.data == b"public document"
    assert backend.connects == [PUBLIC_IP]


async def test_a_pooled_connection_serves_only_the_address_it_was_vetted_for(
    sites: dict[str, int],
) -> None:
    # Even where webhooks may reach the internal network, the download of the same
    # name does not reuse the webhook's keep-alive connection: it was vetted for
    # another address.
    backend = Network(sites)
    settings = load_settings(webhook_allowed_networks="10.0.0.0/8")
    dns = Dns(INTERNAL_IP)
    async with make_http_client(settings, network_backend=backend) as client:
        delivered = await deliver(
            client,
            f"http://{NAME}/hook",
            outcome(),
            secret=None,
            policy=NetPolicy.for_webhooks(settings),
            resolver=dns,
        )
        assert delivered.status_code == 200
        dns.answer = PUBLIC_IP
        got = await download(f"http://{NAME}/a.txt", client, max_bytes=1024, resolver=dns)
        assert got.data == b"public document"
        # Back to the internal answer: the download policy refuses it, pooled or not.
        dns.answer = INTERNAL_IP
        with pytest.raises(DocumentError, match="private"):
            await download(f"http://{NAME}/a.txt", client, max_bytes=1024, resolver=dns)
    assert backend.connects == [INTERNAL_IP, PUBLIC_IP]


async def test_connections_are_still_reused_for_the_same_vetted_address(
    network: tuple[httpx.AsyncClient, Network],
) -> None:
    client, backend = network
    dns = Dns(PUBLIC_IP)
    for _ in range(3):
        got = await download(f"http://{NAME}/a.txt", client, max_bytes=1024, resolver=dns)
        assert got.data == b"public document"
    assert backend.connects == [PUBLIC_IP]  # one keep-alive connection, reused


async def test_a_request_without_a_route_is_vetted_by_the_strict_default(
    network: tuple[httpx.AsyncClient, Network],
) -> None:
    client, backend = network
    with pytest.raises(DocumentError, match="private"):
        await client.get(f"http://{INTERNAL_IP}/")
    response = await client.get(
        f"http://{NAME}/", extensions={ROUTE: Route(NetPolicy(), Dns(PUBLIC_IP))}
    )
    assert response.content == b"public document"
    assert backend.connects == [PUBLIC_IP]


async def test_the_transport_never_connects_to_a_name(sites: dict[str, int]) -> None:
    # The last line of defence: only addresses reach the network backend, so a
    # connection that skipped vetting (and would resolve the name afresh) fails.
    backend = Network(sites)
    async with OutboundClient(network_backend=backend) as client:
        pool = client._transport._pool  # type: ignore[attr-defined]
        request = httpcore.Request("GET", f"http://{NAME}/")
        with pytest.raises(httpcore.ConnectError, match="not vetted"):
            await pool.handle_async_request(request)
    assert backend.connects == []
