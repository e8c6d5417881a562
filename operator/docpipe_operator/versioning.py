"""Versioned rollouts of a pool's workers with Temporal Worker Deployments.

Each pool is a Temporal *Worker Deployment*; each image it ever ran is a
*version* of it, named by a Build ID. Temporal routes new workflows to the
deployment's Current version (and a percentage of them to a Ramping one),
while a PINNED workflow stays on the version it started on until it closes.
So a new image never replays an open workflow with changed code, as long as
the old version keeps running until Temporal says it is drained.

This module has two halves:

* :func:`plan`, a pure policy: from the Build ID the spec asks for, what
  Temporal reports about the deployment's versions and the clock, it decides
  the next routing change (make Current, ramp to p %, clear a ramp, or none)
  and a role for every live version (serve, drain, scale to zero, delete).
  It is called every tick and does one step at a time, so it needs no memory
  of its own: the state it resumes from is Temporal's (percentages and the
  times they changed), which survives operator restarts.
* thin async calls to Temporal's Worker Deployment API (DescribeWorkerDeployment,
  SetWorkerDeploymentCurrentVersion, SetWorkerDeploymentRampingVersion,
  DescribeWorkerDeploymentVersion) and per-version backlog for the scaler.

The model is temporal-worker-controller's (``rollout.strategy`` AllAtOnce or
Progressive with ``steps`` of ramp percentage and pause; drained versions scaled
down and deleted after delays), adapted to pools that autoscale on backlog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from temporalio.api.deployment.v1 import WorkerDeploymentInfo, WorkerDeploymentVersion
from temporalio.api.enums.v1 import (
    TaskQueueType,
    VersionDrainageStatus,
    WorkerDeploymentVersionStatus,
)
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

from docpipe.queue_stats import LIVE_POLLER_WINDOW, QueueStats

IDENTITY = "docpipe-operator"
"""Who Temporal records as the last modifier of a deployment's routing."""

# --- The policy's vocabulary ---------------------------------------------------


class Strategy(StrEnum):
    ALL_AT_ONCE = "AllAtOnce"
    """The new version becomes Current as soon as its workers poll."""
    PROGRESSIVE = "Progressive"
    """The new version ramps through ``steps`` (percent, pause), then becomes Current."""
    MANUAL = "Manual"
    """The operator runs the versions' pods but never changes routing (a person does)."""


@dataclass(frozen=True)
class RampStep:
    percent: float
    """Share of new workflows (and of AUTO_UPGRADE ones) routed to the new version."""
    pause: timedelta
    """How long to hold this share before the next step (or before making it Current)."""


@dataclass(frozen=True)
class Rollout:
    strategy: Strategy = Strategy.ALL_AT_ONCE
    steps: tuple[RampStep, ...] = ()
    scale_down_delay: timedelta = timedelta(hours=1)
    """How long a drained version keeps its pods: queries on its closed workflows
    are answered by its workers (drained means no open pinned workflow, not no reader)."""
    delete_delay: timedelta = timedelta(0)
    """How long a drained version's Deployment stays at zero replicas before it is
    deleted (a rollback to it within that time only has to scale it up)."""

    def __post_init__(self) -> None:
        if self.strategy is Strategy.PROGRESSIVE and not self.steps:
            raise ValueError("a Progressive rollout needs at least one step")
        percents = [step.percent for step in self.steps]
        if any(not 0 < p <= 100 for p in percents):
            raise ValueError("ramp percentages must be above 0 and at most 100")
        if percents != sorted(set(percents)):
            raise ValueError("ramp percentages must increase from step to step")
        if any(step.pause < timedelta(0) for step in self.steps):
            raise ValueError("a step's pause cannot be negative")
        if self.scale_down_delay < timedelta(0) or self.delete_delay < timedelta(0):
            raise ValueError("delays cannot be negative")


class VersionStatus(StrEnum):
    """A version's place in the deployment, as Temporal reports it."""

    INACTIVE = "Inactive"
    """Registered (its workers polled) but never Current or Ramping."""
    CURRENT = "Current"
    RAMPING = "Ramping"
    DRAINING = "Draining"
    """No longer routed new work; pinned workflows are still open on it."""
    DRAINED = "Drained"
    """No longer routed new work and no open pinned workflow left on it."""


@dataclass(frozen=True)
class Version:
    build_id: str
    status: VersionStatus
    drained_since: datetime | None = None
    """When Temporal last saw its drainage status change to drained."""


@dataclass(frozen=True)
class DeploymentState:
    """What Temporal reports about one Worker Deployment (DescribeWorkerDeployment)."""

    versions: Mapping[str, Version]
    """By Build ID: every version Temporal still knows."""
    current: str | None = None
    """Build ID of the Current version; None: new workflows go to unversioned workers."""
    ramping: str | None = None
    ramp_percent: float = 0.0
    ramp_changed: datetime | None = None
    """When the ramp's version or percentage last changed: a step's pause runs from it."""
    conflict_token: bytes = b""
    """Passed back on every routing change, so a concurrent change (a person with
    the CLI, another operator replica) makes ours fail instead of overwriting it."""


@dataclass(frozen=True)
class SetCurrent:
    build_id: str


@dataclass(frozen=True)
class SetRamp:
    build_id: str | None
    """None clears the ramp."""
    percent: float


RoutingChange = SetCurrent | SetRamp


class Role(StrEnum):
    """What a version's Kubernetes Deployment should be doing."""

    SERVE = "Serve"
    """Target, Current or Ramping: autoscaled on its own backlog within the pool's bounds."""
    DRAIN = "Drain"
    """Pinned workflows (or recent readers) still need it: kept, scaled on its own
    backlog, may go down to one replica (zero where the pool's minimum is zero)."""
    SCALE_TO_ZERO = "ScaleToZero"
    DELETE = "Delete"


class Phase(StrEnum):
    WAITING_FOR_POLLERS = "WaitingForPollers"
    RAMPING = "Ramping"
    STEADY = "Steady"
    MANUAL = "Manual"


@dataclass(frozen=True)
class Plan:
    routing: RoutingChange | None
    """The one routing change to make now, if any."""
    roles: Mapping[str, Role]
    """By Build ID: the target, every version that has a Deployment and every version
    Temporal still routes to or drains (one without a Deployment needs its pods back)."""
    phase: Phase
    message: str
    recheck_after: timedelta | None = None
    """When something is next due (a ramp step, a drained version's delay), if anything."""
    notes: tuple[str, ...] = field(default=())


# --- The policy ------------------------------------------------------------------


def plan(
    target: str,
    state: DeploymentState | None,
    rollout: Rollout,
    now: datetime,
    deployed: Collection[str] = (),
) -> Plan:
    """The next step of rolling ``target`` out, and what every version's pods should do.

    ``state`` is None when Temporal does not know the deployment yet (no worker
    of it has polled); ``deployed`` holds the Build IDs that have a Deployment.
    """
    routing, phase, message, routing_due = _routing(target, state, rollout, now)
    roles, roles_due = _roles(target, state, rollout, now, deployed)
    dues = [due for due in (routing_due, roles_due) if due is not None]
    return Plan(
        routing=routing,
        roles=roles,
        phase=phase,
        message=message,
        recheck_after=min(dues) if dues else None,
    )


def _routing(
    target: str, state: DeploymentState | None, rollout: Rollout, now: datetime
) -> tuple[RoutingChange | None, Phase, str, timedelta | None]:
    if state is None or target not in state.versions:
        # A version exists in Temporal once its workers poll; routing to it before
        # that would send work nowhere (the server refuses it anyway).
        return None, Phase.WAITING_FOR_POLLERS, f"waiting for workers of {target} to poll", None
    if state.current == target:
        if state.ramping is not None:
            # A rollout of another version was abandoned (the spec went back to the
            # Current one): stop sending it a share of new workflows.
            return SetRamp(None, 0), Phase.STEADY, f"{target} is Current; ramp cleared", None
        return None, Phase.STEADY, f"{target} is Current", None
    if rollout.strategy is Strategy.MANUAL:
        return None, Phase.MANUAL, f"{target} is registered; routing is left to you", None
    if state.current is None or rollout.strategy is Strategy.ALL_AT_ONCE:
        # With no Current version there is nothing to protect by ramping: new
        # workflows go to unversioned workers, and the first version replaces them.
        return SetCurrent(target), Phase.STEADY, f"making {target} Current", None
    return _progressive(target, state, rollout.steps, now)


def _progressive(
    target: str, state: DeploymentState, steps: Sequence[RampStep], now: datetime
) -> tuple[RoutingChange | None, Phase, str, timedelta | None]:
    first = steps[0]
    if state.ramping != target:
        return (
            SetRamp(target, first.percent),
            Phase.RAMPING,
            f"ramping {target} to {first.percent:g} %",
            first.pause,
        )
    # Resume from the step at or below the live percentage: after an operator
    # restart, or when someone moved the ramp by hand, the rollout goes on from
    # where Temporal says it is, and never skips a step's full pause.
    index = max(
        (i for i, step in enumerate(steps) if step.percent <= state.ramp_percent), default=0
    )
    step = steps[index]
    if state.ramp_percent != step.percent or state.ramp_changed is None:
        return (
            SetRamp(target, step.percent),
            Phase.RAMPING,
            f"ramping {target} to {step.percent:g} % (step {index + 1} of {len(steps)})",
            step.pause,
        )
    due = state.ramp_changed + step.pause
    if now < due:
        return (
            None,
            Phase.RAMPING,
            f"{target} at {step.percent:g} % (step {index + 1} of {len(steps)}) until {due:%H:%M:%S}",
            due - now,
        )
    if index + 1 < len(steps):
        following = steps[index + 1]
        return (
            SetRamp(target, following.percent),
            Phase.RAMPING,
            f"ramping {target} to {following.percent:g} % (step {index + 2} of {len(steps)})",
            following.pause,
        )
    return SetCurrent(target), Phase.STEADY, f"ramp done: making {target} Current", None


def _roles(
    target: str,
    state: DeploymentState | None,
    rollout: Rollout,
    now: datetime,
    deployed: Collection[str],
) -> tuple[dict[str, Role], timedelta | None]:
    roles: dict[str, Role] = {}
    dues: list[timedelta] = []
    versions = state.versions if state is not None else {}
    routed = {state.current, state.ramping} if state is not None else set()
    for build_id in sorted({target, *deployed, *versions}):
        version = versions.get(build_id)
        if build_id == target or build_id in routed:
            roles[build_id] = Role.SERVE
        elif state is None:
            # Temporal does not know this deployment at all (renamed, or its first
            # version has not polled yet): nothing proves these pods idle.
            roles[build_id] = Role.DRAIN
        elif version is None or version.status is VersionStatus.INACTIVE:
            # Never registered, or never Current nor Ramping: no workflow was
            # routed to it. (One pinned there by hand, with a versioning
            # override, is outside what the operator manages.)
            if build_id in deployed:
                roles[build_id] = Role.DELETE
        elif version.status is VersionStatus.DRAINED:
            role, due = _drained_role(version, rollout, now)
            if build_id in deployed or role is Role.DRAIN:
                roles[build_id] = role
            if due is not None:
                dues.append(due)
        else:  # Draining, or Current/Ramping in a summary older than the routing config
            roles[build_id] = Role.DRAIN
    return roles, min(dues) if dues else None


def _drained_role(
    version: Version, rollout: Rollout, now: datetime
) -> tuple[Role, timedelta | None]:
    since = version.drained_since or now
    scale_down_at = since + rollout.scale_down_delay
    delete_at = scale_down_at + rollout.delete_delay
    if now >= delete_at:
        return Role.DELETE, None
    if now >= scale_down_at:
        return Role.SCALE_TO_ZERO, delete_at - now
    return Role.DRAIN, scale_down_at - now


def replica_bounds(role: Role, minimum: int, maximum: int) -> tuple[int, int]:
    """The (min, max) replicas the autoscaler may give a version in ``role``.

    Serving versions get the pool's bounds. A draining one may shrink to one pod
    (zero if the pool allows zero): its pinned workflows mostly wait, and its own
    backlog scales it up when one of them has work.
    """
    if role is Role.SERVE:
        return minimum, maximum
    if role is Role.DRAIN:
        return min(minimum, 1), maximum
    return 0, 0


# --- Temporal's Worker Deployment API -----------------------------------------------

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
    task_type = (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        if workflow
        else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    )
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
        if entry.name == queue and entry.type == task_type:
            if not entry.HasField("stats"):
                return None  # missing data never reads as idle
            stats = entry.stats
            return QueueStats(
                queue=queue,
                kind="workflow" if workflow else "activity",
                backlog_count=int(stats.approximate_backlog_count),
                backlog_age_s=stats.approximate_backlog_age.ToTimedelta().total_seconds(),
                add_rate=float(stats.tasks_add_rate),
                dispatch_rate=float(stats.tasks_dispatch_rate),
                live_pollers=pollers.get(build_id, 0),
            )
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
            task_queue_type=(
                TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
                if workflow
                else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
            ),
        )
    )
    now = datetime.now(UTC)
    counts: dict[str, int] = {}
    for poller in response.pollers:
        if not poller.HasField("last_access_time"):
            continue
        if now - poller.last_access_time.ToDatetime(tzinfo=UTC) > LIVE_POLLER_WINDOW:
            continue
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
