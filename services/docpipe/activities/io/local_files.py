"""Local-file sources: read only inside the folders the worker was given.

A CSV row is data, not an instruction: a row ``/proc/self/environ`` or
``file:///etc/passwd`` must not turn the IO worker (whose environment holds the
S3 and database secrets) into a file server. So a worker reads local files only
inside its ``LOCAL_SOURCE_ROOT`` folders and refuses every local source when it
has none -- the images set none; ``docpipe run`` gives its workers the CSV's own
folder. Paths are resolved (symlinks included) before the check, so ``..`` and
a link pointing out of a root are refused too.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from docpipe.activities.io.downloaded import Downloaded
from docpipe.errors import DocumentError, TransientError
from docpipe.models import Stage

NO_ROOT_REASON = (
    "local files are not readable on this worker: set LOCAL_SOURCE_ROOT to the "
    "folder(s) documents may be read from"
)


def is_windows_drive(scheme: str) -> bool:
    return len(scheme) == 1 and os.name == "nt"


def file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in {"", "localhost"}:
        raise DocumentError(Stage.DOWNLOAD, f"file URL names a remote host {parts.netloc!r}: {url}")
    return Path(url2pathname(parts.path))


def confine(path: Path, roots: Sequence[Path]) -> Path:
    """The resolved file ``path`` names, if it lies inside one of ``roots``.

    A relative path is taken relative to the first root. No roots: nothing is
    readable (the safe default, see the module docstring).
    """
    if not roots:
        raise DocumentError(Stage.DOWNLOAD, f"{NO_ROOT_REASON}; refused {str(path)!r}")
    resolved_roots = [root.resolve() for root in roots]
    resolved = (resolved_roots[0] / path).resolve()  # an absolute path replaces the root
    if any(resolved.is_relative_to(root) for root in resolved_roots):
        return resolved
    allowed = ", ".join(repr(str(root)) for root in resolved_roots)
    noun = "root" if len(resolved_roots) == 1 else "roots"
    raise DocumentError(
        Stage.DOWNLOAD, f"local path {str(path)!r} is outside the allowed {noun} {allowed}"
    )


def read_local(path: Path, max_bytes: int, roots: Sequence[Path]) -> Downloaded:
    """Read a local file inside ``roots``, at most ``max_bytes`` (blocking; run in a thread)."""
    shown = str(path)
    resolved = confine(path, roots)
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
