"""The operator's own Prometheus metrics (served by ``python -m docpipe_operator``).

They answer "what did the autoscaler see and do": replicas per pool
(desired by the policy, set on the Deployment, ready), the queue readings it
decided on, every scale event with its reason, and how Temporal answered.
Series of a deleted DocumentPipeline are removed, so dashboards do not show
ghosts.
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


def forget(namespace: str, pipeline: str) -> None:
    """Remove every series of a deleted pipeline."""
    for metric in _ALL:
        metric.remove_by_labels({"namespace": namespace, "pipeline": pipeline})
