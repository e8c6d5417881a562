"""The rollout policy for versioned pools, as tables of situations and decisions.

Each row reads: given the Build ID the spec asks for, what Temporal reports
about the deployment (Current, Ramping with its share and since when, every
version's status) and the time, the policy makes at most one routing change
and gives every version's pods a role. Temporal's state is the only memory,
so every row is also what happens after an operator restart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.deployment.v1 import (
    RoutingConfig,
    VersionDrainageInfo,
    WorkerDeploymentInfo,
    WorkerDeploymentVersion,
)
from temporalio.api.enums.v1 import VersionDrainageStatus, WorkerDeploymentVersionStatus

from docpipe_operator.versioning import (
    DeploymentState,
    Phase,
    RampStep,
    Role,
    Rollout,
    SetCurrent,
    SetRamp,
    Strategy,
    Version,
    VersionStatus,
    plan,
    replica_bounds,
)
from docpipe_operator.worker_deployments import deployment_state

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

ALL_AT_ONCE = Rollout(Strategy.ALL_AT_ONCE, scale_down_delay=10 * MIN, delete_delay=5 * MIN)
PROGRESSIVE = Rollout(
    Strategy.PROGRESSIVE,
    steps=(RampStep(10, 5 * MIN), RampStep(50, 10 * MIN)),
    scale_down_delay=10 * MIN,
)
MANUAL = Rollout(Strategy.MANUAL)


def state(
    *versions: tuple[str, VersionStatus] | tuple[str, VersionStatus, datetime],
    current: str | None = None,
    ramping: str | None = None,
    percent: float = 0.0,
    ramp_changed: datetime | None = None,
) -> DeploymentState:
    return DeploymentState(
        versions={v[0]: Version(*v) for v in versions},
        current=current,
        ramping=ramping,
        ramp_percent=percent,
        ramp_changed=ramp_changed,
    )


V1_CURRENT = ("v1", VersionStatus.CURRENT)
V2_INACTIVE = ("v2", VersionStatus.INACTIVE)
V2_RAMPING = ("v2", VersionStatus.RAMPING)
ONLY_V1 = state(V1_CURRENT, current="v1")
V2_REGISTERED = state(V1_CURRENT, V2_INACTIVE, current="v1")
"""v1 Current; v2's workers have polled, nothing is routed to it yet."""


def ramping(
    percent: float, since: timedelta, *others: tuple[str, VersionStatus]
) -> DeploymentState:
    """v1 Current, v2 Ramping at ``percent`` %, its share last changed ``since`` ago."""
    return state(
        V1_CURRENT,
        V2_RAMPING,
        *others,
        current="v1",
        ramping="v2",
        percent=percent,
        ramp_changed=NOW - since,
    )


def v2_current(v1: VersionStatus, drained_since: timedelta | None = None) -> DeploymentState:
    """v2 Current and v1 in status ``v1`` (drained ``drained_since`` ago)."""
    old = ("v1", v1) if drained_since is None else ("v1", v1, NOW - drained_since)
    return state(old, ("v2", VersionStatus.CURRENT), current="v2")


# --- Routing -----------------------------------------------------------------------

WAITING, STEADY, RAMPING = Phase.WAITING_FOR_POLLERS, Phase.STEADY, Phase.RAMPING
DRAINED, DRAINING = VersionStatus.DRAINED, VersionStatus.DRAINING

ROUTING = {
    # why: (target, state, rollout, expected change, expected phase)
    "nothing polled yet: wait": ("v1", None, ALL_AT_ONCE, None, WAITING),
    "the new version's workers have not polled: wait": ("v2", ONLY_V1, ALL_AT_ONCE, None, WAITING),
    "first version, no Current: make it Current even when Progressive": (
        "v1",
        state(("v1", VersionStatus.INACTIVE)),
        PROGRESSIVE,
        SetCurrent("v1"),
        STEADY,
    ),
    "AllAtOnce: Current as soon as registered": (
        "v2",
        V2_REGISTERED,
        ALL_AT_ONCE,
        SetCurrent("v2"),
        STEADY,
    ),
    "target already Current: nothing to do": (
        "v2",
        v2_current(DRAINING),
        ALL_AT_ONCE,
        None,
        STEADY,
    ),
    "rolled back to the Current version mid-ramp: clear the ramp": (
        "v1",
        ramping(10, timedelta(0)),
        PROGRESSIVE,
        SetRamp(None, 0),
        STEADY,
    ),
    "Manual: registered, but routing is left to a person": (
        "v2",
        V2_REGISTERED,
        MANUAL,
        None,
        Phase.MANUAL,
    ),
    "Progressive: start at the first step": (
        "v2",
        V2_REGISTERED,
        PROGRESSIVE,
        SetRamp("v2", 10),
        RAMPING,
    ),
    "Progressive: hold a step for its whole pause": (
        "v2",
        ramping(10, 4 * MIN),
        PROGRESSIVE,
        None,
        RAMPING,
    ),
    "Progressive: pause over, next step": (
        "v2",
        ramping(10, 5 * MIN),
        PROGRESSIVE,
        SetRamp("v2", 50),
        RAMPING,
    ),
    "Progressive: last step's pause over, make it Current": (
        "v2",
        ramping(50, 11 * MIN),
        PROGRESSIVE,
        SetCurrent("v2"),
        STEADY,
    ),
    "Progressive: a share moved by hand is reset to the step at or below it": (
        "v2",
        ramping(30, 60 * MIN),
        PROGRESSIVE,
        SetRamp("v2", 10),
        RAMPING,
    ),
    "Progressive: a share below the first step restarts the first step": (
        "v2",
        ramping(1, 60 * MIN),
        PROGRESSIVE,
        SetRamp("v2", 10),
        RAMPING,
    ),
    "Progressive: a newer target replaces another version's ramp from step one": (
        "v3",
        ramping(50, 60 * MIN, ("v3", VersionStatus.INACTIVE)),
        PROGRESSIVE,
        SetRamp("v3", 10),
        RAMPING,
    ),
    "rollback to a drained version: it becomes Current again": (
        "v1",
        v2_current(DRAINED, 3 * MIN),
        ALL_AT_ONCE,
        SetCurrent("v1"),
        STEADY,
    ),
}


@pytest.mark.parametrize(
    ("target", "temporal", "rollout", "change", "phase"),
    list(ROUTING.values()),
    ids=list(ROUTING),
)
def test_routing(target, temporal, rollout, change, phase) -> None:
    decided = plan(target, temporal, rollout, NOW)
    assert (decided.routing, decided.phase) == (change, phase)


def test_a_ramp_step_says_when_it_is_due() -> None:
    assert plan("v2", ramping(10, 2 * MIN), PROGRESSIVE, NOW).recheck_after == 3 * MIN


def test_each_tick_advances_at_most_one_step() -> None:
    """Long after the last change the ramp still goes 10 → 50 → Current, each share
    held for its pause: an operator that was down does not skip the steps."""
    assert plan("v2", ramping(10, 600 * MIN), PROGRESSIVE, NOW).routing == SetRamp("v2", 50)


# --- Roles of each version's pods ---------------------------------------------------

SERVE, DRAIN, DELETE = Role.SERVE, Role.DRAIN, Role.DELETE


def case(
    target: str, temporal: DeploymentState | None, deployed: str = "v1 v2", **roles: Role
) -> tuple[str, DeploymentState | None, set[str], dict[str, Role]]:
    """A row of ROLES: the versions with a Deployment (``deployed``), each version's role."""
    return target, temporal, set(deployed.split()), roles


ROLES = {
    "a new version waits for pollers while the Current one serves": case(
        "v2", ONLY_V1, v1=SERVE, v2=SERVE
    ),
    "while ramping both versions serve": case("v2", ramping(10, timedelta(0)), v1=SERVE, v2=SERVE),
    "the replaced version drains while pinned workflows are open": case(
        "v2", v2_current(DRAINING), v1=DRAIN, v2=SERVE
    ),
    "drained: keeps its pods for queries until the scale-down delay": case(
        "v2", v2_current(DRAINED, 9 * MIN), v1=DRAIN, v2=SERVE
    ),
    "drained past the scale-down delay: zero replicas": case(
        "v2", v2_current(DRAINED, 10 * MIN), v1=Role.SCALE_TO_ZERO, v2=SERVE
    ),
    "drained past both delays: delete the Deployment": case(
        "v2", v2_current(DRAINED, 15 * MIN), v1=DELETE, v2=SERVE
    ),
    "a drained version already deleted is not mentioned": case(
        "v2", v2_current(DRAINED, 15 * MIN), "v2", v2=SERVE
    ),
    "a draining version without pods needs them back": case(
        "v2", v2_current(DRAINING), "v2", v1=DRAIN, v2=SERVE
    ),
    "an abandoned target that never got traffic is deleted": case(
        "v3",
        state(V1_CURRENT, V2_INACTIVE, ("v3", VersionStatus.INACTIVE), current="v1"),
        "v1 v2 v3",
        v1=SERVE,
        v2=DELETE,
        v3=SERVE,
    ),
    "a Deployment whose workers never registered is deleted once Temporal knows the deployment": (
        case("v2", ONLY_V1, "v0 v1 v2", v0=DELETE, v1=SERVE, v2=SERVE)
    ),
    "Temporal does not know the deployment: nothing proves old pods idle": case(
        "v2", None, v1=DRAIN, v2=SERVE
    ),
    "the target is served even when Temporal calls it drained (rollback)": case(
        "v1", v2_current(DRAINED, 60 * MIN), v1=SERVE, v2=SERVE
    ),
}


@pytest.mark.parametrize(
    ("target", "temporal", "deployed", "roles"),
    list(ROLES.values()),
    ids=list(ROLES),
)
def test_roles(target, temporal, deployed, roles) -> None:
    assert dict(plan(target, temporal, ALL_AT_ONCE, NOW, deployed).roles) == roles


def test_a_drained_version_says_when_its_next_delay_ends() -> None:
    temporal = v2_current(DRAINED, 4 * MIN)
    assert plan("v2", temporal, ALL_AT_ONCE, NOW, {"v1", "v2"}).recheck_after == 6 * MIN


@pytest.mark.parametrize(
    ("role", "bounds"),
    [
        (Role.SERVE, (2, 10)),
        (Role.DRAIN, (1, 10)),
        (Role.SCALE_TO_ZERO, (0, 0)),
        (Role.DELETE, (0, 0)),
    ],
)
def test_replica_bounds_per_role(role: Role, bounds: tuple[int, int]) -> None:
    assert replica_bounds(role, 2, 10) == bounds


def test_a_draining_version_of_a_pool_that_may_sleep_may_sleep_too() -> None:
    assert replica_bounds(Role.DRAIN, 0, 4) == (0, 4)


# --- Rollout settings are checked once, where they are made ------------------------


@pytest.mark.parametrize(
    "steps",
    [
        (),
        (RampStep(0, MIN),),
        (RampStep(101, MIN),),
        (RampStep(50, MIN), RampStep(10, MIN)),
        (RampStep(10, MIN), RampStep(10, MIN)),
        (RampStep(10, -MIN),),
    ],
)
def test_bad_progressive_steps_are_refused(steps) -> None:
    with pytest.raises(ValueError):
        Rollout(Strategy.PROGRESSIVE, steps=steps)


# --- Temporal's answer in the policy's terms ----------------------------------------


def _ts(moment: datetime):
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def test_describe_worker_deployment_is_read_as_versions_and_routing() -> None:
    summary = WorkerDeploymentInfo.WorkerDeploymentVersionSummary
    info = WorkerDeploymentInfo(
        name="docpipe-workflow",
        version_summaries=[
            summary(
                deployment_version=WorkerDeploymentVersion(build_id="v1", deployment_name="d"),
                status=WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED,
                drainage_info=VersionDrainageInfo(
                    status=VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINED,
                    last_changed_time=_ts(NOW - 3 * MIN),
                ),
            ),
            summary(
                deployment_version=WorkerDeploymentVersion(build_id="v2", deployment_name="d"),
                status=WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT,
            ),
            summary(
                deployment_version=WorkerDeploymentVersion(build_id="v3", deployment_name="d"),
                status=WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING,
            ),
        ],
        routing_config=RoutingConfig(
            current_deployment_version=WorkerDeploymentVersion(build_id="v2", deployment_name="d"),
            ramping_deployment_version=WorkerDeploymentVersion(build_id="v3", deployment_name="d"),
            ramping_version_percentage=25,
            ramping_version_changed_time=_ts(NOW - 9 * MIN),
            ramping_version_percentage_changed_time=_ts(NOW - 2 * MIN),
        ),
    )
    read = deployment_state(info, b"token")
    assert read == DeploymentState(
        versions={
            "v1": Version("v1", VersionStatus.DRAINED, NOW - 3 * MIN),
            "v2": Version("v2", VersionStatus.CURRENT),
            "v3": Version("v3", VersionStatus.RAMPING),
        },
        current="v2",
        ramping="v3",
        ramp_percent=25.0,
        ramp_changed=NOW - 2 * MIN,
        conflict_token=b"token",
    )


def test_no_current_version_reads_as_none() -> None:
    read = deployment_state(WorkerDeploymentInfo(name="d"))
    assert (read.current, read.ramping, read.versions) == (None, None, {})
