"""One server as a child process we own: its own process group, its output in a log.

Every server of the local stack runs in a new process group with its output
in ``<data_dir>/logs/<name>.log``. Start waits until the server answers a real
request, and fails with the log's tail if it does not or if the process
exits first; stop sends the server's graceful signal to the whole group (the
server and whatever it forked), then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docpipe.local.devstack.users import OsUser

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 45.0
STOP_GRACE_S = 10.0
_LOG_TAIL_LINES = 40


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries its log's tail."""


def find_executable(name: str) -> Path:
    """A console script of this environment (venv bin dir first), else PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ServerStartError(
        f"cannot find the {name!r} executable (looked in {candidates[0].parent} and PATH); "
        "install docpipe with the [local] and [io] extras"
    )


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` of a log file, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def user_kwargs(user: OsUser | None) -> dict[str, object]:
    """``subprocess`` arguments that run a child as ``user`` (nothing when None)."""
    if user is None:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


@dataclass
class ManagedProcess:
    """One server process: its own process group, output to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM
    env: Mapping[str, str] | None = None
    user: OsUser | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        with open(self.log_path, "ab") as log_file:
            log_file.write(
                f"--- {time.strftime('%F %T')} starting: {' '.join(self.argv)}\n".encode()
            )
            log_file.flush()
            # A new process group: stop() signals the server and every child it
            # forked, and Ctrl-C in a terminal reaches us, not the servers.
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0,
                **user_kwargs(self.user),
            )

    def wait_ready(self, check: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll ``check`` until it is true; fail early if the process exits."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise self.error(f"exited with code {code} before it was ready")
            if check():
                return
            if time.monotonic() > deadline:
                raise self.error(f"was not ready after {timeout_s:g} s")
            time.sleep(0.1)

    def error(self, what: str) -> ServerStartError:
        return ServerStartError(
            f"{self.name} {what}.\ncommand: {' '.join(self.argv)}\n"
            f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Graceful signal to the group, SIGKILL after ``grace_s``; idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, self.stop_signal)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s; killing it", self.name, grace_s)
        # Children may outlive a leader that exited on its own; take the group down.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
