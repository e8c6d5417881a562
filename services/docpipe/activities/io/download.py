"""Fetch a document's bytes from an http(s) URL or a local file.

Pure of Temporal: the IO activity wraps :func:`download` and turns its two
error kinds into the document's fate. :class:`DocumentError` means the source
itself is bad (404, no such host, too large, not a file) and retrying cannot
help; :class:`TransientError` means "try again later" (5xx, 408/429,
timeouts, refused connections).

The size cap is enforced while streaming: a server can omit or lie about
Content-Length, and a compressed body can expand far beyond it, so bytes are
counted as they arrive (after decoding) and the transfer stops at the cap.
"""

from __future__ import annotations

import asyncio
import errno
import mimetypes
import os
import socket
import stat
from dataclasses import dataclass
from email.message import Message
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpx

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

    def __init__(self, *, total_timeout_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.total_timeout_s = total_timeout_s


def make_http_client(settings: Settings) -> DownloadClient:
    """The process's shared HTTP client: pooled, with bounded timeouts."""
    timeout = httpx.Timeout(
        connect=settings.download_connect_timeout_s,
        read=settings.download_read_timeout_s,
        write=settings.download_read_timeout_s,
        # Waiting for a free pooled connection is bounded like connecting.
        pool=settings.download_connect_timeout_s,
    )
    return DownloadClient(
        total_timeout_s=settings.download_total_timeout_s,
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_KEEPALIVE
        ),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": f"docpipe/{_version()}"},
    )


async def download(
    source: str,
    client: httpx.AsyncClient,
    *,
    max_bytes: int,
    local_root: Path | None = None,
    total_timeout_s: float | None = None,
) -> Downloaded:
    """Fetch ``source`` (http(s) URL, file:// URL or plain path), at most ``max_bytes``.

    ``local_root``: if set, local sources must resolve (symlinks included)
    inside it, and relative paths are taken relative to it.
    ``total_timeout_s``: a cap on the whole HTTP transfer, on top of the
    client's per-phase timeouts; defaults to the one a :class:`DownloadClient`
    carries (none for a plain ``httpx.AsyncClient``).
    """
    source = source.strip()
    if not source:
        raise DocumentError(Stage.DOWNLOAD, "unsupported URL scheme: the source is empty")
    scheme = urlsplit(source).scheme.lower()
    if scheme in {"http", "https"}:
        if total_timeout_s is None:
            total_timeout_s = getattr(client, "total_timeout_s", None)
        if total_timeout_s is None:
            return await _download_http(source, client, max_bytes)
        try:
            async with asyncio.timeout(total_timeout_s):
                return await _download_http(source, client, max_bytes)
        except TimeoutError as exc:
            raise TransientError(
                f"download of {source} took longer than {total_timeout_s:g} s"
            ) from exc
    if scheme == "file":
        return await asyncio.to_thread(_read_local, _file_url_path(source), max_bytes, local_root)
    if scheme == "" or _is_windows_drive(scheme):
        return await asyncio.to_thread(_read_local, Path(source), max_bytes, local_root)
    raise DocumentError(
        Stage.DOWNLOAD,
        f"unsupported URL scheme {scheme!r} in {source!r} (supported: http, https, file, local paths)",
    )


# ------------------------------------------------------------------------ HTTP


async def _download_http(url: str, client: httpx.AsyncClient, max_bytes: int) -> Downloaded:
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            _check_status(response)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(url, max_bytes, f"declares {int(declared)} bytes")
            body = bytearray()
            async for piece in response.aiter_bytes():
                body += piece
                if len(body) > max_bytes:
                    raise _too_large(url, max_bytes, "sent more")
            return Downloaded(
                data=bytes(body),
                content_type=response.headers.get("Content-Type", ""),
                final_url=str(response.url),
                filename=_filename(response),
            )
    except httpx.TooManyRedirects as exc:
        raise DocumentError(
            Stage.DOWNLOAD, f"more than {MAX_REDIRECTS} redirects from {url}"
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        # e.g. a redirect to ftp:// or file:// (never followed to the local disk).
        raise DocumentError(
            Stage.DOWNLOAD, f"unsupported redirect target from {url}: {exc}"
        ) from exc
    except httpx.InvalidURL as exc:
        raise DocumentError(Stage.DOWNLOAD, f"invalid URL {url!r}: {exc}") from exc
    except httpx.ConnectError as exc:
        if _no_such_host(exc):
            host = urlsplit(url).hostname or url
            raise DocumentError(Stage.DOWNLOAD, f"host {host!r} does not exist ({url})") from exc
        raise TransientError(f"cannot connect to {url}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise TransientError(f"timed out fetching {url}: {type(exc).__name__}") from exc
    except httpx.DecodingError as exc:
        raise DocumentError(Stage.DOWNLOAD, f"undecodable response body from {url}: {exc}") from exc
    except httpx.TransportError as exc:
        # Connection reset, protocol errors mid-body, proxy trouble: try again.
        raise TransientError(f"transfer from {url} failed: {type(exc).__name__}: {exc}") from exc


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


# ----------------------------------------------------------------------- Local


def _is_windows_drive(scheme: str) -> bool:
    return len(scheme) == 1 and os.name == "nt"


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in {"", "localhost"}:
        raise DocumentError(Stage.DOWNLOAD, f"file URL names a remote host {parts.netloc!r}: {url}")
    return Path(url2pathname(parts.path))


def _read_local(path: Path, max_bytes: int, local_root: Path | None) -> Downloaded:
    """Read a local file (blocking; runs in a thread)."""
    shown = str(path)
    if local_root is not None:
        root = local_root.resolve()
        resolved = (root / path).resolve()  # an absolute path replaces root here
        if not resolved.is_relative_to(root):
            raise DocumentError(
                Stage.DOWNLOAD, f"local path {shown!r} is outside the allowed root {str(root)!r}"
            )
    else:
        resolved = path.resolve()
    try:
        # stat before open: opening a FIFO or device could block or never end.
        info = resolved.stat()
        if stat.S_ISDIR(info.st_mode):
            raise DocumentError(Stage.DOWNLOAD, f"{shown!r} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise DocumentError(Stage.DOWNLOAD, f"{shown!r} is not a regular file")
        if info.st_size > max_bytes:
            raise DocumentError(
                Stage.DOWNLOAD,
                f"file {shown!r} is larger than the {max_bytes}-byte limit ({info.st_size} bytes)",
            )
        with open(resolved, "rb") as handle:
            # One byte past the cap: the file may have grown since stat.
            data = handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise DocumentError(Stage.DOWNLOAD, f"file {shown!r} does not exist") from exc
    except PermissionError as exc:
        raise DocumentError(Stage.DOWNLOAD, f"file {shown!r} is not readable") from exc
    except OSError as exc:
        if exc.errno in {errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EISDIR}:
            raise DocumentError(Stage.DOWNLOAD, f"cannot open {shown!r}: {exc.strerror}") from exc
        raise TransientError(f"cannot read {shown!r}: {exc}") from exc
    if len(data) > max_bytes:
        raise DocumentError(
            Stage.DOWNLOAD, f"file {shown!r} is larger than the {max_bytes}-byte limit"
        )
    content_type, _encoding = mimetypes.guess_type(resolved.name)
    return Downloaded(
        data=data,
        content_type=content_type or "",
        final_url=resolved.as_uri(),
        filename=resolved.name,
    )
