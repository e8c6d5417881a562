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


# --- Routing -----------------------------------------------------------------------

ROUTING = [
    # (why, target, state, rollout, expected change, expected phase)
    ("nothing polled yet: wait", "v1", None, ALL_AT_ONCE, None, Phase.WAITING_FOR_POLLERS),
    (
        "the new version's workers have not polled: wait",
        "v2",
        state(V1_CURRENT, current="v1"),
        ALL_AT_ONCE,
        None,
        Phase.WAITING_FOR_POLLERS,
    ),
    (
        "first version, no Current: make it Current even when Progressive",
        "v1",
        state(("v1", VersionStatus.INACTIVE)),
        PROGRESSIVE,
        SetCurrent("v1"),
        Phase.STEADY,
    ),
    (
        "AllAtOnce: Current as soon as registered",
        "v2",
        state(V1_CURRENT, V2_INACTIVE, current="v1"),
        ALL_AT_ONCE,
        SetCurrent("v2"),
        Phase.STEADY,
    ),
    (
        "target already Current: nothing to do",
        "v2",
        state(("v1", VersionStatus.DRAINING), ("v2", VersionStatus.CURRENT), current="v2"),
        ALL_AT_ONCE,
        None,
        Phase.STEADY,
    ),
    (
        "rolled back to the Current version mid-ramp: clear the ramp",
        "v1",
        state(V1_CURRENT, V2_RAMPING, current="v1", ramping="v2", percent=10, ramp_changed=NOW),
        PROGRESSIVE,
        SetRamp(None, 0),
        Phase.STEADY,
    ),
    (
        "Manual: registered, but routing is left to a person",
        "v2",
        state(V1_CURRENT, V2_INACTIVE, current="v1"),
        MANUAL,
        None,
        Phase.MANUAL,
    ),
    (
        "Progressive: start at the first step",
        "v2",
        state(V1_CURRENT, V2_INACTIVE, current="v1"),
        PROGRESSIVE,
        SetRamp("v2", 10),
        Phase.RAMPING,
    ),
    (
        "Progressive: hold a step for its whole pause",
        "v2",
        state(
            V1_CURRENT,
            V2_RAMPING,
            current="v1",
            ramping="v2",
            percent=10,
            ramp_changed=NOW - 4 * MIN,
        ),
        PROGRESSIVE,
        None,
        Phase.RAMPING,
    ),
    (
        "Progressive: pause over, next step",
        "v2",
        state(
            V1_CURRENT,
            V2_RAMPING,
            current="v1",
            ramping="v2",
            percent=10,
            ramp_changed=NOW - 5 * MIN,
        ),
        PROGRESSIVE,
        SetRamp("v2", 50),
        Phase.RAMPING,
    ),
    (
        "Progressive: last step's pause over, make it Current",
        "v2",
        state(
            V1_CURRENT,
            V2_RAMPING,
            current="v1",
            ramping="v2",
            percent=50,
            ramp_changed=NOW - 11 * MIN,
        ),
        PROGRESSIVE,
        SetCurrent("v2"),
        Phase.STEADY,
    ),
    (
        "Progressive: a share moved by hand is reset to the step at or below it",
        "v2",
        state(
            V1_CURRENT,
            V2_RAMPING,
            current="v1",
            ramping="v2",
            percent=30,
            ramp_changed=NOW - 60 * MIN,
        ),
        PROGRESSIVE,
        SetRamp("v2", 10),
        Phase.RAMPING,
    ),
    (
        "Progressive: a share below the first step restarts the first step",
        "v2",
        state(
            V1_CURRENT,
            V2_RAMPING,
            current="v1",
            ramping="v2",
            percent=1,
            ramp_changed=NOW - 60 * MIN,
        ),
        PROGRESSIVE,
        SetRamp("v2", 10),
        Phase.RAMPING,
    ),
    (
        "Progressive: a newer target replaces another version's ramp from step one",
        "v3",
        state(
            V1_CURRENT,
            V2_RAMPING,
            ("v3", VersionStatus.INACTIVE),
            current="v1",
            ramping="v2",
            percent=50,
            ramp_changed=NOW - 60 * MIN,
        ),
        PROGRESSIVE,
        SetRamp("v3", 10),
        Phase.RAMPING,
    ),
    (
        "rollback to a drained version: it becomes Current again",
        "v1",
        state(
            ("v1", VersionStatus.DRAINED, NOW - 3 * MIN),
            ("v2", VersionStatus.CURRENT),
            current="v2",
        ),
        ALL_AT_ONCE,
        SetCurrent("v1"),
        Phase.STEADY,
    ),
]


@pytest.mark.parametrize(
    ("target", "temporal", "rollout", "change", "phase"),
    [row[1:] for row in ROUTING],
    ids=[row[0] for row in ROUTING],
)
def test_routing(target, temporal, rollout, change, phase) -> None:
    decided = plan(target, temporal, rollout, NOW)
    assert (decided.routing, decided.phase) == (change, phase)


def test_a_ramp_step_says_when_it_is_due() -> None:
    temporal = state(
        V1_CURRENT, V2_RAMPING, current="v1", ramping="v2", percent=10, ramp_changed=NOW - 2 * MIN
    )
    assert plan("v2", temporal, PROGRESSIVE, NOW).recheck_after == 3 * MIN


def test_each_tick_advances_at_most_one_step() -> None:
    """Long after the last change the ramp still goes 10 → 50 → Current, each share
    held for its pause: an operator that was down does not skip the steps."""
    temporal = state(
        V1_CURRENT, V2_RAMPING, current="v1", ramping="v2", percent=10, ramp_changed=NOW - 600 * MIN
    )
    assert plan("v2", temporal, PROGRESSIVE, NOW).routing == SetRamp("v2", 50)


# --- Roles of each version's pods ---------------------------------------------------

ROLES = [
    # (why, target, state, deployed, expected roles)
    (
        "a new version waits for pollers while the Current one serves",
        "v2",
        state(V1_CURRENT, current="v1"),
        {"v1", "v2"},
        {"v1": Role.SERVE, "v2": Role.SERVE},
    ),
    (
        "while ramping both versions serve",
        "v2",
        state(V1_CURRENT, V2_RAMPING, current="v1", ramping="v2", percent=10, ramp_changed=NOW),
        {"v1", "v2"},
        {"v1": Role.SERVE, "v2": Role.SERVE},
    ),
    (
        "the replaced version drains while pinned workflows are open",
        "v2",
        state(("v1", VersionStatus.DRAINING), ("v2", VersionStatus.CURRENT), current="v2"),
        {"v1", "v2"},
        {"v1": Role.DRAIN, "v2": Role.SERVE},
    ),
    (
        "drained: keeps its pods for queries until the scale-down delay",
        "v2",
        state(
            ("v1", VersionStatus.DRAINED, NOW - 9 * MIN),
            ("v2", VersionStatus.CURRENT),
            current="v2",
        ),
        {"v1", "v2"},
        {"v1": Role.DRAIN, "v2": Role.SERVE},
    ),
    (
        "drained past the scale-down delay: zero replicas",
        "v2",
        state(
            ("v1", VersionStatus.DRAINED, NOW - 10 * MIN),
            ("v2", VersionStatus.CURRENT),
            current="v2",
        ),
        {"v1", "v2"},
        {"v1": Role.SCALE_TO_ZERO, "v2": Role.SERVE},
    ),
    (
        "drained past both delays: delete the Deployment",
        "v2",
        state(
            ("v1", VersionStatus.DRAINED, NOW - 15 * MIN),
            ("v2", VersionStatus.CURRENT),
            current="v2",
        ),
        {"v1", "v2"},
        {"v1": Role.DELETE, "v2": Role.SERVE},
    ),
    (
        "a drained version already deleted is not mentioned",
        "v2",
        state(
            ("v1", VersionStatus.DRAINED, NOW - 15 * MIN),
            ("v2", VersionStatus.CURRENT),
            current="v2",
        ),
        {"v2"},
        {"v2": Role.SERVE},
    ),
    (
        "a draining version without pods needs them back",
        "v2",
        state(("v1", VersionStatus.DRAINING), ("v2", VersionStatus.CURRENT), current="v2"),
        {"v2"},
        {"v1": Role.DRAIN, "v2": Role.SERVE},
    ),
    (
        "an abandoned target that never got traffic is deleted",
        "v3",
        state(V1_CURRENT, V2_INACTIVE, ("v3", VersionStatus.INACTIVE), current="v1"),
        {"v1", "v2", "v3"},
        {"v1": Role.SERVE, "v2": Role.DELETE, "v3": Role.SERVE},
    ),
    (
        "a Deployment whose workers never registered is deleted once Temporal knows the deployment",
        "v2",
        state(V1_CURRENT, current="v1"),
        {"v0", "v1", "v2"},
        {"v0": Role.DELETE, "v1": Role.SERVE, "v2": Role.SERVE},
    ),
    (
        "Temporal does not know the deployment: nothing proves old pods idle",
        "v2",
        None,
        {"v1", "v2"},
        {"v1": Role.DRAIN, "v2": Role.SERVE},
    ),
    (
        "the target is served even when Temporal calls it drained (rollback)",
        "v1",
        state(
            ("v1", VersionStatus.DRAINED, NOW - 60 * MIN),
            ("v2", VersionStatus.CURRENT),
            current="v2",
        ),
        {"v1", "v2"},
        {"v1": Role.SERVE, "v2": Role.SERVE},
    ),
]


@pytest.mark.parametrize(
    ("target", "temporal", "deployed", "roles"),
    [row[1:] for row in ROLES],
    ids=[row[0] for row in ROLES],
)
def test_roles(target, temporal, deployed, roles) -> None:
    assert dict(plan(target, temporal, ALL_AT_ONCE, NOW, deployed).roles) == roles


def test_a_drained_version_says_when_its_next_delay_ends() -> None:
    temporal = state(
        ("v1", VersionStatus.DRAINED, NOW - 4 * MIN), ("v2", VersionStatus.CURRENT), current="v2"
    )
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
