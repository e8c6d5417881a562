"""Versioned rollouts of a pool's workers with Temporal Worker Deployments.

Each pool is a Temporal *Worker Deployment*; each image it ever ran is a
*version* of it, named by a Build ID. Temporal routes new workflows to the
deployment's Current version (and a percentage of them to a Ramping one),
while a PINNED workflow stays on the version it started on until it closes.
So a new image never replays an open workflow with changed code, as long as
the old version keeps running until Temporal says it is drained.

:func:`plan` is a pure policy: from the Build ID the spec asks for, what
Temporal reports about the deployment's versions and the clock, it decides the
next routing change (make Current, ramp to p %, clear a ramp, or none) and a
role for every live version (serve, drain, scale to zero, delete). It is called
every tick and does one step at a time, so it needs no memory of its own: the
state it resumes from is Temporal's (percentages and the times they changed),
which survives operator restarts. The calls to Temporal's Worker Deployment API
that feed it and carry out its routing are worker_deployments.py.

The model is temporal-worker-controller's (``rollout.strategy`` AllAtOnce or
Progressive with ``steps`` of ramp percentage and pause; drained versions scaled
down and deleted after delays), adapted to pools that autoscale on backlog.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

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
