"""A CPU pod must be able to hold every extraction lane at its limit: below that, large
documents together get the whole worker OOM-killed instead of failing alone. Such a
spec is said (a Warning), not refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from docpipe_operator import POOLS, reconcile, spec, trust
from docpipe_operator.kube import Outcome
from docpipe_operator.sizing import memory_needed_mb, quantity_bytes, sizing_problems

ROOT = Path(__file__).resolve().parents[2]


def cpu_pool(limits: dict[str, Any] | None = None, **pool: Any) -> spec.PipelineSpec:
    cpu: dict[str, Any] = {"image": "docpipe/cpu:1", **pool}
    if limits is not None:
        cpu["resources"] = {"limits": limits}
    pools = {kind: {"image": f"docpipe/{kind}:1"} for kind in POOLS} | {"cpu": cpu}
    return spec.parse({"temporal": {"address": "temporal:7233"}, "pools": pools}, "docs")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6Gi", 6 * 1024**3),
        ("512Mi", 512 * 1024**2),
        ("8G", 8e9),
        ("1e9", 1e9),
        (1073741824, 1073741824),
        ("128974848000m", 128974848),
        ("lots", None),
    ],
)
def test_memory_quantities_read_as_kubernetes_writes_them(text: Any, expected: float) -> None:
    assert quantity_bytes(text) == expected


def test_eight_lanes_need_eight_gibibytes_and_the_worker() -> None:
    pipeline = cpu_pool({"memory": "6Gi"}, concurrency=8)
    assert memory_needed_mb(pipeline.pools["cpu"]) == 8 * 1024 + 512
    (problem,) = sizing_problems(pipeline)
    assert "6Gi is below 8704 Mi" in problem and "OOM-killed" in problem


def test_a_limit_that_holds_every_lane_is_fine() -> None:
    assert sizing_problems(cpu_pool({"memory": "9Gi"}, concurrency=8)) == []


def test_no_limit_means_nothing_to_contradict() -> None:
    assert sizing_problems(cpu_pool(None, concurrency=8)) == []
    assert sizing_problems(cpu_pool({"cpu": "2"}, concurrency=8)) == []


def test_a_lower_lane_limit_in_the_pool_env_is_taken_into_account() -> None:
    env = [{"name": "CPU_EXTRACT_MEMORY_LIMIT_MB", "value": "512"}]
    assert sizing_problems(cpu_pool({"memory": "6Gi"}, concurrency=8, env=env)) == []


def test_the_shipped_examples_are_sized_for_their_lanes() -> None:
    for path in (ROOT / "deploy/examples/full.yaml",):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "DocumentPipeline":
                parsed = spec.parse(document["spec"], document["metadata"]["name"])
                assert sizing_problems(parsed) == [], path
    values = yaml.safe_load((ROOT / "helm/docpipe/ci/production-values.yaml").read_text())
    pipeline = values["pipeline"]["spec"]
    for kind in POOLS:  # the chart fills in its own images
        pipeline["pools"][kind].setdefault("image", f"docpipe/{kind}:1")
    assert sizing_problems(spec.parse(pipeline, "docs")) == []


class AppliesEverything:
    async def apply(self, manifest: dict[str, Any], owner_uid: str) -> Outcome:
        return Outcome.UNCHANGED

    async def delete_owned(self, kind: str, namespace: str, name: str, owner: str) -> bool:
        return False

    async def secret_labels(self, namespace: str, name: str) -> dict[str, str]:
        return {}


def test_an_undersized_pool_is_rolled_out_with_a_warning() -> None:
    pipeline = cpu_pool({"memory": "2Gi"}, concurrency=4)
    body = {
        "metadata": {"name": "docs", "namespace": "docpipe", "uid": "u1", "generation": 1},
        "spec": {},
    }
    result = asyncio.run(
        reconcile.ensure_workloads(
            AppliesEverything(),  # type: ignore[arg-type]
            body,
            pipeline,
            policy=trust.TrustPolicy(allowed_images=("*",)),
        )
    )
    warnings = [n for n in result.notices if n.type == "Warning"]
    assert [n.reason for n in warnings] == [reconcile.MEMORY_LIMIT_TOO_LOW]
    assert not result.refusals
