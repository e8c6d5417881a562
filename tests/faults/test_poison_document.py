"""A document whose source fails on every try: it spends its retry budget,
lands in the dead letter with its reason, and the rest of its batch completes.
"""

from __future__ import annotations

import time

import pytest
from temporalio.client import Client

from docpipe.client.redrive import plan_redrive
from docpipe.config import Settings
from docpipe.local.workers import LocalWorkers
from docpipe.models import Stage
from docpipe.storage.metadata import open_metadata_store

from .harness import (
    DocServer,
    FaultFigure,
    check_stores,
    record,
    refs_for,
    start_run,
    wait_results,
)

pytestmark = pytest.mark.integration


async def test_poison_documents_are_dead_lettered_and_the_batch_completes(
    client: Client,
    fault_settings: Settings,
    check_settings: Settings,
    workers: LocalWorkers,
    doc_server: DocServer,
) -> None:
    good = doc_server.add_documents(6, "poison")
    always_503 = doc_server.add_poison("503", "poison")
    always_reset = doc_server.add_poison("reset", "poison")
    # One poison document in each batch, among healthy ones.
    documents = refs_for([*good[:3], always_503, *good[3:], always_reset])
    poison = {d.document_id: d.source for d in documents if d.source in (always_503, always_reset)}

    began = time.monotonic()
    run = await start_run(client, fault_settings, documents, tag="poison", batch_size=4)
    outcomes = await wait_results(client, run)
    elapsed = time.monotonic() - began

    check = await check_stores(check_settings, run, outcomes, expect_failed=frozenset(poison))
    record(
        FaultFigure(
            "poison documents (always 503 / connection reset)",
            check.expected,
            check.completed,
            len(check.lost),
            len(check.duplicated),
            note=f"{len(poison)} dead-lettered after {fault_settings.download_attempts} tries "
            f"each; run took {elapsed:.1f} s",
        )
    )
    assert not check.lost and not check.duplicated, check.problems()
    assert check.completed == len(good), "the healthy documents of both batches completed"

    # Each poison source was tried exactly its budget of times, then given up on.
    for source in poison.values():
        assert doc_server.hits_for(source) == fault_settings.download_attempts, source
    for row in check.failed.values():
        assert row["failure_stage"] == Stage.DOWNLOAD
        assert (
            f"gave up after {fault_settings.download_attempts} attempts" in row["failure_reason"]
        ), row["failure_reason"]
    assert "503" in check.failed[_id_of(poison, always_503)]["failure_reason"]

    # The dead letter lists exactly them, with their reasons, ready to be re-driven.
    async with open_metadata_store(check_settings) as metadata:
        dead_letter = await metadata.failures(run_id=run.run_id)
    assert {row["document_id"] for row in dead_letter} == set(poison)
    assert all(row["reason"] for row in dead_letter)
    plan = plan_redrive(dead_letter)
    assert {d.source for d in plan.documents} == set(poison.values())
    workers.check_alive()


def _id_of(poison: dict[str, str], source: str) -> str:
    return next(document_id for document_id, s in poison.items() if s == source)
