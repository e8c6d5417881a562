"""Drain-aware scale-down, the pure part (docpipe_operator/drain.py): pods and their
in-flight work in, deletion costs out; and the reading of a worker's /metrics text."""

from __future__ import annotations

import asyncio

import aiohttp.web
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from docpipe_operator import draining
from docpipe_operator.drain import (
    DELETION_COST_ANNOTATION,
    NEUTRAL_COST,
    MetricsEndpointReader,
    PodLoad,
    PodRef,
    cost_changes,
    deletion_costs,
    in_flight_from_exposition,
    load_from_exposition,
    pod_ref,
)


def test_a_busy_pod_costs_more_than_an_idle_one_so_the_idle_ones_go_first() -> None:
    costs = deletion_costs(["a", "b", "c"], {"a": 0, "b": 3, "c": 0})
    assert costs == {"a": 0, "b": 3, "c": 0}
    assert max(costs, key=costs.__getitem__) == "b"


def test_the_busier_of_two_busy_pods_is_kept_longer() -> None:
    costs = deletion_costs(["a", "b"], {"a": 1, "b": 7})
    assert costs["b"] > costs["a"] > 0


def test_a_pod_whose_metrics_could_not_be_read_is_neutral() -> None:
    costs = deletion_costs(["a", "b", "c"], {"a": None, "b": 2})
    assert costs["a"] == costs["c"] == NEUTRAL_COST
    assert costs["b"] > NEUTRAL_COST


def test_nonsense_readings_are_neutral_and_costs_stay_int32() -> None:
    costs = deletion_costs(
        ["nan", "negative", "huge", "fraction"],
        {"nan": float("nan"), "negative": -1, "huge": 1e12, "fraction": 0.2},
    )
    assert costs == {"nan": 0, "negative": 0, "huge": 2**31 - 1, "fraction": 1}


def test_only_changed_annotations_are_written() -> None:
    pods = [
        PodRef("ranked", "10.0.0.1", 9100, cost="3"),
        PodRef("stale", "10.0.0.2", 9100, cost="5"),
        PodRef("new-idle", "10.0.0.3", 9100, cost=None),
        PodRef("new-busy", "10.0.0.4", 9100, cost=None),
    ]
    costs = {"ranked": 3, "stale": 0, "new-idle": 0, "new-busy": 2}
    assert cost_changes(pods, costs) == {"stale": "0", "new-busy": "2"}


def exposition(**in_flight: float) -> str:
    """What a worker's /metrics serves: the real gauge, per activity."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "docpipe_activities_in_flight",
        "Activities executing now.",
        ["worker", "activity"],
        registry=registry,
    )
    for activity, value in in_flight.items():
        gauge.labels("cpu", activity).set(value)
    return generate_latest(registry).decode()


def test_in_flight_is_the_sum_over_activities() -> None:
    assert in_flight_from_exposition(exposition(prepare_text=2, other=1)) == 3


def test_a_worker_that_ran_nothing_yet_is_idle_and_one_without_the_metric_is_unknown() -> None:
    assert in_flight_from_exposition(exposition()) == 0
    assert in_flight_from_exposition("# HELP up x\n# TYPE up gauge\nup 1\n") is None


def test_a_pod_is_read_from_the_api_with_its_metrics_port_and_cost() -> None:
    pod = {
        "metadata": {"name": "docs-cpu-1", "annotations": {DELETION_COST_ANNOTATION: "4"}},
        "spec": {
            "containers": [
                {"name": "sidecar", "ports": [{"name": "metrics", "containerPort": 1}]},
                {"name": "worker", "ports": [{"name": "metrics", "containerPort": 9100}]},
            ]
        },
        "status": {"phase": "Running", "podIP": "10.1.2.3"},
    }
    annotations = {DELETION_COST_ANNOTATION: "4"}
    assert pod_ref(pod, "worker", 9999) == PodRef(
        "docs-cpu-1", "10.1.2.3", 9100, "4", ready=True, annotations=annotations
    )
    pending = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "worker"}]}}
    assert pod_ref(pending, "worker", 9100) == PodRef("p", None, 9100, None, ready=False)


def test_a_running_pod_is_ready_unless_its_ready_condition_says_otherwise() -> None:
    def ready(status: dict[str, object]) -> bool:
        return pod_ref({"metadata": {"name": "p"}, "status": status}, "worker", 1).ready

    assert ready({"phase": "Running"})
    assert ready({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    assert not ready({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]})
    assert not ready({"phase": "Pending"})


def test_the_drain_gauge_says_whether_a_worker_stopped_polling() -> None:
    drained = exposition() + "# TYPE docpipe_worker_draining gauge\ndocpipe_worker_draining 1\n"
    assert load_from_exposition(drained) == PodLoad(0, True)
    assert load_from_exposition(exposition(prepare_text=2)) == PodLoad(2, None)


async def test_the_reader_reads_real_endpoints_and_never_waits_on_a_dead_one() -> None:
    async def metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=exposition(prepare_text=2))

    released = asyncio.Event()

    async def hangs(_: aiohttp.web.Request) -> aiohttp.web.Response:
        await released.wait()
        return aiohttp.web.Response(text=exposition(prepare_text=5))

    app = aiohttp.web.Application()
    app.router.add_get("/metrics", metrics)
    slow = aiohttp.web.Application()
    slow.router.add_get("/metrics", hangs)
    runners = [aiohttp.web.AppRunner(app), aiohttp.web.AppRunner(slow)]
    ports = []
    for runner in runners:
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(runner.addresses[0][1])
    try:
        pods = [
            PodRef("busy", "127.0.0.1", ports[0]),
            PodRef("slow", "127.0.0.1", ports[1]),
            PodRef("unscheduled", None, 9100),
        ]
        counts = await MetricsEndpointReader(timeout_s=0.5).read(pods)
    finally:
        released.set()
        for runner in runners:
            await runner.cleanup()
    assert counts == {"busy": 2, "slow": None, "unscheduled": None}


def test_pods_on_their_way_count_as_idle_so_the_pool_still_decides_on_counted_work() -> None:
    """A pending pod (no IP) runs nothing; a running pod that does not answer might."""
    pending = PodRef("new", None, 9100, ready=False)
    silent = PodRef("old", "10.0.0.9", 9100)
    serving = PodRef("busy", "10.0.0.8", 9100)
    pool = draining.PoolPods(
        (
            draining.pod_drain(pending, None),
            draining.pod_drain(serving, PodLoad(3.0, False)),
        )
    )
    assert pool.pods[0].in_flight == 0.0
    assert pool.counted_in_flight == 3.0
    assert draining.pod_drain(silent, None).in_flight is None
    unreadable = draining.PoolPods((draining.pod_drain(silent, None),))
    assert unreadable.counted_in_flight is None
