"""A versioned workflow pool rolled from v1 to v2 by the real kopf operator, against
the emulated Kubernetes API and a real Temporal dev server.

No pods run in the emulator: the test plays them. It reads the Worker Deployment
name and Build ID the operator rendered into each version's Deployment and starts a
real Temporal worker with exactly those, in this process, as that Deployment's pods
would. The dev server recomputes drainage every second (dynamic config), so
"drained" is seen in seconds. Every wait polls with a deadline: nothing depends on
the order in which the operator's rounds, the workers and the server act.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from operator_harness import Cluster, eventually, start_temporal, stop_temporal
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkerDeploymentConfig
from test_operator import pipeline, pools, reason_events
from test_operator_rollouts import condition
from versioned_workflows import FAST_DRAINAGE, WaitForSignalV1, WaitForSignalV2, start_waiting

from docpipe.local.devstack import TemporalServer

DEADLINE_S = 60.0
IMAGE = "ghcr.io/example/docpipe-io"
DEPLOYMENTS = "apps/v1/deployments"


@pytest.fixture(scope="module")
def versioning_temporal() -> Iterator[TemporalServer]:
    """A dev server of its own, with drainage refreshed every second."""
    server = start_temporal(FAST_DRAINAGE)
    yield server
    stop_temporal(server)


def versioned_pipeline(name: str, address: str, tag: str) -> dict[str, Any]:
    """The full example, its workflow pool versioned: ramp 50 %, then Current; a drained
    version scaled to zero at once and deleted two seconds later."""
    rollout = {
        "strategy": "Progressive",
        "steps": [{"rampPercentage": 50, "pauseDuration": "0s"}],
        "scaleDownDelay": "0s",
        "deleteDelay": "2s",
    }
    return pipeline(
        name,
        address,
        workflow={"image": f"{IMAGE}:{tag}", "versioning": {"enabled": True, "rollout": rollout}},
    )


def rendered_env(cluster: Cluster, deployment: str) -> dict[str, str]:
    """The worker container's env, as the operator rendered it into the Deployment."""
    found = cluster.deployment(deployment)
    assert found is not None, f"no Deployment {deployment}"
    (container,) = found["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


@asynccontextmanager
async def pods_of(
    cluster: Cluster, client: Client, deployment: str, workflow_class: type
) -> AsyncIterator[None]:
    """Play the Deployment's pods: a worker with the Worker Deployment, Build ID and
    queue the operator rendered for it, polling until the block ends."""
    env = rendered_env(cluster, deployment)
    worker = Worker(
        client,
        task_queue=env["WORKFLOW_TASK_QUEUE"],
        workflows=[workflow_class],
        workflow_runner=UnsandboxedWorkflowRunner(),
        deployment_config=WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(
                deployment_name=env["WORKER_DEPLOYMENT_NAME"], build_id=env["WORKER_BUILD_ID"]
            ),
            use_worker_versioning=True,
        ),
        graceful_shutdown_timeout=timedelta(seconds=5),
    )
    async with worker:
        yield


async def running_on(handle: WorkflowHandle[Any, str]) -> str:
    async def ask() -> str | None:
        try:
            return await handle.query("version", result_type=str)
        except Exception:  # not picked up yet
            return None

    return await eventually(ask, timeout=DEADLINE_S, interval=0.3)


def versions(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {v["buildId"]: v for v in pools(cluster, "docs")["workflow"].get("versions") or []}


async def test_a_new_image_rolls_out_as_a_new_version_and_the_old_one_goes_once_drained(
    cluster: Cluster, operator: None, versioning_temporal: TemporalServer
) -> None:
    client = await Client.connect(versioning_temporal.address)
    await cluster.create_pipeline(versioned_pipeline("docs", versioning_temporal.address, "v1"))

    # v1's Deployment, instead of the unversioned docs-workflow.
    await eventually(lambda: cluster.deployment("docs-workflow-v1"))
    assert cluster.deployment("docs-workflow") is None
    env = rendered_env(cluster, "docs-workflow-v1")
    assert (env["WORKER_DEPLOYMENT_NAME"], env["WORKER_BUILD_ID"]) == (
        "docpipe-test/docs-workflow",
        "v1",
    )
    queue = env["WORKFLOW_TASK_QUEUE"]
    # No pod has polled yet: Temporal cannot route to v1.
    waiting = await eventually(
        lambda: (
            (c := condition(cluster.pipeline("docs"), "Rollout")).get("reason")
            == "WaitingForPollers"
            and c
        )
    )
    assert waiting["status"] == "False"

    async with pods_of(cluster, client, "docs-workflow-v1", WaitForSignalV1):
        # The first version has nothing to protect: Current at once.
        await eventually(lambda: pools(cluster, "docs")["workflow"].get("currentBuildId") == "v1")
        await eventually(
            lambda: condition(cluster.pipeline("docs"), "Rollout").get("status") == "True"
        )
        old = await start_waiting(client, queue)
        assert await running_on(old) == "v1"

        await cluster.patch_pipeline(
            "docs", {"spec": {"pools": {"workflow": {"image": f"{IMAGE}:v2"}}}}
        )
        # v2 appears alongside v1; v1 keeps its own image.
        await eventually(lambda: cluster.deployment("docs-workflow-v2"))
        assert rendered_env(cluster, "docs-workflow-v2")["WORKER_BUILD_ID"] == "v2"
        v1_image = cluster.deployment("docs-workflow-v1")["spec"]["template"]["spec"]["containers"][
            0
        ]["image"]  # type: ignore[index]
        assert v1_image == f"{IMAGE}:v1"
        await eventually(lambda: pools(cluster, "docs")["workflow"].get("targetBuildId") == "v2")

        async with pods_of(cluster, client, "docs-workflow-v2", WaitForSignalV2):
            await eventually(
                lambda: pools(cluster, "docs")["workflow"].get("currentBuildId") == "v2",
                timeout=DEADLINE_S,
            )
            steps = reason_events(cluster, "RolloutStep")
            assert any("ramping v2 to 50 %" in m for m in steps), steps
            assert any("making v2 Current" in m for m in steps), steps

            # New workflows run v2's code; the open one stays pinned to v1, whose
            # Deployment stays while it drains.
            new = await start_waiting(client, queue)
            assert await running_on(new) == "v2"
            await new.signal("go")
            assert await new.result() == "finished on v2"
            draining = await eventually(
                lambda: (v := versions(cluster).get("v1")) and v.get("status") == "Draining" and v,
                timeout=DEADLINE_S,
            )
            assert draining["role"] == "Drain"
            assert cluster.deployment("docs-workflow-v1") is not None
            assert versions(cluster)["v2"]["status"] == "Current"
            assert versions(cluster)["v2"]["role"] == "Serve"
            assert await old.query("version", result_type=str) == "v1"

            # The pinned workflow finishes on v1: v1 drains, goes to zero, then away.
            await old.signal("go")
            assert await old.result() == "finished on v1"
            await eventually(
                lambda: cluster.deployment("docs-workflow-v1") is None, timeout=DEADLINE_S
            )

    history = cluster.api.objects[DEPLOYMENTS, "docpipe-test", "docs-workflow-v1"].history
    assert any(version.get("spec", {}).get("replicas") == 0 for version in history), (
        "v1 was scaled to zero before it was deleted"
    )
    # kopf posts a round's Events after the round: they may land after its deletion.
    assert await eventually(lambda: reason_events(cluster, "VersionScaledToZero"))
    assert await eventually(lambda: reason_events(cluster, "VersionDeleted"))
    await eventually(lambda: set(versions(cluster)) == {"v2"})
    assert cluster.deployment("docs-workflow-v2") is not None
    assert pools(cluster, "docs")["workflow"]["currentBuildId"] == "v2"
    assert condition(cluster.pipeline("docs"), "Rollout")["reason"] == "Steady"
