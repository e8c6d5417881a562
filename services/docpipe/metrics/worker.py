"""The worker's own state, for the operator's drain-before-remove scale-down.

``docpipe_worker_draining`` is 1 while the worker is drained: its pod carries the
drain annotation, it stopped polling, and every activity it had taken has
finished (``docpipe_activities_in_flight`` is 0 then). It is 0 while the worker
polls, and also while a requested drain is still finishing in-flight work: the
operator may delete a pod only once this reads 1. The series exists only in a
worker that watches its pod annotations (WORKER_POD_ANNOTATIONS_FILE set), so an
absent series means "this worker cannot drain", not "not drained yet".
"""

from __future__ import annotations

from prometheus_client import Gauge

from docpipe.metrics import worker_kind

WORKER_DRAINING = Gauge(
    "docpipe_worker_draining",
    "1 while the worker is drained (pod annotation docpipe.io/drain: no polling, "
    "nothing in flight), else 0.",
    ["worker"],
)


def set_draining(drained: bool) -> None:
    """Report this process's drain state under its ``worker`` label."""
    WORKER_DRAINING.labels(worker_kind()).set(1 if drained else 0)
