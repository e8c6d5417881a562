"""The ``docpipe`` command, run from a test as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from http_serving import wait_until_answering

from docpipe.local.devstack import free_port


def docpipe_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m docpipe ARGS`` with ``env`` over this process's environment, its
    output captured: tables 250 columns wide (no folded ids), metrics on free ports."""
    return subprocess.run(
        [sys.executable, "-m", "docpipe", *args],
        env={**os.environ, **env, "COLUMNS": "250", "METRICS_PORT": "0", "SDK_METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextmanager
def docpipe_server(env: dict[str, str], *args: str) -> Iterator[str]:
    """``python -m docpipe ARGS --port P`` (``serve``, ``codec-server``) as a process
    of its own on a free port, with ``env`` over this process's environment; yields
    its URL once ``/healthz`` answers, and stops it after the block."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "docpipe", *args, "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/healthz", process, 60, lambda: process.communicate()[0])
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
