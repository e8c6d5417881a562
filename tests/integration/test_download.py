"""The downloader against a real HTTP server on 127.0.0.1 and real files.

Bad sources fail with DocumentError (the document fails, no retry); servers
that are down or busy raise TransientError (Temporal retries).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from docpipe.activities.io.download import Downloaded, download, make_http_client
from docpipe.config import load_settings
from docpipe.devstack import free_port
from docpipe.errors import DocumentError, TransientError
from docpipe.models import Stage

pytestmark = pytest.mark.integration

CAP = 64 * 1024
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
    async with make_http_client(load_settings(download_read_timeout_s=0.5)) as client:
        yield client


async def fetch(source: str, client: httpx.AsyncClient, **kwargs: object) -> Downloaded:
    return await download(source, client, max_bytes=CAP, local_root=None, **kwargs)  # type: ignore[arg-type]


async def fails(source: str, client: httpx.AsyncClient, **kwargs: object) -> str:
    """The reason a download fails for good (and that it is a download failure)."""
    with pytest.raises(DocumentError) as caught:
        await download(source, client, **{"max_bytes": CAP, "local_root": None, **kwargs})  # type: ignore[arg-type]
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
    got = await download(f"{server}/doc.txt", client, max_bytes=len(BODY), local_root=None)
    assert got.data == BODY


async def test_a_read_timeout_is_transient(server: str, client: httpx.AsyncClient) -> None:
    with pytest.raises(TransientError, match="timed out"):
        await fetch(f"{server}/slow", client)


async def test_the_total_timeout_is_transient(server: str) -> None:
    async with httpx.AsyncClient() as patient:  # no read timeout to hide behind
        with pytest.raises(TransientError, match=r"longer than 0\.3 s"):
            await fetch(f"{server}/slow", patient, total_timeout_s=0.3)


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


# --------------------------------------------------------------------- local


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "note.txt").write_bytes(BODY)
    (root / "big.bin").write_bytes(b"x" * (CAP + 1))
    (tmp_path / "secret.txt").write_text("outside the root")
    (root / "link-out.txt").symlink_to(tmp_path / "secret.txt")
    return root


async def test_a_local_path_is_read(files: Path, client: httpx.AsyncClient) -> None:
    got = await fetch(str(files / "sub" / "note.txt"), client)
    assert got.data == BODY
    assert got.filename == "note.txt"
    assert got.content_type == "text/plain"
    assert got.final_url == (files / "sub" / "note.txt").as_uri()


async def test_a_file_url_is_read(files: Path, client: httpx.AsyncClient) -> None:
    got = await fetch((files / "sub" / "note.txt").as_uri(), client)
    assert got.data == BODY


async def test_a_relative_path_is_taken_from_the_local_root(
    files: Path, client: httpx.AsyncClient
) -> None:
    got = await download("sub/note.txt", client, max_bytes=CAP, local_root=files)
    assert got.data == BODY


async def test_a_missing_file_fails_the_document(files: Path, client: httpx.AsyncClient) -> None:
    assert "does not exist" in await fails(str(files / "nope.txt"), client)


async def test_a_directory_fails_the_document(files: Path, client: httpx.AsyncClient) -> None:
    assert "is a directory" in await fails(str(files / "sub"), client)


async def test_an_oversized_file_fails_the_document(files: Path, client: httpx.AsyncClient) -> None:
    assert f"larger than the {CAP}-byte limit" in await fails(str(files / "big.bin"), client)


@pytest.mark.parametrize("source", ["../secret.txt", "sub/../../secret.txt", "link-out.txt"])
async def test_paths_that_escape_the_local_root_are_refused(
    files: Path, client: httpx.AsyncClient, source: str
) -> None:
    reason = await fails(source, client, local_root=files)
    assert "outside the allowed root" in reason


async def test_absolute_paths_outside_the_local_root_are_refused(
    files: Path, client: httpx.AsyncClient
) -> None:
    assert "outside the allowed root" in await fails(
        (files.parent / "secret.txt").as_uri(), client, local_root=files
    )


# ------------------------------------------------------------------- schemes


@pytest.mark.parametrize(
    "source", ["ftp://example.org/a.txt", "s3://bucket/a.txt", "gopher://example.org/", ""]
)
async def test_unsupported_schemes_fail_the_document(
    client: httpx.AsyncClient, source: str
) -> None:
    assert "unsupported URL scheme" in await fails(source, client)
