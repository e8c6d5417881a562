"""Deterministic workflow code only: no I/O and no heavy imports here."""

from temporalio.common import VersioningBehavior

from docpipe.workflows.document_pipeline import DocumentPipelineWorkflow
from docpipe.workflows.ingest_csv import IngestCsvWorkflow

WORKFLOWS = [DocumentPipelineWorkflow, IngestCsvWorkflow]

# How each workflow moves between worker versions when the workflow worker runs
# with a Build ID (Worker Versioning). PINNED: a run stays on the version it
# started on, so a deploy never replays an open run's history with changed code.
# - DocumentPipelineWorkflow: a batch lasts minutes; the old version drains soon.
# - IngestCsvWorkflow: each run is pinned and continues as new on the Current
#   version (see ingest_csv._next_run_versioning), so it upgrades at a page boundary.
# Deliberately not passed to @workflow.defn: the server refuses a behaviour from an
# unversioned worker ("versioning behavior cannot be specified without deployment
# options being set with versioned mode": every workflow task fails and the run
# hangs), and docpipe's workers stay unversioned unless given a Build ID. The
# workflow worker applies it as its default behaviour instead (one for all).
VERSIONING_BEHAVIOR: dict[type, VersioningBehavior] = {
    DocumentPipelineWorkflow: VersioningBehavior.PINNED,
    IngestCsvWorkflow: VersioningBehavior.PINNED,
}


def versioning_behavior() -> VersioningBehavior:
    """The one behaviour the workflow worker applies to every workflow it runs.

    A worker has a single default; workflows that need different behaviours
    would have to declare them on @workflow.defn, which only versioned workers
    may do, so this refuses rather than silently pin an AUTO_UPGRADE workflow.
    """
    missing = [w.__name__ for w in WORKFLOWS if w not in VERSIONING_BEHAVIOR]
    if missing:
        raise ValueError(f"no versioning behaviour declared for {', '.join(missing)}")
    behaviours = {VERSIONING_BEHAVIOR[w] for w in WORKFLOWS}
    if len(behaviours) != 1:
        raise ValueError(f"workflows declare different versioning behaviours: {behaviours}")
    return behaviours.pop()


__all__ = [
    "VERSIONING_BEHAVIOR",
    "WORKFLOWS",
    "DocumentPipelineWorkflow",
    "IngestCsvWorkflow",
    "versioning_behavior",
]
