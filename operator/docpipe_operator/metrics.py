"""The operator's own Prometheus metrics (served by ``python -m docpipe_operator``).

They answer "what did the autoscaler see and do": replicas per pool
(desired by the policy, set on the Deployment, ready), the queue readings it
decided on, every scale event with its reason, and how Temporal answered.
Series of a deleted DocumentPipeline are removed, so dashboards do not show
ghosts. So are the gauges of a pipeline this process stopped handling (a
replica that lost the peering race pauses; its last values would be summed with
the active replica's): :func:`touch` marks a pipeline handled, and
:func:`forget_stale` drops the gauges of any not touched within its ttl.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_POOL = ["namespace", "pipeline", "pool"]
_PIPELINE = ["namespace", "pipeline"]

DESIRED_REPLICAS = Gauge(
    "docpipe_operator_desired_replicas", "Replicas the scaling policy asked for.", _POOL
)
CURRENT_REPLICAS = Gauge(
    "docpipe_operator_current_replicas", "The pool Deployment's spec.replicas.", _POOL
)
READY_REPLICAS = Gauge("docpipe_operator_ready_replicas", "The pool's ready pods.", _POOL)
QUEUE_BACKLOG = Gauge(
    "docpipe_operator_queue_backlog_tasks",
    "Approximate tasks waiting on the pool's queue.",
    [*_POOL, "queue"],
)
QUEUE_BACKLOG_AGE = Gauge(
    "docpipe_operator_queue_backlog_age_seconds",
    "Age of the oldest task waiting on the pool's queue.",
    [*_POOL, "queue"],
)
SCALE_EVENTS = Counter(
    "docpipe_operator_scale_events_total",
    "Replica changes made by the autoscaler.",
    [*_POOL, "direction", "reason"],
)
TEMPORAL_ERRORS = Counter(
    "docpipe_operator_temporal_errors_total",
    "Backlog readings that failed (Temporal unreachable or a query failed).",
    _PIPELINE,
)
TEMPORAL_QUERY_SECONDS = Histogram(
    "docpipe_operator_temporal_query_duration_seconds",
    "Time to read a pipeline's queue statistics from Temporal.",
    _PIPELINE,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_ALL = (
    DESIRED_REPLICAS,
    CURRENT_REPLICAS,
    READY_REPLICAS,
    QUEUE_BACKLOG,
    QUEUE_BACKLOG_AGE,
    SCALE_EVENTS,
    TEMPORAL_ERRORS,
    TEMPORAL_QUERY_SECONDS,
)


_GAUGES = (DESIRED_REPLICAS, CURRENT_REPLICAS, READY_REPLICAS, QUEUE_BACKLOG, QUEUE_BACKLOG_AGE)

_HANDLED: dict[tuple[str, str], tuple[float, float]] = {}
"""(namespace, pipeline) -> (when this process last ran its timer, how long that holds)."""


def forget(namespace: str, pipeline: str, *, gauges_only: bool = False) -> None:
    """Remove every series of a deleted pipeline (or only its gauges)."""
    for metric in _GAUGES if gauges_only else _ALL:
        metric.remove_by_labels({"namespace": namespace, "pipeline": pipeline})
    _HANDLED.pop((namespace, pipeline), None)


def touch(namespace: str, pipeline: str, now: float, ttl: float) -> None:
    """This process handles the pipeline now; its gauges are good for ``ttl`` seconds."""
    _HANDLED[namespace, pipeline] = (now, ttl)


def forget_stale(now: float) -> list[tuple[str, str]]:
    """Drop the gauges of pipelines not handled within their ttl (counters stay:
    ``rate()`` copes with a series that stops). Returns the pipelines dropped."""
    stale = [key for key, (seen, ttl) in _HANDLED.items() if now - seen > ttl]
    for namespace, pipeline in stale:
        forget(namespace, pipeline, gauges_only=True)
    return stale
