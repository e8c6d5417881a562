"""Leftovers a long-running operator must not keep: the gauges of pipelines a
paused replica no longer handles, Temporal clients whose credentials rotated;
and the Temporal addresses it must accept (IPv6)."""

from __future__ import annotations

import copy
import gc
import weakref
from typing import Any

import pytest
from crd_admission import admit
from pipeline_examples import example
from prometheus_client import REGISTRY

from docpipe.config import TemporalConnection
from docpipe.queue_stats import QueueStats
from docpipe_operator import backlog, crd, metrics
from docpipe_operator.backlog import QueueRef, TemporalClients
from docpipe_operator.spec import problems

MINIMAL = example("minimal")


def gauge(pipeline: str) -> float | None:
    return REGISTRY.get_sample_value(
        "docpipe_operator_current_replicas",
        {"namespace": "ns", "pipeline": pipeline, "pool": "cpu"},
    )


def test_a_paused_replica_drops_its_gauges_after_a_few_rounds() -> None:
    """Two replicas exporting the same pipeline's gauges would double every sum."""
    for pipeline in ("active", "paused"):
        metrics.CURRENT_REPLICAS.labels("ns", pipeline, "cpu").set(3)
        metrics.SCALE_EVENTS.labels("ns", pipeline, "cpu", "up", "Backlog").inc()
        metrics.touch("ns", pipeline, now=100.0, ttl=15.0)
    metrics.touch("ns", "active", now=110.0, ttl=15.0)  # its timer still runs

    assert metrics.forget_stale(now=112.0) == []
    assert metrics.forget_stale(now=120.0) == [("ns", "paused")]
    assert gauge("paused") is None
    assert gauge("active") == 3
    # Counters stay (rate() copes with a series that stops growing).
    assert (
        REGISTRY.get_sample_value(
            "docpipe_operator_scale_events_total",
            {
                "namespace": "ns",
                "pipeline": "paused",
                "pool": "cpu",
                "direction": "up",
                "reason": "Backlog",
            },
        )
        == 1
    )
    metrics.forget("ns", "active")
    metrics.forget("ns", "paused")


class FakeClient:
    namespace = "default"


async def test_a_rotated_secret_releases_the_old_client(monkeypatch: pytest.MonkeyPatch) -> None:
    connected: list[FakeClient] = []

    async def connect(self: TemporalConnection) -> FakeClient:
        connected.append(FakeClient())
        return connected[-1]

    async def describe(client: Any, queue: str, *, workflow: bool = False) -> QueueStats:
        return QueueStats(queue, "activity", 0, 0.0, 0.0, 0.0, 0)

    monkeypatch.setattr(TemporalConnection, "connect", connect)
    monkeypatch.setattr(backlog, "describe_queue", describe)
    clients = TemporalClients()
    queues = {"cpu": QueueRef("cpu-q")}
    old_key = TemporalConnection("t:7233", "default", True, "key-1")
    new_key = TemporalConnection("t:7233", "default", True, "key-2")
    shared = TemporalConnection("t:7233", "default", True, "key-1")

    assert (await clients.read(old_key, queues, user=("ns", "a"))).reachable
    assert (await clients.read(shared, queues, user=("ns", "b"))).reachable
    first = weakref.ref(connected[0])
    assert len(connected) == 1  # one client per endpoint, shared

    await clients.read(new_key, queues, user=("ns", "a"))  # a's Secret rotated
    assert len(clients._clients) == 2, "b still uses the old key"
    clients.release(("ns", "b"))  # b deleted: nobody uses the old key
    connected.clear()
    gc.collect()
    assert first() is None, "the replaced client is no longer referenced"
    assert list(clients._clients) == [new_key]


@pytest.mark.parametrize(
    "address", ["[::1]:7233", "[fd00:10:96::a]:7233", "temporal:7233", "10.0.0.5:7233"]
)
def test_ipv6_and_other_addresses_are_accepted(address: str) -> None:
    body = copy.deepcopy(MINIMAL)
    body["spec"]["temporal"]["address"] = address
    assert problems(body["spec"], "docs") == []
    _, errors = admit(crd.build(), body)
    assert errors == []


@pytest.mark.parametrize("address", ["::1:7233", "temporal", "[::1]", "temporal:port"])
def test_addresses_without_a_port_or_brackets_are_refused(address: str) -> None:
    body = copy.deepcopy(MINIMAL)
    body["spec"]["temporal"]["address"] = address
    assert any("spec.temporal.address" in p for p in problems(body["spec"], "docs"))
    _, errors = admit(crd.build(), body)
    assert errors
