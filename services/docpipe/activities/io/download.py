"""Fetch a document's bytes from an http(s) URL, an s3:// object or a local file.

Pure of Temporal: the IO activity wraps :func:`download` and turns its two
error kinds into the document's fate. :class:`DocumentError` means the source
itself is bad (404, no such host, too large, not a file) and retrying cannot
help; :class:`TransientError` means "try again later" (5xx, 408/429,
timeouts, refused connections).

Network safety (see :mod:`docpipe.activities.io.netguard`): only http and
https are fetched over the network; before every request -- the first and each
redirect hop, followed here one by one -- the host is checked against the
allow/deny lists, resolved, and every answer vetted (no loopback, private,
link-local/cloud metadata, multicast, reserved... unless configured). The
connection then goes to the vetted address itself (Host header and TLS SNI stay
the host name), so a DNS answer that changes between the check and the connect
(rebinding) is never used.

The size cap is enforced while streaming: a server can omit or lie about
Content-Length, and a compressed body can expand far beyond it, so bytes are
counted as they arrive (after decoding) and the transfer stops at the cap.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from email.message import Message
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from docpipe.activities.io.local_files import file_url_path, is_windows_drive, read_local
from docpipe.activities.io.netguard import NetPolicy, normalize_host, parse_address
from docpipe.config import Settings
from docpipe.errors import DocumentError, TransientError
from docpipe.models import Stage

MAX_REDIRECTS = 5
# Concurrent downloads of one IO worker (~200 activities) share these.
_MAX_CONNECTIONS = 200
_MAX_KEEPALIVE = 50
# HTTP statuses that say "not now" rather than "never".
_RETRYABLE_STATUS = {408, 429}
# getaddrinfo answers meaning "this name does not exist" (as opposed to
# EAI_AGAIN, a resolver that is temporarily unreachable).
_NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}

SOURCE_SCHEMES = frozenset({"http", "https", "s3", "file"})
"""The source kinds DOWNLOAD_SCHEMES can allow; ``file`` covers plain paths too."""

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``: the system resolver, or a stub in tests."""

S3Reader = Callable[[str, int], Awaitable["Downloaded"]]
"""``(s3 url, max_bytes) -> Downloaded``: see :mod:`docpipe.activities.io.s3_source`."""

# The vetted address of each (host, port) the current download may connect to.
# Set per redirect hop by :func:`download`; None outside a download (other users
# of the shared client, such as the webhook, connect as httpx normally does).
_PINS: ContextVar[Mapping[tuple[str, int], str] | None] = ContextVar(
    "docpipe_download_pins", default=None
)


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from getaddrinfo (asyncio's, in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Connects a download to the address it vetted, not to a fresh DNS answer.

    httpcore hands ``connect_tcp`` the URL's host; inside a download that host
    is swapped for the pinned address (TLS still uses the host name for SNI
    and certificate checks: httpcore passes it to ``start_tls`` separately).
    """

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        pins = _PINS.get()
        if pins is not None:
            pinned = pins.get((normalize_host(host), port))
            if pinned is None:  # never vetted: fail closed
                raise httpcore.ConnectError(f"no vetted address for {host}:{port}")
            host = pinned
        return await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a :class:`PinnedNetworkBackend` connection pool."""

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        verify: bool = True,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        limits = limits if limits is not None else httpx.Limits()
        super().__init__(limits=limits, verify=verify, trust_env=False)
        self.network_backend = PinnedNetworkBackend(network_backend)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self.network_backend,
        )


@dataclass
class Downloaded:
    data: bytes
    content_type: str
    """The Content-Type header as sent (may be ""); for files, guessed from the name."""
    final_url: str
    """Where the bytes came from after redirects (a file:// URL for local files)."""
    filename: str
    """From Content-Disposition, else the last path segment; may be ""."""


def _version() -> str:
    try:
        return metadata.version("docpipe")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"


class DownloadClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that also carries the per-download total timeout.

    httpx has only per-phase timeouts (connect, read, ...); a server that
    drips one byte per read-timeout would never trip them, so
    :func:`download` wraps each transfer in ``total_timeout_s`` as well.
    """

    def __init__(
        self,
        *,
        total_timeout_s: float | None = None,
        policy: NetPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.total_timeout_s = total_timeout_s
        self.policy = policy if policy is not None else NetPolicy()


def make_http_client(
    settings: Settings, *, network_backend: httpcore.AsyncNetworkBackend | None = None
) -> DownloadClient:
    """The process's shared HTTP client: pooled, bounded timeouts, pinned connections.

    It carries the settings' :class:`NetPolicy`, which :func:`download` uses by
    default. Proxies from the environment are not used (``trust_env=False``):
    a proxy would make the connection, and the vetted address could not be pinned.
    ``network_backend``: what the pinned backend connects with (tests).
    """
    timeout = httpx.Timeout(
        connect=settings.download_connect_timeout_s,
        read=settings.download_read_timeout_s,
        write=settings.download_read_timeout_s,
        # Waiting for a free pooled connection is bounded like connecting.
        pool=settings.download_connect_timeout_s,
    )
    limits = httpx.Limits(
        max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_KEEPALIVE
    )
    return DownloadClient(
        total_timeout_s=settings.download_total_timeout_s,
        policy=NetPolicy.from_settings(settings),
        timeout=timeout,
        transport=PinnedTransport(limits=limits, network_backend=network_backend),
        trust_env=False,
        # download() follows redirects itself, vetting each hop.
        follow_redirects=False,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": f"docpipe/{_version()}"},
    )


def source_kind(source: str) -> str:
    """What a source is fetched with: its URL scheme, lower-case, or ``file`` for a
    plain local path (the kinds DOWNLOAD_SCHEMES names, or an unsupported scheme)."""
    scheme = urlsplit(source.strip()).scheme.lower()
    return "file" if scheme == "" or is_windows_drive(scheme) else scheme


async def download(
    source: str,
    client: httpx.AsyncClient,
    *,
    max_bytes: int,
    local_roots: Sequence[Path] = (),
    total_timeout_s: float | None = None,
    policy: NetPolicy | None = None,
    resolver: Resolver | None = None,
    schemes: Collection[str] | None = None,
    s3: S3Reader | None = None,
) -> Downloaded:
    """Fetch ``source`` (http(s), s3:// or file:// URL, or a plain path), at most ``max_bytes``.

    ``local_roots``: the folders local sources may be read from (symlinks
    resolved first); relative paths are taken from the first. Empty: local
    sources are refused (see :mod:`docpipe.activities.io.local_files`).
    ``total_timeout_s``: a cap on the whole HTTP transfer, on top of the
    client's per-phase timeouts; defaults to the one a :class:`DownloadClient`
    carries (none for a plain ``httpx.AsyncClient``).
    ``policy``: where HTTP downloads may go; defaults to the one a
    :class:`DownloadClient` carries (built from the settings), else the strict
    default (public addresses only). Connections are pinned to the vetted
    address only with a client from :func:`make_http_client`.
    ``resolver``: host name lookup (default: getaddrinfo).
    ``schemes``: the source kinds allowed (``http``, ``https``, ``s3``, ``file``
    -- the last covering plain paths too); default all of them.
    ``s3``: reads ``s3://`` sources (the worker's S3 client); without it they fail.
    """
    source = source.strip()
    if not source:
        raise DocumentError(Stage.DOWNLOAD, "unsupported URL scheme: the source is empty")
    scheme = urlsplit(source).scheme.lower()
    kind = source_kind(source)
    if schemes is not None and kind in SOURCE_SCHEMES and kind not in schemes:
        raise DocumentError(
            Stage.DOWNLOAD,
            f"{'local file' if kind == 'file' else kind} sources are not allowed here "
            f"(DOWNLOAD_SCHEMES: {', '.join(sorted(schemes)) or 'none'}): {source}",
        )
    if scheme == "s3":
        if s3 is None:
            raise DocumentError(
                Stage.DOWNLOAD, f"s3:// sources need the worker's S3 object store: {source}"
            )
        return await s3(source, max_bytes)
    if scheme in {"http", "https"}:
        if total_timeout_s is None:
            total_timeout_s = getattr(client, "total_timeout_s", None)
        if policy is None:
            policy = getattr(client, "policy", None) or NetPolicy()
        fetch = _Fetch(client, max_bytes, policy, resolver or system_resolver)
        if total_timeout_s is None:
            return await fetch(source)
        try:
            async with asyncio.timeout(total_timeout_s):
                return await fetch(source)
        except TimeoutError as exc:
            raise TransientError(
                f"download of {source} took longer than {total_timeout_s:g} s"
            ) from exc
    if scheme == "file" or scheme == "" or is_windows_drive(scheme):
        path = file_url_path(source) if scheme == "file" else Path(source)
        local = await asyncio.to_thread(read_local, path, max_bytes, local_roots)
        return Downloaded(local.data, local.content_type, local.final_url, local.filename)
    raise DocumentError(
        Stage.DOWNLOAD,
        f"unsupported URL scheme {scheme!r} in {source!r} "
        "(supported: http, https, s3, file, local paths)",
    )


# ------------------------------------------------------------------------ HTTP


@dataclass
class _Fetch:
    client: httpx.AsyncClient
    max_bytes: int
    policy: NetPolicy
    resolver: Resolver

    async def __call__(self, url: str) -> Downloaded:
        try:
            return await self._follow(url)
        except httpx.InvalidURL as exc:
            raise DocumentError(Stage.DOWNLOAD, f"invalid URL {url!r}: {exc}") from exc
        except httpx.ConnectError as exc:
            if _no_such_host(exc):
                host = urlsplit(url).hostname or url
                raise DocumentError(
                    Stage.DOWNLOAD, f"host {host!r} does not exist ({url})"
                ) from exc
            raise TransientError(f"cannot connect to {url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out fetching {url}: {type(exc).__name__}") from exc
        except httpx.DecodingError as exc:
            raise DocumentError(
                Stage.DOWNLOAD, f"undecodable response body from {url}: {exc}"
            ) from exc
        except httpx.TransportError as exc:
            # Connection reset, protocol errors mid-body: try again.
            raise TransientError(
                f"transfer from {url} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _follow(self, url: str) -> Downloaded:
        target = httpx.URL(url)
        for _hop in range(MAX_REDIRECTS + 1):
            host, port = await self._vet(target)
            address = await self._address(host, port)
            token = _PINS.set({(host, port): address})
            try:
                async with self.client.stream("GET", target, follow_redirects=False) as response:
                    if response.is_redirect:
                        target = response.url.join(response.headers["Location"])
                        if target.scheme not in {"http", "https"}:
                            raise DocumentError(
                                Stage.DOWNLOAD,
                                f"unsupported redirect target from {url}: {str(target)!r} "
                                "(only http and https redirects are followed)",
                            )
                        continue
                    return await self._read(url, response)
            finally:
                _PINS.reset(token)
        raise DocumentError(Stage.DOWNLOAD, f"more than {MAX_REDIRECTS} redirects from {url}")

    async def _vet(self, target: httpx.URL) -> tuple[str, int]:
        if target.scheme not in {"http", "https"}:  # pragma: no cover - checked by callers
            raise DocumentError(Stage.DOWNLOAD, f"unsupported URL scheme in {str(target)!r}")
        host = normalize_host(target.raw_host.decode("ascii"))
        if not host:
            raise DocumentError(Stage.DOWNLOAD, f"URL {str(target)!r} names no host")
        self.policy.check_host(host)
        return host, target.port or (443 if target.scheme == "https" else 80)

    async def _address(self, host: str, port: int) -> str:
        """The one address this hop connects to, after vetting every answer."""
        try:
            parse_address(host)
            answers: Sequence[str] = [host]  # a literal address: nothing to resolve
        except ValueError:
            try:
                answers = await self.resolver(host, port)
            except socket.gaierror as exc:
                if exc.errno in _NO_SUCH_HOST:
                    raise DocumentError(Stage.DOWNLOAD, f"host {host!r} does not exist") from exc
                raise TransientError(f"cannot resolve host {host!r}: {exc}") from exc
        return self.policy.pick(host, answers)

    async def _read(self, url: str, response: httpx.Response) -> Downloaded:
        _check_status(response)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_large(url, self.max_bytes, f"declares {int(declared)} bytes")
        body = bytearray()
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) > self.max_bytes:
                raise _too_large(url, self.max_bytes, "sent more")
        return Downloaded(
            data=bytes(body),
            content_type=response.headers.get("Content-Type", ""),
            final_url=str(response.url),
            filename=_filename(response),
        )


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    what = f"HTTP {status} {response.reason_phrase} from {response.url}"
    if status >= 500 or status in _RETRYABLE_STATUS:
        raise TransientError(what)
    raise DocumentError(Stage.DOWNLOAD, what)


def _too_large(url: str, max_bytes: int, detail: str) -> DocumentError:
    return DocumentError(
        Stage.DOWNLOAD, f"document at {url} is larger than the {max_bytes}-byte limit ({detail})"
    )


def _no_such_host(exc: BaseException) -> bool:
    """True if a getaddrinfo 'name does not exist' error is in the cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror) and current.errno in _NO_SUCH_HOST:
            return True
        current = current.__cause__ or current.__context__
    return False


def _filename(response: httpx.Response) -> str:
    disposition = response.headers.get("Content-Disposition")
    if disposition:
        message = Message()
        message["Content-Disposition"] = disposition
        name = message.get_filename()
        if name:
            return PurePosixPath(name.replace("\\", "/")).name
    return PurePosixPath(unquote(response.url.path)).name
