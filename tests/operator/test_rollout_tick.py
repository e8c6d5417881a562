"""One tick of a versioned pool (rollout.tick) with fakes of Temporal's Worker
Deployment API and of the Kubernetes calls, for the cases the end-to-end test
cannot stage on demand: Temporal unreachable, a version's backlog unreadable, a
drained version's delays, and a pool switched from unversioned to versioned.

The fakes answer what worker_deployments.py's calls answer: a DeploymentState (None for a
deployment no worker has polled yet), per-Build-ID QueueStats or None, and routing
changes recorded with the conflict token they carried.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline_examples import example

from docpipe.queue_stats import QueueStats
from docpipe_operator import names, rollout
from docpipe_operator.kube import DeploymentState
from docpipe_operator.spec import parse
from docpipe_operator.versioning import (
    DeploymentState as Routing,
)
from docpipe_operator.versioning import (
    RoutingChange,
    SetCurrent,
    Version,
    VersionStatus,
)

MINIMAL = example("minimal")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC).timestamp()
BODY = {"metadata": {"name": "docs", "namespace": "ns", "uid": "uid-1"}}
NAME = "ns/docs-workflow"


def spec(tag: str = "v2", pool: dict[str, Any] | None = None, **rollout_fields: Any) -> Any:
    """The minimal example with a versioned workflow pool of image ``tag`` (2-6 replicas)."""
    raw = copy.deepcopy(MINIMAL["spec"])
    raw["pools"]["workflow"] |= {
        "image": f"ghcr.io/example/docpipe-io:{tag}",
        "minReplicas": 2,
        "maxReplicas": 6,
        "versioning": {"enabled": True, "rollout": {"scaleDownDelay": "10m", **rollout_fields}},
        **(pool or {}),
    }
    return parse(raw)


@dataclass
class FakeTemporal:
    state: Routing | None
    stats: dict[str, QueueStats | None] = field(default_factory=dict)
    routed: list[tuple[RoutingChange, bytes]] = field(default_factory=list)
    down: bool = False

    async def describe(self, name: str) -> Routing | None:
        assert name == NAME
        if self.down:
            raise TimeoutError
        return self.state

    async def route(self, name: str, change: RoutingChange, conflict_token: bytes) -> None:
        self.routed.append((change, conflict_token))

    async def backlog(
        self, name: str, build_ids: Collection[str], queue: str, *, workflow: bool
    ) -> Mapping[str, QueueStats | None]:
        assert workflow
        return {b: self.stats.get(b) for b in build_ids}


@dataclass
class FakeKube:
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    scaled: list[tuple[str, int]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)

    async def deployment(self, namespace: str, name: str) -> DeploymentState | None:
        return self.deployments.get(name)

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.scaled.append((name, replicas))
        self.deployments[name] = replace(self.deployments[name], replicas=replicas)

    async def delete_owned(self, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        if self.deployments.pop(name, None) is None:
            return False
        self.deleted.append(name)
        return True

    async def apply(self, manifest: dict[str, Any], owner_uid: str) -> Any:
        name = manifest["metadata"]["name"]
        self.applied.append(name)
        self.deployments[name] = DeploymentState(manifest["spec"]["replicas"], 0, 0)


def stats(backlog: int) -> QueueStats:
    return QueueStats(
        queue="q",
        kind="workflow",
        backlog_count=backlog,
        backlog_age_s=60.0 if backlog else 0.0,
        add_rate=1.0 if backlog else 0.0,
        dispatch_rate=0.0,
        live_pollers=1,
    )


def routing(*versions: Version, current: str | None, token: bytes = b"t1") -> Routing:
    return Routing(
        versions={v.build_id: v for v in versions}, current=current, conflict_token=token
    )


def v2_replaced_v1(
    v1_status: VersionStatus, /, drained_at: datetime | None = None, **backlog: QueueStats | None
) -> FakeTemporal:
    """Temporal after v2 became Current, v1 in ``v1_status``; ``backlog`` by Build ID."""
    return FakeTemporal(
        routing(
            Version("v1", v1_status, drained_at),
            Version("v2", VersionStatus.CURRENT),
            current="v2",
        ),
        backlog,
    )


def deployments(**replicas: tuple[int, int, int]) -> FakeKube:
    """A FakeKube with each version's Deployment: (replicas, ready, updated)."""
    return FakeKube({f"docs-workflow-{v}": DeploymentState(*r) for v, r in replicas.items()})


V1_REMEMBERED = {"versions": [{"buildId": "v1", "image": "x:v1"}]}
"""The pool's last status: it knew v1 and its image."""


async def tick(
    kube: FakeKube,
    temporal: FakeTemporal | None,
    pipeline: Any,
    previous: dict[str, Any] | None = None,
    now: float = NOW,
    before_scale_down: rollout.BeforeScaleDown | None = None,
    memory: dict[str, rollout.VersionMemory] | None = None,
    drain: rollout.DrainVersion | None = None,
) -> rollout.Tick:
    target = names.version_deployment_name(
        "docs", "workflow", pipeline.pools["workflow"].versioning.build_id
    )
    return await rollout.tick(
        kube,  # type: ignore[arg-type]
        temporal,
        BODY,
        pipeline,
        "workflow",
        kube.deployments.get(target),
        {} if memory is None else memory,
        previous or {},
        now=now,
        unreachable=None if temporal else "cannot reach Temporal",
        before_scale_down=before_scale_down,
        drain=drain,
    )


async def test_a_new_version_becomes_current_once_polled_with_the_conflict_token() -> None:
    kube = deployments(v1=(2, 2, 2), v2=(2, 0, 2))
    temporal = FakeTemporal(
        routing(
            Version("v1", VersionStatus.CURRENT),
            Version("v2", VersionStatus.INACTIVE),
            current="v1",
        ),
        {"v1": stats(0), "v2": stats(0)},
    )
    done = await tick(kube, temporal, spec(), V1_REMEMBERED)
    assert temporal.routed == [(SetCurrent("v2"), b"t1")]
    assert [n.reason for n in done.notices] == ["RolloutStep"]
    assert kube.deleted == []  # v1 serves until Temporal says otherwise
    by_id = {v["buildId"]: v for v in done.entry["versions"]}
    assert by_id["v1"]["status"] == "Current" and by_id["v1"]["role"] == "Serve"
    assert done.entry["targetBuildId"] == "v2"
    assert done.entry["currentReplicas"] == 4


async def test_temporal_unreachable_holds_every_version() -> None:
    kube = deployments(v1=(3, 3, 3), v2=(2, 2, 2))
    previous = {
        "currentBuildId": "v1",
        "versions": [{"buildId": "v1", "status": "Draining", "image": "x:v1"}],
    }
    for temporal in (None, FakeTemporal(None, down=True)):
        done = await tick(kube, temporal, spec(), previous)
        assert kube.scaled == [] and kube.deleted == []
        assert done.decision is None
        assert done.entry["currentBuildId"] == "v1"
        assert {v["role"] for v in done.entry["versions"]} == {"Hold"}
        assert done.entry["versionRollout"] == "Unknown"
    assert temporal is not None and temporal.routed == []


async def test_a_version_whose_backlog_cannot_be_read_is_not_shrunk() -> None:
    kube = deployments(v1=(5, 5, 5), v2=(4, 4, 4))
    # The server gave no statistics.
    temporal = v2_replaced_v1(VersionStatus.DRAINING, v1=None, v2=None)
    done = await tick(kube, temporal, spec(), V1_REMEMBERED)
    assert kube.scaled == []
    assert done.decision is not None and done.decision.replicas == 4


async def test_a_serving_version_scales_on_its_own_backlog() -> None:
    kube = deployments(v1=(2, 2, 2), v2=(2, 2, 2))
    temporal = v2_replaced_v1(VersionStatus.DRAINING, v1=stats(0), v2=stats(1000))
    done = await tick(kube, temporal, spec(), V1_REMEMBERED)
    assert ("docs-workflow-v2", 6) in kube.scaled
    assert not any(name == "docs-workflow-v1" for name, _ in kube.scaled)
    assert done.decision is not None and done.decision.replicas == 6


async def test_a_drained_version_goes_to_zero_after_its_delay_then_away() -> None:
    drained_at = datetime.fromtimestamp(NOW, UTC) - timedelta(minutes=11)
    kube = deployments(v1=(1, 1, 1), v2=(2, 2, 2))
    temporal = v2_replaced_v1(VersionStatus.DRAINED, drained_at=drained_at, v2=stats(0))
    pipeline = spec(deleteDelay="5m")
    done = await tick(kube, temporal, pipeline, V1_REMEMBERED)
    assert kube.scaled == [("docs-workflow-v1", 0)] and kube.deleted == []
    assert "VersionScaledToZero" in [n.reason for n in done.notices]

    later = NOW + timedelta(minutes=5).total_seconds()
    done = await tick(kube, temporal, pipeline, done.entry, now=later)
    assert kube.deleted == ["docs-workflow-v1"]
    assert "VersionDeleted" in [n.reason for n in done.notices]
    assert [v["buildId"] for v in done.entry["versions"]] == ["v2"]


async def test_a_version_losing_replicas_has_its_own_pods_ranked_first() -> None:
    """Drain-aware scale-down holds per version: the pods of the version that shrinks
    (and only those) get their deletion costs before its replicas go down."""
    pipeline = spec(pool={"minReplicas": 1, "scaling": {"scaleDownStabilizationSeconds": 0}})
    kube = deployments(v2=(6, 6, 6))
    temporal = FakeTemporal(routing(Version("v2", VersionStatus.CURRENT), current="v2"))
    temporal.stats = {"v2": stats(0)}
    ranked: list[tuple[str, dict[str, str], int]] = []

    async def rank(namespace: str, selector: Mapping[str, str]) -> None:
        ranked.append((namespace, dict(selector), len(kube.scaled)))

    memory: dict[str, rollout.VersionMemory] = {}
    for seconds in (0, 60, 120):  # a quiet history first: scale-downs are stabilised
        await tick(
            kube, temporal, pipeline, now=NOW + seconds, before_scale_down=rank, memory=memory
        )
        if kube.scaled:
            break
    [(name, replicas)] = kube.scaled
    assert name == "docs-workflow-v2" and replicas < 6
    v2_pods = {**names.selector_labels("docs", "workflow"), names.VERSION_LABEL: "v2"}
    assert ranked == [("ns", v2_pods, 0)], "ranked before the scale, v2's pods only"


async def test_a_version_drains_before_it_removes_when_the_operator_can_read_its_pods() -> None:
    """Drain before remove holds per version too: the drain step gets the version's pods,
    decides on the serving ones with their counted work, and its replicas (serving plus
    cordoned pods still working) are what the Deployment keeps."""
    pipeline = spec(pool={"minReplicas": 1, "scaling": {"scaleDownStabilizationSeconds": 0}})
    kube = deployments(v2=(6, 6, 6))
    temporal = FakeTemporal(routing(Version("v2", VersionStatus.CURRENT), current="v2"))
    temporal.stats = {"v2": stats(0)}
    steps: list[tuple[dict[str, str], int, int]] = []

    async def drain(
        namespace: str, selector: Mapping[str, str], current: int, decide: Any, now: float
    ) -> tuple[Any, int]:
        decision = decide(current, 0.0)  # every pod idle, none cordoned yet
        steps.append((dict(selector), current, decision.replicas))
        shrinking = decision.replicas < current
        return decision, decision.replicas + shrinking  # one busy pod cordoned, still working

    memory: dict[str, rollout.VersionMemory] = {}
    for seconds in (0, 60, 120):
        await tick(kube, temporal, pipeline, now=NOW + seconds, memory=memory, drain=drain)
    v2_pods = {**names.selector_labels("docs", "workflow"), names.VERSION_LABEL: "v2"}
    assert {selector == v2_pods for selector, _, _ in steps} == {True}
    shrunk = next(want for _, _, want in steps if want < 6)
    assert ("docs-workflow-v2", shrunk + 1) in kube.scaled
    assert memory["v2"].owned == kube.deployments["docs-workflow-v2"].replicas


async def test_a_version_whose_pods_cannot_be_read_is_ranked_and_scaled_the_old_way() -> None:
    pipeline = spec(pool={"minReplicas": 1, "scaling": {"scaleDownStabilizationSeconds": 0}})
    kube = deployments(v2=(6, 6, 6))
    temporal = FakeTemporal(routing(Version("v2", VersionStatus.CURRENT), current="v2"))
    temporal.stats = {"v2": stats(0)}
    ranked: list[int] = []

    async def drain(*_: Any) -> tuple[Any, int]:
        raise TimeoutError("no pod answered")

    async def rank(namespace: str, selector: Mapping[str, str]) -> None:
        ranked.append(len(kube.scaled))

    memory: dict[str, rollout.VersionMemory] = {}
    for seconds in (0, 60, 120):
        await tick(
            kube,
            temporal,
            pipeline,
            now=NOW + seconds,
            before_scale_down=rank,
            memory=memory,
            drain=drain,
        )
        if kube.scaled:
            break
    [(name, replicas)] = kube.scaled
    assert name == "docs-workflow-v2" and replicas < 6 and ranked == [0]


async def test_a_draining_version_that_lost_its_deployment_comes_back_with_its_image() -> None:
    kube = deployments(v2=(2, 2, 2))
    temporal = v2_replaced_v1(VersionStatus.DRAINING, v1=stats(0), v2=stats(0))
    previous = {"versions": [{"buildId": "v1", "image": "ghcr.io/example/docpipe-io:v1"}]}
    done = await tick(kube, temporal, spec(), previous)
    assert kube.applied == ["docs-workflow-v1"]
    assert "DeploymentRecreated" in [n.reason for n in done.notices]
    v1 = next(v for v in done.entry["versions"] if v["buildId"] == "v1")
    assert v1["image"] == "ghcr.io/example/docpipe-io:v1"


async def test_the_unversioned_deployment_goes_once_a_version_is_current() -> None:
    kube = deployments(v1=(2, 0, 2))
    kube.deployments["docs-workflow"] = DeploymentState(2, 2, 2)  # from before versioning
    temporal = FakeTemporal(None)  # no version has polled yet
    await tick(kube, temporal, spec("v1"))
    assert "docs-workflow" in kube.deployments, "kept while nothing else can serve"

    temporal.state = routing(Version("v1", VersionStatus.CURRENT), current="v1")
    done = await tick(kube, temporal, spec("v1"))
    assert kube.deleted == ["docs-workflow"]
    assert "UnversionedDeleted" in [n.reason for n in done.notices]
