"""The embedded stack: real servers, reachable through the env it hands out."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from docpipe.local.devstack import DevStack, ManagedProcess, MotoS3Server, ServerStartError
from docpipe.models import DocumentOutcome, Status
from docpipe.storage import LocalObjectStore, open_object_store
from docpipe.storage.metadata import MetadataStore
from docpipe.storage.vectors import VectorStore

pytestmark = pytest.mark.integration

ENV_KEYS = {
    "TEMPORAL_HOST",
    "S3_ENDPOINT",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "S3_BUCKET",
    "VECTOR_DB_URL",
    "METADATA_DB_HOST",
    "METADATA_DB_PORT",
    "METADATA_DB_NAME",
    "METADATA_DB_USER",
    "METADATA_DB_PASSWORD",
}


def test_env_names_every_server(devstack: DevStack) -> None:
    env = devstack.env
    assert ENV_KEYS <= env.keys()
    assert env["S3_ENDPOINT"].startswith("http://127.0.0.1:")
    settings = devstack.settings()
    assert settings.temporal_host == env["TEMPORAL_HOST"]
    assert settings.metadata_db_port == int(env["METADATA_DB_PORT"])
    assert devstack.started_in_s is not None and devstack.started_in_s < 30


async def test_temporal_accepts_clients(devstack: DevStack) -> None:
    client = await Client.connect(devstack.env["TEMPORAL_HOST"])
    assert await client.service_client.check_health()


def test_postgres_checks_the_password(devstack: DevStack) -> None:
    conninfo = devstack.settings().metadata_db_conninfo
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("docuser",)
    wrong = devstack.settings(metadata_db_password="wrong").metadata_db_conninfo
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)


def test_chroma_and_s3_answer_http(devstack: DevStack) -> None:
    assert httpx.get(f"{devstack.env['VECTOR_DB_URL']}/api/v2/heartbeat").status_code == 200
    assert httpx.get(f"{devstack.env['S3_ENDPOINT']}/moto-api/").status_code == 200


def test_servers_log_under_the_data_dir(devstack: DevStack) -> None:
    for name in ("temporal", "postgres", "chroma", "s3"):
        assert devstack.log_path(name).is_file(), name


# ------------------------------------------------------- managed processes


def test_a_server_that_exits_early_reports_its_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        "broken", ["sh", "-c", "echo 'FATAL: port in use' >&2; exit 3"], tmp_path / "broken.log"
    )
    process.start()
    with pytest.raises(ServerStartError) as caught:
        process.wait_ready(lambda: False, timeout_s=10)
    message = str(caught.value)
    assert "exited with code 3" in message
    assert "FATAL: port in use" in message


def test_a_server_that_never_gets_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    process = ManagedProcess(
        "stuck", ["sh", "-c", "echo waiting; sleep 60"], tmp_path / "stuck.log"
    )
    process.start()
    try:
        with pytest.raises(ServerStartError, match=r"not ready after 0.3 s[\s\S]*waiting"):
            process.wait_ready(lambda: False, timeout_s=0.3)
    finally:
        process.stop()
    assert not process.running


def test_stop_takes_down_the_whole_process_group(tmp_path: Path) -> None:
    # The leader ignores SIGTERM and has a child: both must still go.
    script = "trap '' TERM; sleep 60 & wait"
    process = ManagedProcess("group", ["sh", "-c", script], tmp_path / "group.log")
    process.start()
    assert process.process is not None
    pgid = process.process.pid
    process.stop(grace_s=0.5)
    deadline = time.monotonic() + 2  # SIGKILL is delivered, not instant
    while live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_members(pgid) == []


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies, which an
    init process reaps whenever it gets to it, hold nothing and are ignored)."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(stat_file.parent.name))
    return members


def test_stop_uses_the_servers_own_signal(tmp_path: Path) -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: sys.exit(7)); print('listen' + 'ing', flush=True); time.sleep(60)"
    process = ManagedProcess(
        "int", [sys.executable, "-c", code], tmp_path / "int.log", stop_signal=signal.SIGINT
    )
    process.start()
    process.wait_ready(lambda: "listening" in (tmp_path / "int.log").read_text(), timeout_s=10)
    popen = process.process
    process.stop()
    assert popen is not None and popen.returncode == 7


# ------------------------------------------------------- a persistent stack


async def test_a_persistent_local_stack_keeps_its_data_across_restarts(stack_dir: Path) -> None:
    """`docpipe run` with a data dir: rows and objects survive a restart."""
    data_dir = stack_dir / "stack"
    outcome = DocumentOutcome(
        document_id="kept", source="a.txt", row_number=1, status=Status.SUCCEEDED, run_id="r1"
    )
    async with DevStack(data_dir, persistent=True, object_store="local") as stack:
        settings = stack.settings()
        assert settings.s3_endpoint == (data_dir / "objects").resolve().as_uri()
        async with open_object_store(settings) as store:
            assert isinstance(store, LocalObjectStore)
            await store.put("raw/kept", b"bytes")
        async with MetadataStore.open(settings) as metadata:
            await metadata.migrate()
            await metadata.upsert_outcomes([outcome])
    assert (data_dir / "temporal" / "temporal.db").is_file()

    async with DevStack(data_dir, persistent=True, object_store="local") as stack:
        settings = stack.settings()
        async with open_object_store(settings) as store:
            assert await store.get("raw/kept") == b"bytes"
        async with MetadataStore.open(settings) as metadata:
            assert await metadata.migrate() == []
            row = await metadata.get("kept")
            assert row is not None and row["run_id"] == "r1"

    stack.remove_data()
    assert not (data_dir / "postgres").exists()
    assert not (data_dir / "objects").exists()
    assert stack.log_path("postgres").is_file(), "logs are kept"


def test_postgres_keeps_working_when_the_data_dir_is_private(devstack: DevStack) -> None:
    """As root, PostgreSQL runs as another user; a private data_dir must not
    cut it off from its files (its checkpointer opens them by absolute path)."""
    assert devstack.postgres is not None
    devstack.data_dir.chmod(0o700)
    with psycopg.connect(
        host=str(devstack.postgres.socket_dir),
        port=devstack.postgres.port,
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute("CHECKPOINT")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_picked_port_that_is_taken_meanwhile_is_replaced(stack_dir: Path) -> None:
    """Free ports are picked before the servers bind them; a loser of that race retries."""
    stack = DevStack(stack_dir)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        first_port = iter([taken])

        server = stack._launch(  # the retry is internal to start()
            "s3", lambda port: MotoS3Server(stack, port or next(first_port, None))
        )
    try:
        assert server.port != taken
        assert server.process.running
        assert "Address already in use" in stack.log_path("s3").read_text()
    finally:
        server.stop()


def test_a_port_given_by_the_caller_is_not_replaced(stack_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        stack = DevStack(stack_dir, s3_port=taken)
        with pytest.raises(ServerStartError, match="Address already in use"):
            stack._launch("s3", lambda port: MotoS3Server(stack, port))


# ------------------------------------------------- one server down and back


async def test_a_restarted_server_comes_back_on_its_port_with_its_data(stack_dir: Path) -> None:
    """Fault tests stop one server and start it again: clients find it where
    they left it, with its rows and vectors, even in a throw-away stack."""
    outcome = DocumentOutcome(
        document_id="survivor", source="a.txt", row_number=1, status=Status.SUCCEEDED, run_id="r"
    )
    async with DevStack(stack_dir) as stack:
        settings = stack.settings()
        assert stack.postgres is not None and stack.chroma is not None
        ports = (stack.postgres.port, stack.chroma.port)
        async with MetadataStore.open(settings) as metadata:
            await metadata.migrate()
            await metadata.upsert_outcomes([outcome])
        async with VectorStore.open(settings) as vectors:
            await vectors.upsert_document("survivor", ["kept"], np.ones((1, 4), np.float32))

        await asyncio.to_thread(stack.stop_server, "postgres")
        with pytest.raises(psycopg.OperationalError):
            await psycopg.AsyncConnection.connect(settings.metadata_db_conninfo, connect_timeout=2)
        assert await asyncio.to_thread(stack.start_server, "postgres") < 30
        assert await asyncio.to_thread(stack.restart_server, "chroma") < 30

        assert (stack.postgres.port, stack.chroma.port) == ports
        async with MetadataStore.open(settings) as metadata:
            row = await metadata.get("survivor")
            assert row is not None and row["run_id"] == "r"
        async with VectorStore.open(settings) as vectors:
            assert await vectors.count_for("survivor") == 1

        # State held in memory would be lost: refused unless the caller accepts that.
        for in_memory in ("s3", "temporal"):
            with pytest.raises(ValueError, match="in memory"):
                stack.stop_server(in_memory)  # type: ignore[arg-type]
        assert stack.s3 is not None and stack.s3.process.running


async def test_a_persistent_temporal_server_restarts_with_its_workflows(stack_dir: Path) -> None:
    """``--db-filename`` keeps history: a workflow started before the restart is
    still there after it. Called from a running event loop on purpose: the
    readiness check opens a client of its own."""
    async with DevStack(stack_dir, persistent=True, object_store="local") as stack:
        assert stack.temporal is not None
        client = await Client.connect(stack.temporal.address)
        # No worker polls this queue: the workflow just waits, recorded in SQLite.
        handle = await client.start_workflow(
            "NobodyRunsThis", id="kept-across-restart", task_queue="nobody-polls"
        )
        port = stack.temporal.port
        stack.restart_server("temporal")  # blocks this loop: nothing else runs in it
        assert stack.temporal.port == port
        description = await client.get_workflow_handle(handle.id).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
    stack.remove_data()  # PostgreSQL's cluster may live outside data_dir (as root)
