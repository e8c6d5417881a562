"""HTTP servers in tests: one of the test's own in a thread, or a process's, waited for."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` on a free port of 127.0.0.1 until the block ends; yields its base URL."""
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()


def wait_until_answering(
    url: str, process: subprocess.Popen, timeout_s: float, output: Callable[[], str]
) -> None:
    """Until a GET of ``url`` answers 200. Fails with ``output()`` (what the process
    wrote) as soon as the process exits, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset, or an error status: not ready yet
            pass
        if process.poll() is not None:
            raise AssertionError(f"{process.args} exited {process.returncode}:\n{output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout_s:g} s")
        time.sleep(0.2)
