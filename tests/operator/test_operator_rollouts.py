"""Rollouts as the user sees them in status: a template that is not on every
pod is not Ready, and a rollout the Deployment controller gave up on is
Degraded with a Warning, although the old pods stay ready."""

from __future__ import annotations

import asyncio
from typing import Any

from operator_harness import Cluster, eventually
from test_operator import pipeline, reason_events

from docpipe.local.devstack import TemporalServer
from docpipe_operator import POOLS


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    """The condition of that type, or {} before the operator wrote it."""
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


async def roll_cpu_image(cluster: Cluster, tag: str) -> None:
    """Give the cpu pool image ``tag`` and wait until its Deployment's template has it."""
    image = f"ghcr.io/example/docpipe-cpu:{tag}"
    await cluster.patch_pipeline("docs", {"spec": {"pools": {"cpu": {"image": image}}}})
    await eventually(
        lambda: (
            cluster.deployment("docs-cpu")["spec"]["template"]["spec"]["containers"][0][  # type: ignore[index]
                "image"
            ]
            == image
        )
    )


STUCK = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
    "message": 'ReplicaSet "docs-cpu-5d8f" has timed out progressing.',
}


async def test_a_bad_image_rollout_is_not_ready_and_a_stuck_one_is_degraded(
    cluster: Cluster, operator: None, temporal: TemporalServer
) -> None:
    await cluster.create_pipeline(pipeline("docs", temporal.address))
    await eventually(lambda: all(cluster.deployment(f"docs-{k}") for k in POOLS))
    for kind in POOLS:
        cluster.set_ready(f"docs-{kind}", cluster.deployment(f"docs-{kind}")["spec"]["replicas"])  # type: ignore[index]
    await eventually(lambda: condition(cluster.pipeline("docs"), "Ready").get("status") == "True")

    await roll_cpu_image(cluster, "broken")
    # maxUnavailable: 0: the old pod stays ready, the new one never starts.
    cluster.set_deployment_status("docs-cpu", ready=1, updated=0)
    ready = await eventually(
        lambda: (
            (c := condition(cluster.pipeline("docs"), "Ready")).get("reason") == "RollingOut" and c
        )
    )
    assert ready["status"] == "False" and "cpu" in ready["message"]
    assert cluster.pipeline("docs")["status"]["pools"]["cpu"]["rollout"] == "Progressing"  # type: ignore[index]

    # progressDeadlineSeconds passes: the controller says so, and so does the pipeline.
    cluster.set_deployment_status("docs-cpu", ready=1, updated=0, conditions=[STUCK])
    progressing = await eventually(
        lambda: (
            (c := condition(cluster.pipeline("docs"), "Progressing")).get("status") == "False" and c
        )
    )
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert "timed out progressing" in progressing["message"]
    assert cluster.pipeline("docs")["status"]["phase"] == "Degraded"  # type: ignore[index]
    assert condition(cluster.pipeline("docs"), "Ready")["reason"] == "RolloutStuck"
    warnings = await eventually(lambda: reason_events(cluster, "RolloutStuck"))
    assert warnings[0].startswith("cpu: ")
    await asyncio.sleep(1.5)  # more rounds: still one Warning
    assert len(reason_events(cluster, "RolloutStuck")) == 1

    # A fixed image rolls out: Ready again.
    await roll_cpu_image(cluster, "0.1.1")
    cluster.set_deployment_status("docs-cpu", ready=1, updated=1, conditions=[])
    await eventually(lambda: condition(cluster.pipeline("docs"), "Ready").get("status") == "True")
    assert condition(cluster.pipeline("docs"), "Progressing")["reason"] == "RolloutComplete"
    assert cluster.pipeline("docs")["status"]["phase"] == "Running"  # type: ignore[index]
