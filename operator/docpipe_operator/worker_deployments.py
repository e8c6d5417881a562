"""Temporal's Worker Deployment API, in the terms of versioning.py's policy.

Thin async calls: DescribeWorkerDeployment (as a :class:`versioning.DeploymentState`),
SetWorkerDeploymentCurrentVersion and SetWorkerDeploymentRampingVersion (a plan's
routing change), DescribeWorkerDeploymentVersion (drainage, and per-version backlog
for the scaler); :func:`advance` is one tick of a rollout made of them, and
:class:`TemporalVersioning` the same calls within the operator's Temporal deadline:
the :class:`VersioningApi` a rollout tick (rollout.py) makes its calls through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from temporalio.api.deployment.v1 import WorkerDeploymentInfo, WorkerDeploymentVersion
from temporalio.api.enums.v1 import VersionDrainageStatus, WorkerDeploymentVersionStatus
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from docpipe.queue_stats import QueueStats, live_pollers, queue_stats, task_queue_type
from docpipe_operator.versioning import (
    DeploymentState,
    Plan,
    Rollout,
    RoutingChange,
    SetCurrent,
    Version,
    VersionStatus,
    plan,
)

IDENTITY = "docpipe-operator"
"""Who Temporal records as the last modifier of a deployment's routing."""

_STATUS = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: VersionStatus.INACTIVE,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CREATED: VersionStatus.INACTIVE,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: VersionStatus.CURRENT,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: VersionStatus.RAMPING,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: VersionStatus.DRAINING,
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: VersionStatus.DRAINED,
}


def _time(message: object, name: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return getattr(message, name).ToDatetime(tzinfo=UTC)


def deployment_state(info: WorkerDeploymentInfo, conflict_token: bytes = b"") -> DeploymentState:
    """Temporal's description of a deployment in the policy's terms."""
    versions: dict[str, Version] = {}
    for summary in info.version_summaries:
        build_id = summary.deployment_version.build_id
        status = _STATUS.get(summary.status)
        if status is None:  # UNSPECIFIED: an older server; infer from drainage
            status = (
                VersionStatus.DRAINED
                if summary.drainage_status == VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINED
                else VersionStatus.DRAINING
                if summary.drainage_status == VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINING
                else VersionStatus.INACTIVE
            )
        drained_since = None
        if status is VersionStatus.DRAINED and summary.HasField("drainage_info"):
            drained_since = _time(summary.drainage_info, "last_changed_time")
        versions[build_id] = Version(build_id, status, drained_since)
    routing = info.routing_config
    current = routing.current_deployment_version.build_id or None
    ramping = routing.ramping_deployment_version.build_id or None
    ramp_changed = None
    if ramping is not None:
        # The later of "this version started ramping" and "its share last changed".
        times = [
            t
            for t in (
                _time(routing, "ramping_version_changed_time"),
                _time(routing, "ramping_version_percentage_changed_time"),
            )
            if t is not None
        ]
        ramp_changed = max(times) if times else None
    return DeploymentState(
        versions=versions,
        current=current,
        ramping=ramping,
        ramp_percent=float(routing.ramping_version_percentage) if ramping else 0.0,
        ramp_changed=ramp_changed,
        conflict_token=conflict_token,
    )


async def describe_deployment(client: Client, name: str) -> DeploymentState | None:
    """The deployment's versions and routing; None if Temporal does not know it yet."""
    try:
        response = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return deployment_state(response.worker_deployment_info, response.conflict_token)


async def set_current(
    client: Client, name: str, build_id: str, conflict_token: bytes = b""
) -> None:
    """Route all new workflows (and AUTO_UPGRADE ones) to ``build_id``; the former
    Current version starts draining. Refused while the version has no pollers."""
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=name,
            build_id=build_id,
            conflict_token=conflict_token,
            identity=IDENTITY,
        )
    )


async def set_ramp(
    client: Client, name: str, build_id: str | None, percent: float, conflict_token: bytes = b""
) -> None:
    """Route ``percent`` % of new workflows to ``build_id``; None clears the ramp."""
    await client.workflow_service.set_worker_deployment_ramping_version(
        SetWorkerDeploymentRampingVersionRequest(
            namespace=client.namespace,
            deployment_name=name,
            build_id=build_id or "",
            percentage=percent if build_id else 0.0,
            conflict_token=conflict_token,
            identity=IDENTITY,
        )
    )


async def apply_routing(
    client: Client, name: str, change: RoutingChange, conflict_token: bytes = b""
) -> None:
    """Make the plan's routing change. A conflict (someone changed routing since
    the describe) raises; the next tick describes again and decides afresh."""
    if isinstance(change, SetCurrent):
        await set_current(client, name, change.build_id, conflict_token)
    else:
        await set_ramp(client, name, change.build_id, change.percent, conflict_token)


@dataclass(frozen=True)
class VersionDrainage:
    status: VersionStatus
    drainage_checked: datetime | None
    """When the server last counted the version's open pinned workflows."""


async def describe_version(client: Client, name: str, build_id: str) -> VersionDrainage:
    """One version's status, with when its drainage was last checked."""
    response = await client.workflow_service.describe_worker_deployment_version(
        DescribeWorkerDeploymentVersionRequest(
            namespace=client.namespace,
            deployment_version=WorkerDeploymentVersion(deployment_name=name, build_id=build_id),
        )
    )
    info = response.worker_deployment_version_info
    status = _STATUS.get(info.status, VersionStatus.INACTIVE)
    checked = (
        _time(info.drainage_info, "last_checked_time") if info.HasField("drainage_info") else None
    )
    return VersionDrainage(status, checked)


async def version_backlog(
    client: Client, name: str, build_id: str, queue: str, *, workflow: bool = False
) -> QueueStats | None:
    """Backlog of one version on one of its task queues (None: the server gave no stats).

    DescribeWorkerDeploymentVersion with report_task_queue_stats counts the tasks
    that will be dispatched to this version: a pinned workflow's tasks, and the
    share of new tasks routed to it as Current or Ramping. Live pollers come from
    DescribeTaskQueue's poller list, by the Build ID each poller declares.
    """
    described, pollers = await asyncio.gather(
        client.workflow_service.describe_worker_deployment_version(
            DescribeWorkerDeploymentVersionRequest(
                namespace=client.namespace,
                deployment_version=WorkerDeploymentVersion(deployment_name=name, build_id=build_id),
                report_task_queue_stats=True,
            )
        ),
        live_pollers_by_build_id(client, queue, workflow=workflow),
    )
    for entry in described.version_task_queues:
        if entry.name == queue and entry.type == task_queue_type(workflow):
            if not entry.HasField("stats"):
                return None  # missing data never reads as idle
            return queue_stats(queue, entry.stats, pollers.get(build_id, 0), workflow=workflow)
    return None


async def backlog_by_build_id(
    client: Client,
    name: str,
    build_ids: Collection[str],
    queue: str,
    *,
    workflow: bool = False,
) -> dict[str, QueueStats | None]:
    """Per-version backlog of a pool's queue: what the autoscaler sizes each
    version's Deployment by. A version that could not be read maps to None."""
    ids = sorted(build_ids)
    results = await asyncio.gather(
        *(version_backlog(client, name, b, queue, workflow=workflow) for b in ids),
        return_exceptions=True,
    )
    return {
        build_id: (None if isinstance(result, BaseException) else result)
        for build_id, result in zip(ids, results, strict=True)
    }


async def live_pollers_by_build_id(
    client: Client, queue: str, *, workflow: bool = False
) -> dict[str, int]:
    """Pollers seen within LIVE_POLLER_WINDOW, by the Build ID they declare ("" unversioned)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=task_queue_type(workflow),
        )
    )
    counts: dict[str, int] = {}
    for poller in live_pollers(response.pollers, datetime.now(UTC)):
        build_id = poller.deployment_options.build_id
        counts[build_id] = counts.get(build_id, 0) + 1
    return counts


async def advance(
    client: Client,
    name: str,
    target: str,
    rollout: Rollout,
    deployed: Collection[str] = (),
    now: datetime | None = None,
) -> Plan:
    """One tick of a rollout: describe the deployment, plan, make the routing change.

    Returns the plan (its roles are for the caller to apply to the Deployments).
    Calling it again after a routing change takes the next step; a change that
    loses a race with another writer raises and is decided afresh next tick.
    """
    state = await describe_deployment(client, name)
    decided = plan(target, state, rollout, now or datetime.now(UTC), deployed)
    if decided.routing is not None and state is not None:
        await apply_routing(client, name, decided.routing, state.conflict_token)
    return decided


class VersioningApi(Protocol):
    """The Worker Deployment calls a tick makes (a fake in tests stands in for Temporal)."""

    async def describe(self, name: str) -> DeploymentState | None: ...

    async def route(self, name: str, change: RoutingChange, conflict_token: bytes) -> None: ...

    async def backlog(
        self, name: str, build_ids: Collection[str], queue: str, *, workflow: bool
    ) -> Mapping[str, QueueStats | None]: ...


@dataclass(frozen=True)
class TemporalVersioning:
    """:class:`VersioningApi` over this module's calls, each within the operator's
    Temporal deadline (a dead server costs a tick, not the operator)."""

    client: Client
    timeout_s: float

    async def describe(self, name: str) -> DeploymentState | None:
        return await asyncio.wait_for(describe_deployment(self.client, name), self.timeout_s)

    async def route(self, name: str, change: RoutingChange, conflict_token: bytes) -> None:
        await asyncio.wait_for(
            apply_routing(self.client, name, change, conflict_token), self.timeout_s
        )

    async def backlog(
        self, name: str, build_ids: Collection[str], queue: str, *, workflow: bool
    ) -> Mapping[str, QueueStats | None]:
        return await asyncio.wait_for(
            backlog_by_build_id(self.client, name, build_ids, queue, workflow=workflow),
            self.timeout_s,
        )
