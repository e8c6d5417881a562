"""Prometheus metrics of docpipe's workers (prometheus-client, ``docpipe_`` prefix).

One module per concern: ``activity`` (every worker, via an interceptor),
``process`` (CPU and memory of a worker and its pool children), ``cpu``
(the CPU worker's process pool), ``gpu`` (devices, inference, micro-batches),
``io`` (requests to S3, PostgreSQL, Chroma and HTTP; the PostgreSQL pool),
``pipeline`` (document outcomes and end-to-end latency) and ``worker`` (whether
the worker is drained). docs/metrics.md lists every metric; deploy/grafana
has the dashboards built on them.

Metrics recorded by code that runs in every worker (the object store, the
process collector) carry a ``worker`` label: the worker kind the process was
started as (:func:`set_worker_kind`, called once at start), so one PromQL
selector finds the same series in a pod, under docker compose or in a test.
"""

from __future__ import annotations

_worker_kind = "local"


def set_worker_kind(kind: str) -> None:
    """Name this process's worker kind (workflow, cpu, gpu, io) for the ``worker`` label."""
    global _worker_kind
    _worker_kind = kind


def worker_kind() -> str:
    """The kind set by :func:`set_worker_kind`; ``local`` in CLIs and tests."""
    return _worker_kind
