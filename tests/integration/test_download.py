"""The downloader against a real HTTP server on 127.0.0.1 and real files.

Bad sources fail with DocumentError (the document fails, no retry); servers
that are down or busy raise TransientError (Temporal retries).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from docpipe.activities.io.download import Downloaded, download, make_http_client
from docpipe.activities.io.netguard import NetPolicy
from docpipe.config import load_settings
from docpipe.errors import DocumentError, TransientError
from docpipe.local.devstack import free_port
from docpipe.models import Stage

pytestmark = pytest.mark.integration

CAP = 64 * 1024
LOOPBACK = "127.0.0.0/8"
BODY = b"Hello, docpipe!\n"


class Handler(BaseHTTPRequestHandler):
    """Routes that play the servers a downloader meets in the wild."""

    # HTTP/1.0: a body without Content-Length simply ends when the connection closes.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/doc.txt":
            self.reply(200, BODY, {"Content-Type": "text/plain; charset=utf-8"})
        elif path == "/report":
            self.reply(
                200, b"%PDF-1.4", {"Content-Disposition": 'attachment; filename="q3 report.pdf"'}
            )
        elif path.startswith("/status/"):
            self.reply(int(path.rsplit("/", 1)[1]), b"nope")
        elif path == "/redirect":
            self.reply(302, b"", {"Location": "/doc.txt"})
        elif path == "/loop":
            self.reply(302, b"", {"Location": "/loop"})
        elif path == "/to-loopback":  # a public-looking host bouncing to the server's own port
            port = self.server.server_address[1]
            self.reply(302, b"", {"Location": f"http://127.0.0.1:{port}/doc.txt"})
        elif path == "/to-metadata":
            self.reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/to-file":
            self.reply(302, b"", {"Location": "file:///etc/passwd"})
        elif path == "/endless":  # no Content-Length, keeps sending
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x" * 8192)
            except OSError:
                pass  # the client hung up at its cap, as it should
        elif path == "/declares-huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**10))
            self.end_headers()
            self.wfile.write(b"x" * 100)
        elif path == "/slow":
            time.sleep(1.5)
            self.reply(200, BODY)
        else:
            self.reply(404, b"not found")

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # The test server is on loopback, which the default policy refuses: opt in.
    settings = load_settings(download_read_timeout_s=0.5, download_allowed_networks=LOOPBACK)
    async with make_http_client(settings) as client:
        yield client


async def fetch(source: str, client: httpx.AsyncClient, **kwargs: object) -> Downloaded:
    return await download(source, client, max_bytes=CAP, **kwargs)  # type: ignore[arg-type]


async def fails(source: str, client: httpx.AsyncClient, **kwargs: object) -> str:
    """The reason a download fails for good (and that it is a download failure)."""
    with pytest.raises(DocumentError) as caught:
        await download(source, client, **{"max_bytes": CAP, **kwargs})  # type: ignore[arg-type]
    assert caught.value.stage == Stage.DOWNLOAD
    return caught.value.reason


# ---------------------------------------------------------------------- HTTP


async def test_a_200_returns_the_body_and_its_headers(
    server: str, client: httpx.AsyncClient
) -> None:
    got = await fetch(f"{server}/doc.txt", client)
    assert got == Downloaded(
        data=BODY,
        content_type="text/plain; charset=utf-8",
        final_url=f"{server}/doc.txt",
        filename="doc.txt",
    )


async def test_the_filename_comes_from_content_disposition(
    server: str, client: httpx.AsyncClient
) -> None:
    got = await fetch(f"{server}/report", client)
    assert got.filename == "q3 report.pdf"
    assert got.content_type == ""


async def test_redirects_are_followed(server: str, client: httpx.AsyncClient) -> None:
    got = await fetch(f"{server}/redirect", client)
    assert got.data == BODY
    assert got.final_url == f"{server}/doc.txt"


async def test_a_redirect_loop_fails_the_document(server: str, client: httpx.AsyncClient) -> None:
    assert "redirects" in await fails(f"{server}/loop", client)


async def test_a_redirect_to_a_local_file_is_not_followed(
    server: str, client: httpx.AsyncClient
) -> None:
    assert "unsupported redirect" in await fails(f"{server}/to-file", client)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
async def test_client_errors_fail_the_document(
    server: str, client: httpx.AsyncClient, status: int
) -> None:
    reason = await fails(f"{server}/status/{status}", client)
    assert reason.startswith(f"HTTP {status} ")
    assert reason.endswith(f"from {server}/status/{status}")


async def test_404_names_status_reason_and_url(server: str, client: httpx.AsyncClient) -> None:
    assert (
        await fails(f"{server}/status/404", client)
        == f"HTTP 404 Not Found from {server}/status/404"
    )


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_server_errors_and_throttling_are_transient(
    server: str, client: httpx.AsyncClient, status: int
) -> None:
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        await fetch(f"{server}/status/{status}", client)


async def test_a_stream_without_length_is_cut_at_the_cap(
    server: str, client: httpx.AsyncClient
) -> None:
    reason = await fails(f"{server}/endless", client)
    assert f"larger than the {CAP}-byte limit" in reason


async def test_an_honest_huge_content_length_fails_before_reading(
    server: str, client: httpx.AsyncClient
) -> None:
    assert "declares 10000000000 bytes" in await fails(f"{server}/declares-huge", client)


async def test_a_body_exactly_at_the_cap_is_accepted(
    server: str, client: httpx.AsyncClient
) -> None:
    got = await download(f"{server}/doc.txt", client, max_bytes=len(BODY))
    assert got.data == BODY


async def test_a_read_timeout_is_transient(server: str, client: httpx.AsyncClient) -> None:
    with pytest.raises(TransientError, match="timed out"):
        await fetch(f"{server}/slow", client)


async def test_the_total_timeout_is_transient(server: str) -> None:
    # A read timeout longer than the total: only the total can stop the transfer.
    settings = load_settings(download_read_timeout_s=30, download_allowed_networks=LOOPBACK)
    async with make_http_client(settings) as patient:
        with pytest.raises(TransientError, match=r"longer than 0\.3 s"):
            await fetch(f"{server}/slow", patient, total_timeout_s=0.3)


async def test_a_plain_httpx_client_is_refused_for_http_sources(server: str) -> None:
    # It would connect without vetting or pinning.
    async with httpx.AsyncClient() as plain:
        with pytest.raises(TypeError, match="OutboundClient"):
            await fetch(
                f"{server}/doc.txt", plain, policy=NetPolicy.build(allowed_networks=LOOPBACK)
            )


async def test_a_refused_connection_is_transient(client: httpx.AsyncClient) -> None:
    with pytest.raises(TransientError, match="cannot connect"):
        await fetch(f"http://127.0.0.1:{free_port()}/doc.txt", client)


async def test_a_host_that_does_not_exist_fails_the_document(client: httpx.AsyncClient) -> None:
    # .invalid is reserved (RFC 2606): it never resolves.
    assert "does not exist" in await fails("http://no-such-host.invalid/doc.txt", client)


def test_the_client_identifies_itself() -> None:
    client = make_http_client(load_settings())
    assert client.headers["User-Agent"].startswith("docpipe/")
    assert client.timeout.connect == load_settings().download_connect_timeout_s


# ------------------------------------------------------------- network guard

PUBLIC_IP = "93.184.216.34"  # looks public; the test backend takes it to 127.0.0.1


class LoopbackBackend(httpcore.AnyIOBackend):
    """Records where the downloader connects, then connects to the local test server."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(
        self, host: str, port: int, **kwargs: object
    ) -> httpcore.AsyncNetworkStream:  # type: ignore[override]
        self.connects.append((host, port))
        return await super().connect_tcp("127.0.0.1", port, **kwargs)  # type: ignore[arg-type]


class Rebinder:
    """A resolver stub: a public answer first, then loopback (a DNS rebinding attack)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
async def strict() -> AsyncIterator[tuple[httpx.AsyncClient, LoopbackBackend]]:
    """A client with the default (production) policy and a recording network backend."""
    backend = LoopbackBackend()
    async with make_http_client(load_settings(), network_backend=backend) as client:
        yield client, backend


async def test_the_default_policy_refuses_loopback(server: str) -> None:
    async with make_http_client(load_settings()) as client:
        reason = await fails(f"{server}/doc.txt", client)
    assert "'127.0.0.1'" in reason and "loopback" in reason


@pytest.mark.parametrize(
    ("url", "klass"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::1]:8080/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[64:ff9b::a00:1]/", "private"),
        ("http://10.1.2.3/", "private"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("https://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
    ],
)
async def test_internal_address_literals_are_refused(
    strict: tuple[httpx.AsyncClient, LoopbackBackend], url: str, klass: str
) -> None:
    client, backend = strict
    assert klass in await fails(url, client)
    assert backend.connects == []  # refused before any connection


async def test_a_name_resolving_to_loopback_is_refused(
    strict: tuple[httpx.AsyncClient, LoopbackBackend],
) -> None:
    client, backend = strict
    reason = await fails(
        "http://intranet.example/doc.txt", client, resolver=Rebinder(["127.0.0.1"])
    )
    assert reason.startswith("refused host 'intranet.example': resolves to 127.0.0.1,")
    assert "loopback" in reason
    assert backend.connects == []


async def test_a_decimal_ip_host_is_resolved_and_refused(
    strict: tuple[httpx.AsyncClient, LoopbackBackend],
) -> None:
    client, _ = strict
    assert "loopback" in await fails("http://2130706433/", client)  # = 127.0.0.1


async def test_any_internal_answer_refuses_the_host(
    strict: tuple[httpx.AsyncClient, LoopbackBackend],
) -> None:
    client, _ = strict
    resolver = Rebinder([PUBLIC_IP, "10.0.0.7"])
    assert "10.0.0.7" in await fails("http://mixed.example/doc.txt", client, resolver=resolver)


async def test_the_vetted_address_is_pinned_against_rebinding(
    server: str, strict: tuple[httpx.AsyncClient, LoopbackBackend]
) -> None:
    client, backend = strict
    port = int(server.rsplit(":", 1)[1])
    resolver = Rebinder([PUBLIC_IP], ["127.0.0.1"])
    got = await fetch(f"http://docs.example:{port}/doc.txt", client, resolver=resolver)
    assert got.data == BODY
    assert got.final_url == f"http://docs.example:{port}/doc.txt"
    # One lookup, and the connection went to the address that lookup vetted.
    assert resolver.calls == ["docs.example"]
    assert backend.connects == [(PUBLIC_IP, port)]
    # The name now rebinds to loopback: the next download is refused, not connected.
    assert "loopback" in await fails(
        f"http://docs.example:{port}/doc.txt", client, resolver=resolver
    )
    assert backend.connects == [(PUBLIC_IP, port)]


@pytest.mark.parametrize(
    ("route", "klass"), [("to-loopback", "loopback"), ("to-metadata", "cloud metadata")]
)
async def test_every_redirect_hop_is_vetted(
    server: str, strict: tuple[httpx.AsyncClient, LoopbackBackend], route: str, klass: str
) -> None:
    client, backend = strict
    port = int(server.rsplit(":", 1)[1])
    reason = await fails(
        f"http://docs.example:{port}/{route}", client, resolver=Rebinder([PUBLIC_IP])
    )
    assert klass in reason
    assert backend.connects == [(PUBLIC_IP, port)]  # the first hop only


async def test_redirects_between_allowed_hosts_are_followed_with_a_limit(
    server: str, strict: tuple[httpx.AsyncClient, LoopbackBackend]
) -> None:
    client, _ = strict
    port = int(server.rsplit(":", 1)[1])
    resolver = Rebinder([PUBLIC_IP])
    got = await fetch(f"http://docs.example:{port}/redirect", client, resolver=resolver)
    assert got.data == BODY and got.final_url == f"http://docs.example:{port}/doc.txt"
    assert resolver.calls == ["docs.example"] * 2  # each hop resolved and vetted
    reason = await fails(f"http://docs.example:{port}/loop", client, resolver=resolver)
    assert reason == f"more than 5 redirects from http://docs.example:{port}/loop"


async def test_a_public_host_cannot_redirect_into_an_allowed_network(server: str) -> None:
    # Loopback is allowed, but only for a source that names it: the CSV named a
    # public host, whose redirect into the allowed network is refused.
    port = int(server.rsplit(":", 1)[1])
    backend = LoopbackBackend()
    settings = load_settings(download_allowed_networks=LOOPBACK)
    async with make_http_client(settings, network_backend=backend) as client:
        reason = await fails(
            f"http://docs.example:{port}/to-loopback", client, resolver=Rebinder([PUBLIC_IP])
        )
        assert "loopback" in reason and "not a redirect" in reason
        assert backend.connects == [(PUBLIC_IP, port)]  # the first hop only
        # Named directly, the same internal server is fetched, and may redirect within it.
        got = await fetch(f"{server}/redirect", client)
        assert got.data == BODY


async def test_allowed_networks_let_an_internal_server_through(server: str) -> None:
    settings = load_settings(download_allowed_networks="10.0.0.0/8, 127.0.0.1/32")
    async with make_http_client(settings) as client:
        assert (await fetch(f"{server}/doc.txt", client)).data == BODY
    narrow = load_settings(download_allowed_networks="127.0.0.2/32")
    async with make_http_client(narrow) as client:
        assert "loopback" in await fails(f"{server}/doc.txt", client)


async def test_allow_private_networks_lets_everything_through(server: str) -> None:
    async with make_http_client(load_settings(download_allow_private_networks=True)) as client:
        assert (await fetch(f"{server}/doc.txt", client)).data == BODY


async def test_host_allow_and_deny_lists(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    settings = load_settings(
        download_allowed_hosts="docs.example, *.files.example",
        download_denied_hosts="bad.files.example",
    )
    backend = LoopbackBackend()
    async with make_http_client(settings, network_backend=backend) as client:
        resolver = Rebinder([PUBLIC_IP])
        for host in ("docs.example", "a.files.example"):
            got = await fetch(f"http://{host}:{port}/doc.txt", client, resolver=resolver)
            assert got.data == BODY
        assert "not on DOWNLOAD_ALLOWED_HOSTS" in await fails(
            f"http://other.example:{port}/doc.txt", client, resolver=resolver
        )
        assert "'bad.files.example' is on DOWNLOAD_DENIED_HOSTS" in await fails(
            f"http://BAD.files.example.:{port}/doc.txt", client, resolver=resolver
        )


async def test_a_policy_passed_in_wins_over_the_clients(
    server: str, client: httpx.AsyncClient
) -> None:
    assert "loopback" in await fails(f"{server}/doc.txt", client, policy=NetPolicy())


async def test_a_request_that_names_no_route_is_held_to_public_addresses(server: str) -> None:
    # Any other use of the shared client is vetted too, by the strict default policy.
    async with make_http_client(load_settings(download_allowed_networks=LOOPBACK)) as client:
        with pytest.raises(DocumentError, match="loopback"):
            await client.get(f"{server}/doc.txt")


# ------------------------------------------------------------------- schemes


@pytest.mark.parametrize("source", ["ftp://example.org/a.txt", "gopher://example.org/", ""])
async def test_unsupported_schemes_fail_the_document(
    client: httpx.AsyncClient, source: str
) -> None:
    assert "unsupported URL scheme" in await fails(source, client)


# ----------------------------------------------------------------- redaction


async def test_credentials_in_a_failing_source_stay_out_of_the_reason(server: str) -> None:
    source = f"{server.replace('http://', 'http://user:secret@')}/missing?X-Amz-Signature=abc"
    settings = load_settings(download_allowed_networks=LOOPBACK)
    async with make_http_client(settings) as client:
        reason = await fails(source, client)
        assert "secret" not in reason and "abc" not in reason
        assert reason == f"HTTP 404 Not Found from {server.replace('http://', 'http://***@')}" + (
            "/missing?X-Amz-Signature=REDACTED"
        )
        too_big = await fails(
            f"{server.replace('http://', 'http://u:secret@')}/endless?sig=abc", client
        )
        assert "secret" not in too_big and "abc" not in too_big


async def test_the_final_url_is_redacted(server: str, client: httpx.AsyncClient) -> None:
    got = await fetch(f"{server}/redirect?token=abc", client)
    assert got.data == BODY
    assert got.final_url == f"{server}/doc.txt"  # the redirect dropped the query
    got = await fetch(f"{server}/doc.txt?token=abc&page=2", client)
    assert got.final_url == f"{server}/doc.txt?token=REDACTED&page=2"
