"""Fetch a document's bytes from an http(s) URL, an s3:// object or a local file.

Pure of Temporal: the IO activity wraps :func:`download` and turns its two
error kinds into the document's fate. :class:`DocumentError` means the source
itself is bad (404, no such host, too large, not a file) and retrying cannot
help; :class:`TransientError` means "try again later" (5xx, 408/429,
timeouts, refused connections).

Network safety (see :mod:`docpipe.activities.io.netguard` for the policy and
:mod:`docpipe.activities.io.outbound` for the vetting path every outbound
request takes): only http and https are fetched over the network; every
request -- the first and each redirect hop, followed here one by one -- is
vetted (host lists, every DNS answer, no loopback, private, link-local/cloud
metadata, multicast, reserved... unless configured) and connected to the vetted
address itself, over a connection pooled by that address. An allowed internal
network counts only for the hops after a source that named it.

URLs in what comes back -- failure reasons, ``final_url`` -- are redacted
(:func:`docpipe.redact.redact_url`): a presigned query or ``user:pass@`` in a
source never reaches a stored reason, an outcome or a log.

The size cap is enforced while streaming: a server can omit or lie about
Content-Length, and a compressed body can expand far beyond it, so bytes are
counted as they arrive (after decoding) and the transfer stops at the cap.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from email.message import Message
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

from docpipe.activities.io.downloaded import Downloaded
from docpipe.activities.io.local_files import file_url_path, is_windows_drive, read_local
from docpipe.activities.io.netguard import NetPolicy
from docpipe.activities.io.outbound import (
    PIN,
    ROUTE,
    OutboundClient,
    Pin,
    Resolver,
    Route,
    require_vetting,
    system_resolver,
)
from docpipe.config import Settings
from docpipe.errors import DocumentError, TransientError
from docpipe.models import Stage
from docpipe.redact import redact_text, redact_url

__all__ = ["Downloaded", "Resolver", "download", "make_http_client", "system_resolver"]

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

S3Reader = Callable[[str, int], Awaitable["Downloaded"]]
"""``(s3 url, max_bytes) -> Downloaded``: see :mod:`docpipe.activities.io.s3_source`."""


def _version() -> str:
    try:
        return metadata.version("docpipe")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"


class DownloadClient(OutboundClient):
    """The IO worker's :class:`OutboundClient`, which also carries the download settings.

    httpx has only per-phase timeouts (connect, read, ...); a server that
    drips one byte per read-timeout would never trip them, so
    :func:`download` wraps each transfer in ``total_timeout_s`` as well.
    ``policy`` is what downloads are vetted by unless one is passed in.
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
    """The IO worker's shared HTTP client (downloads and webhooks): pooled, bounded
    timeouts, every request vetted and pinned (:mod:`docpipe.activities.io.outbound`).

    It carries the settings' download :class:`NetPolicy`, which :func:`download`
    uses by default; a request that names no route (see ``ROUTE``) is held to
    public addresses only. ``network_backend``: what connections are made with (tests).
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
        limits=limits,
        network_backend=network_backend,
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
    ``client``: an :class:`OutboundClient` (:func:`make_http_client`); a plain
    ``httpx.AsyncClient`` is refused for http(s) sources, as it would connect unvetted.
    ``total_timeout_s``: a cap on the whole HTTP transfer, on top of the
    client's per-phase timeouts; defaults to the one a :class:`DownloadClient` carries.
    ``policy``: where HTTP downloads may go; defaults to the one a
    :class:`DownloadClient` carries (built from the settings), else the strict
    default (public addresses only).
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
            f"(DOWNLOAD_SCHEMES: {', '.join(sorted(schemes)) or 'none'}): {redact_url(source)}",
        )
    if scheme == "s3":
        if s3 is None:
            raise DocumentError(
                Stage.DOWNLOAD,
                f"s3:// sources need the worker's S3 object store: {redact_url(source)}",
            )
        return await s3(source, max_bytes)
    if scheme in {"http", "https"}:
        require_vetting(client, "downloading over HTTP")
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
                f"download of {redact_url(source)} took longer than {total_timeout_s:g} s"
            ) from exc
    if scheme == "file" or scheme == "" or is_windows_drive(scheme):
        path = file_url_path(source) if scheme == "file" else Path(source)
        return await asyncio.to_thread(read_local, path, max_bytes, local_roots)
    raise DocumentError(
        Stage.DOWNLOAD,
        f"unsupported URL scheme {scheme!r} in {redact_url(source)!r} "
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
        shown = redact_url(url)
        try:
            return await self._follow(url)
        except httpx.InvalidURL as exc:
            raise DocumentError(
                Stage.DOWNLOAD, f"invalid URL {shown!r}: {redact_text(str(exc))}"
            ) from exc
        except httpx.ConnectError as exc:
            if _no_such_host(exc):
                host = urlsplit(url).hostname or shown
                raise DocumentError(
                    Stage.DOWNLOAD, f"host {host!r} does not exist ({shown})"
                ) from exc
            raise TransientError(f"cannot connect to {shown}: {redact_text(str(exc))}") from exc
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out fetching {shown}: {type(exc).__name__}") from exc
        except httpx.DecodingError as exc:
            raise DocumentError(
                Stage.DOWNLOAD, f"undecodable response body from {shown}: {redact_text(str(exc))}"
            ) from exc
        except httpx.TransportError as exc:
            # Connection reset, protocol errors mid-body: try again.
            raise TransientError(
                f"transfer from {shown} failed: {type(exc).__name__}: {redact_text(str(exc))}"
            ) from exc

    async def _follow(self, url: str) -> Downloaded:
        """Each hop is its own request, vetted by the transport under ``route``: the
        source's policy for the first hop, then only the allowed networks that the
        first hop's own address was admitted by (a redirect from a public page
        cannot reach into them)."""
        target = httpx.URL(url)
        route = Route(self.policy, self.resolver)
        for hop in range(MAX_REDIRECTS + 1):
            async with self.client.stream(
                "GET", target, follow_redirects=False, extensions={ROUTE: route}
            ) as response:
                if hop == 0:
                    pin: Pin = response.extensions[PIN]
                    route = Route(self.policy.for_redirects(pin.address, pin.port), self.resolver)
                if response.is_redirect:
                    target = response.url.join(response.headers["Location"])
                    if target.scheme not in {"http", "https"}:
                        raise DocumentError(
                            Stage.DOWNLOAD,
                            f"unsupported redirect target from {redact_url(url)}: "
                            f"{redact_url(str(target))!r} "
                            "(only http and https redirects are followed)",
                        )
                    continue
                return await self._read(redact_url(url), response)
        raise DocumentError(
            Stage.DOWNLOAD, f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}"
        )

    async def _read(self, shown: str, response: httpx.Response) -> Downloaded:
        _check_status(response)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_large(shown, self.max_bytes, f"declares {int(declared)} bytes")
        body = bytearray()
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) > self.max_bytes:
                raise _too_large(shown, self.max_bytes, "sent more")
        return Downloaded(
            data=bytes(body),
            content_type=response.headers.get("Content-Type", ""),
            final_url=redact_url(str(response.url)),
            filename=_filename(response),
        )


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    what = f"HTTP {status} {response.reason_phrase} from {redact_url(str(response.url))}"
    if status >= 500 or status in _RETRYABLE_STATUS:
        raise TransientError(what)
    raise DocumentError(Stage.DOWNLOAD, what)


def _too_large(shown: str, max_bytes: int, detail: str) -> DocumentError:
    return DocumentError(
        Stage.DOWNLOAD, f"document at {shown} is larger than the {max_bytes}-byte limit ({detail})"
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
