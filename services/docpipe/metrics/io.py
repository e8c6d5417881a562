"""Requests to the backends: S3, PostgreSQL, Chroma, HTTP (downloads, webhooks).

Every call through the shared clients is timed by :func:`backend_request` (or
the :func:`timed` decorator on a store's methods): requests in flight per
backend (how much of a client's connection pool is in use), latency per
backend and operation, errors by kind, and payload bytes in and out.
PostgreSQL's pool reports its own state (psycopg_pool ``get_stats()``) at
scrape time: connections open, idle, the maximum, and requests waiting for one.

The object store is shared by every worker, so these series carry the
``worker`` label (:func:`docpipe.metrics.worker_kind`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from docpipe.metrics import worker_kind

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", Counter, Gauge, Histogram)


def _per_backend(kind: type[M], name: str, documentation: str, *labels: str, **options: Any) -> M:
    """A metric with a series per worker and backend, then ``labels``: every
    request to a backend is counted, whichever worker made it."""
    return kind(name, documentation, ["worker", "backend", *labels], **options)


IN_FLIGHT = _per_backend(
    Gauge,
    "docpipe_io_requests_in_flight",
    "Requests to a backend that have started and not finished.",
)
REQUEST_SECONDS = _per_backend(
    Histogram,
    "docpipe_io_request_duration_seconds",
    "Latency of one request to a backend (an upsert batch, an object, a download).",
    "operation",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BYTES = _per_backend(
    Counter,
    "docpipe_io_bytes",
    "Payload bytes sent to (out) or received from (in) a backend.",
    "direction",
)
ERRORS = _per_backend(
    Counter,
    "docpipe_io_errors",
    "Backend requests that raised, by kind (timeout, connection, not_found, rejected, ...).",
    "operation",
    "kind",
)

# Exception classes (by name, anywhere in the MRO) and the kind they count as;
# the first class of the MRO that is listed wins. Names keep this module free
# of imports of botocore, psycopg and httpx.
_KINDS = {
    "ObjectNotFound": "not_found",
    "PoolTimeout": "pool_timeout",
    "TimeoutException": "timeout",
    "TimeoutError": "timeout",
    "ConnectTimeoutError": "timeout",
    "ReadTimeoutError": "timeout",
    "ConnectError": "connection",
    "EndpointConnectionError": "connection",
    "ConnectionError": "connection",
    "OperationalError": "connection",
    "DocumentError": "rejected",
    "WebhookRejected": "rejected",
    "TransientError": "transient",
    "WebhookUnavailable": "transient",
    "ClientError": "client_error",
    "IntegrityError": "integrity",
    "CancelledError": "cancelled",
}


def error_kind(exc: BaseException) -> str:
    """A small, fixed vocabulary for an exception (else its class name)."""
    for cls in type(exc).__mro__:
        kind = _KINDS.get(cls.__name__)
        if kind is not None:
            return kind
    return type(exc).__name__


@contextmanager
def backend_request(backend: str, operation: str) -> Iterator[None]:
    """Time one request; count it in flight meanwhile and count it if it raises."""
    worker = worker_kind()
    in_flight = IN_FLIGHT.labels(worker, backend)
    in_flight.inc()
    started = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        ERRORS.labels(worker, backend, operation, error_kind(exc)).inc()
        raise
    finally:
        in_flight.dec()
        REQUEST_SECONDS.labels(worker, backend, operation).observe(time.perf_counter() - started)


def timed(
    backend: str, operation: str
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an async method so each call is one :func:`backend_request`."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with backend_request(backend, operation):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate


def count_bytes(backend: str, direction: str, size: int) -> None:
    """``direction`` is ``in`` (received) or ``out`` (sent)."""
    BYTES.labels(worker_kind(), backend, direction).inc(size)


# ------------------------------------------------------------- PostgreSQL pool


class PostgresPoolCollector(Collector):
    """The state of this process's psycopg pools (summed), read at scrape time."""

    def __init__(self) -> None:
        self.pools: list[Any] = []
        # Reentrant: registering the collector runs collect() under this lock.
        self._lock = threading.RLock()

    def _stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for pool in list(self.pools):
            for _attempt in range(3):
                try:
                    # get_stats() copies a dict the event loop may be updating.
                    stats = pool.get_stats()
                    break
                except RuntimeError:
                    continue
            else:
                continue
            for key, value in stats.items():
                total[key] = total.get(key, 0) + int(value)
        return total

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            if not self.pools:
                return
            stats = self._stats()
        worker = worker_kind()

        def gauge(name: str, doc: str, key: str) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["worker"])
            family.add_metric([worker], stats.get(key, 0))
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["worker"])
            family.add_metric([worker], value)
            return family

        yield gauge(
            "docpipe_io_postgres_pool_size_connections",
            "Connections the PostgreSQL pool holds now (in use + idle).",
            "pool_size",
        )
        yield gauge(
            "docpipe_io_postgres_pool_idle_connections",
            "Pool connections idle, ready to be borrowed.",
            "pool_available",
        )
        yield gauge(
            "docpipe_io_postgres_pool_max_connections",
            "The pool's maximum size (METADATA_DB_POOL_MAX).",
            "pool_max",
        )
        yield gauge(
            "docpipe_io_postgres_pool_waiting_requests",
            "Requests waiting for a pool connection now.",
            "requests_waiting",
        )
        yield counter(
            "docpipe_io_postgres_pool_requests",
            "Connections requested from the pool.",
            stats.get("requests_num", 0),
        )
        yield counter(
            "docpipe_io_postgres_pool_wait_seconds",
            "Time requests spent waiting for a pool connection (queued requests only).",
            stats.get("requests_wait_ms", 0) / 1000,
        )
        yield counter(
            "docpipe_io_postgres_pool_connection_errors",
            "Failed attempts to open a connection, plus connections found broken.",
            stats.get("connections_errors", 0) + stats.get("connections_lost", 0),
        )


_pg_collector = PostgresPoolCollector()
_pg_registered = False


def watch_postgres_pool(pool: Any, registry: CollectorRegistry = REGISTRY) -> None:
    """Report ``pool`` (a psycopg_pool pool) in the docpipe_io_postgres_pool_* metrics."""
    global _pg_registered
    with _pg_collector._lock:
        if not _pg_registered:
            registry.register(_pg_collector)
            _pg_registered = True
        _pg_collector.pools.append(pool)


def unwatch_postgres_pool(pool: Any) -> None:
    with _pg_collector._lock:
        if pool in _pg_collector.pools:
            _pg_collector.pools.remove(pool)
