"""A server goes away mid-run and comes back: activities retry with backoff,
the workers reconnect, and the run completes with every document exactly once.

PostgreSQL, Chroma and Temporal are really stopped and started again (their
data is on disk: the stack is persistent). S3 is moto, which holds objects in
memory only, so its outage is made at the network instead (see
``latency_proxy``): that is what a persistent S3 restarting looks like to a
client, whereas restarting moto would also delete every object.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from temporalio.client import Client

from docpipe import steps
from docpipe.config import Settings
from docpipe.local.devstack import DevStack
from docpipe.local.workers import LocalWorkers
from docpipe.models import DocumentOutcome

from .harness import (
    DocServer,
    FaultFigure,
    Run,
    activity_history,
    check_stores,
    pending_activities,
    record,
    refs_for,
    start_run,
    wait_results,
    wait_until_running,
)
from .latency_proxy import LatencyProxy

pytestmark = pytest.mark.integration

OUTAGE_S = 6.0
"""How long each server stays down, at least (longer than one retry interval)."""


@dataclass
class Outage:
    """Unix times: server down, being started again, answering again."""

    down_at: float
    restarting_at: float
    back_at: float = 0.0


@dataclass
class Outages:
    """A run through a server's outage, and the checks after it, on this package's
    workers, with documents from its document server."""

    client: Client
    settings: Settings
    """What the workers see (S3 through the proxy)."""
    check_settings: Settings
    """The test's own view of the stores."""
    workers: LocalWorkers
    doc_server: DocServer

    async def run(
        self,
        *,
        tag: str,
        down: Callable[[], None],
        up: Callable[[], object],
        begins_at: str,
        hits: str | None,
    ) -> tuple[Run, list[DocumentOutcome], Outage]:
        """Start a run; when ``begins_at`` runs, take the server down until ``hits``
        (the step that needs it) has run into the outage and OUTAGE_S has passed;
        then bring it back. Returns the run, its outcomes and the outage's times."""
        documents = refs_for(self.doc_server.add_documents(8, tag))
        run = await start_run(self.client, self.settings, documents, tag=tag, batch_size=4)
        await wait_until_running(self.client, run, begins_at)
        down_at = time.time()
        await asyncio.to_thread(down)
        if hits is not None:
            await wait_until_running(self.client, run, hits)
        await asyncio.sleep(max(0.0, down_at + OUTAGE_S - time.time()))
        outage = Outage(down_at, restarting_at=time.time())
        await asyncio.to_thread(up)
        outage.back_at = time.time()
        outcomes = await wait_results(self.client, run)
        return run, outcomes, outage

    async def assert_exactly_once(
        self,
        run: Run,
        outcomes: list[DocumentOutcome],
        *,
        fault: str,
        step: str,
        outage: Outage,
        min_attempts: int = 1,
    ) -> None:
        """Every document once in every store, ``step`` (which needs the server)
        completed only after the server came back, and every worker still alive;
        records the figures."""
        check = await check_stores(self.check_settings, run, outcomes)
        records = [
            r
            for workflow_id in run.workflow_ids
            for r in (await activity_history(self.client, workflow_id)).values()
            if r.activity_type == step
        ]
        attempts = sorted(r.attempt for r in records)
        completions = [r.completed_at for r in records if r.completed_at is not None]
        record(
            FaultFigure(
                fault,
                check.expected,
                check.completed,
                len(check.lost),
                len(check.duplicated),
                recovered_s=max(completions, default=outage.back_at) - outage.back_at,
                note=f"down {outage.back_at - outage.down_at:.1f} s; {step} attempts {attempts}",
            )
        )
        assert not check.lost and not check.duplicated, check.problems()
        assert check.completed == len(run.documents)
        assert len(completions) == len(run.workflow_ids), f"every batch's {step} completed"
        assert min(completions) > outage.restarting_at, f"{step} waited for the server"
        assert min(attempts) >= min_attempts, f"{step} failed and was retried: {attempts}"
        self.workers.check_alive()


@pytest.fixture
def outages(client, fault_settings, check_settings, workers, doc_server) -> Outages:
    return Outages(client, fault_settings, check_settings, workers, doc_server)


@pytest.mark.parametrize(
    ("server", "hits", "min_attempts"),
    [
        # The first write to PostgreSQL after the text is prepared is the chunks'
        # full-text index, stored with the vectors; the IO worker's pool waits for a
        # connection (and reconnects), within one attempt or over Temporal's retries.
        ("postgres", steps.STORE_VECTOR_EMBEDDINGS, 1),
        # Chroma's client fails at once: Temporal retries the step with backoff.
        ("chroma", steps.STORE_VECTOR_EMBEDDINGS, 2),
    ],
)
async def test_a_restarted_database_loses_and_duplicates_nothing(
    server: str, hits: str, min_attempts: int, outages: Outages, fault_stack: DevStack
) -> None:
    run, outcomes, outage = await outages.run(
        tag=f"restart-{server}",
        down=lambda: fault_stack.stop_server(server),  # type: ignore[arg-type]
        up=lambda: fault_stack.start_server(server),  # type: ignore[arg-type]
        begins_at=steps.PREPARE_TEXT,  # down before the step that needs it
        hits=hits,
    )
    await outages.assert_exactly_once(
        run,
        outcomes,
        fault=f"{server} stopped and started again mid-run",
        step=hits,
        outage=outage,
        min_attempts=min_attempts,
    )


async def test_an_s3_outage_loses_and_duplicates_nothing(
    outages: Outages, s3_proxy: LatencyProxy
) -> None:
    """Cut while the CPU step reads and writes its objects (slowed, so that its
    requests are certainly in flight): they fail, and so do the next steps'
    until S3 is back."""

    def down() -> None:
        s3_proxy.cut()
        s3_proxy.latency_s = 0.0  # it only had to keep requests in flight until the cut

    s3_proxy.latency_s = 0.5
    try:
        run, outcomes, outage = await outages.run(
            tag="outage-s3",
            down=down,
            up=s3_proxy.restore,
            begins_at=steps.PREPARE_TEXT,
            hits=None,  # every later step needs S3: the outage is simply held
        )
    finally:
        s3_proxy.latency_s = 0.0
    await outages.assert_exactly_once(
        run,
        outcomes,
        fault="S3 unreachable mid-run (connections reset, then refused)",
        step=steps.PREPARE_TEXT,
        outage=outage,
    )


async def test_a_restarted_temporal_server_finishes_the_run(
    outages: Outages, fault_stack: DevStack
) -> None:
    """History is in SQLite (``--db-filename``): workers and this test's client
    reconnect to the same port and the workflows carry on where they were."""
    run, outcomes, outage = await outages.run(
        tag="restart-temporal",
        down=lambda: fault_stack.stop_server("temporal"),
        up=lambda: fault_stack.start_server("temporal"),
        begins_at=steps.PREPARE_TEXT,
        hits=None,  # nothing can be observed while the server is down
    )
    await outages.assert_exactly_once(
        run,
        outcomes,
        fault="Temporal server stopped and started again mid-run",
        step=steps.STORE_METADATA,
        outage=outage,
    )
    assert not await pending_activities(outages.client, run.workflow_ids)
