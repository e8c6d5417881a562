"""Admission control: the starter keeps as many batches in flight as the workers drain."""

from __future__ import annotations

import pytest

from docpipe.client.admission import AdmissionPolicy, batches_to_admit

POLICY = AdmissionPolicy(max_in_flight=20, min_in_flight=2, target_backlog=4, ramp=2, initial=4)
QUIET = {"cpu": 0, "gpu": 1, "io": 0}
BUSY = {"cpu": 0, "gpu": 9, "io": 0}


def test_before_any_statistics_it_starts_a_small_first_window():
    assert batches_to_admit(POLICY, in_flight=0, waiting=100, backlog=None) == 4
    assert batches_to_admit(POLICY, in_flight=4, waiting=96, backlog=None) == 0


def test_while_the_queues_are_quiet_it_ramps_up_a_few_batches_per_decision():
    assert batches_to_admit(POLICY, in_flight=4, waiting=96, backlog=QUIET) == 2


def test_it_never_exceeds_max_in_flight():
    assert batches_to_admit(POLICY, in_flight=19, waiting=50, backlog=QUIET) == 1
    assert batches_to_admit(POLICY, in_flight=20, waiting=50, backlog=QUIET) == 0


def test_a_busy_queue_pauses_admission_down_to_the_floor():
    assert batches_to_admit(POLICY, in_flight=10, waiting=50, backlog=BUSY) == 0
    assert batches_to_admit(POLICY, in_flight=1, waiting=50, backlog=BUSY) == 1, (
        "a busy queue slows a run, never stops it"
    )


def test_the_threshold_is_per_queue_not_summed():
    spread = {"cpu": 3, "gpu": 3, "io": 3}
    assert batches_to_admit(POLICY, in_flight=5, waiting=50, backlog=spread) == 2


def test_it_never_admits_more_than_is_waiting():
    assert batches_to_admit(POLICY, in_flight=0, waiting=1, backlog=QUIET) == 1
    assert batches_to_admit(POLICY, in_flight=3, waiting=0, backlog=QUIET) == 0


@pytest.mark.parametrize("max_in_flight", [1, 2, 3])
def test_a_tiny_ceiling_wins_over_the_floor_and_the_first_window(max_in_flight):
    policy = AdmissionPolicy(max_in_flight=max_in_flight, min_in_flight=2, initial=4)
    for backlog in (None, QUIET, BUSY):
        assert batches_to_admit(policy, 0, 100, backlog) <= max_in_flight


@pytest.mark.parametrize(
    ("documents", "batch_size"),
    [(1, 10), (30, 10), (160, 10), (400, 25), (800, 50), (100_000, 50)],
)
def test_without_a_batch_size_big_runs_get_big_batches_and_small_runs_many(documents, batch_size):
    from docpipe.client.starter import auto_batch_size

    assert auto_batch_size(documents) == batch_size


def test_the_run_summary_counts_documents_stored_without_text():
    from docpipe.client.starter import RunSummary
    from docpipe.models import DocumentOutcome, Status

    def outcome(n: int, status: Status, has_text: bool | None, chunks: int) -> DocumentOutcome:
        return DocumentOutcome(f"d{n}", "s", n, status, "r", has_text=has_text, chunk_count=chunks)

    summary = RunSummary("r")
    summary.add(
        [
            outcome(1, Status.SUCCEEDED, True, 3),
            outcome(2, Status.SUCCEEDED, False, 0),
            outcome(3, Status.FAILED, None, 0),
        ],
        keep_succeeded=False,
    )
    assert (summary.documents, summary.succeeded_count, summary.failed_count) == (3, 2, 1)
    assert (summary.chunks, summary.without_text) == (3, 1)
    assert [o.document_id for o in summary.outcomes] == ["d3"], "failures are always kept"
