"""What a versioned pool's status says: routing as Temporal has it, every live version
and its Deployment, and the pipeline's ``Rollout`` condition. Pure.

rollout.py's tick gathers the facts (Temporal's description, the plan, the
Deployments it read or scaled); these functions turn them into the pool's status
fields, so reading a rollout off ``kubectl get dp -o yaml`` stays one module's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from docpipe.queue_stats import QueueStats
from docpipe_operator import names, versioning
from docpipe_operator.kube import DeploymentState
from docpipe_operator.spec import PipelineSpec
from docpipe_operator.status import set_condition

ROLLOUT = "Rollout"
"""The pipeline condition: True once every versioned pool's target is Current."""
HOLD = "Hold"
"""A version's role while Temporal cannot be asked: left exactly as it is."""
NOT_REGISTERED = "NotRegistered"
"""A version Temporal does not know yet (its workers have not polled)."""


def pool_entry(
    target: str,
    state: versioning.DeploymentState | None,
    decided: versioning.Plan,
    found: Mapping[str, DeploymentState | None],
    remembered: Mapping[str, Mapping[str, Any]],
    backlog: Mapping[str, QueueStats | None],
    spec: PipelineSpec,
    pipeline: str,
    kind: str,
) -> dict[str, Any]:
    """The pool's versioning fields: routing as Temporal has it, and each live version."""
    versions = []
    registered = state.versions if state is not None else {}
    for build_id in sorted({*decided.roles, *found}):
        present = found.get(build_id)
        version = registered.get(build_id)
        role = decided.roles.get(build_id)
        live = version is not None and version.status in (
            versioning.VersionStatus.CURRENT,
            versioning.VersionStatus.RAMPING,
            versioning.VersionStatus.DRAINING,
        )
        if present is None and build_id != target and not live:
            continue  # deleted, or drained and gone: nothing left to show
        item: dict[str, Any] = {
            "buildId": build_id,
            "status": _version_status(build_id, state),
            "deployment": names.version_deployment_name(pipeline, kind, build_id),
            "image": spec.pools[kind].image
            if build_id == target
            else (remembered.get(build_id) or {}).get("image", ""),
        }
        if role is not None:
            item["role"] = role.value
        if state is not None and state.ramping == build_id:
            item["rampPercentage"] = state.ramp_percent
        if version is not None and version.drained_since is not None:
            item["drainedSince"] = version.drained_since.strftime("%Y-%m-%dT%H:%M:%SZ")
        if present is not None:
            item["replicas"] = present.replicas
            item["readyReplicas"] = present.ready_replicas
        if (stats := backlog.get(build_id)) is not None:
            item["backlog"] = stats.backlog_count
        if not item["image"]:
            del item["image"]
        versions.append(item)
    entry: dict[str, Any] = {
        "targetBuildId": target,
        "currentBuildId": state.current if state is not None else None,
        "rampingBuildId": state.ramping if state is not None else None,
        "rampPercentage": state.ramp_percent if state is not None and state.ramping else None,
        "versionRollout": decided.phase.value,
        "versionRolloutMessage": decided.message,
        "versions": versions,
    }
    return entry | _totals(found)


def _version_status(build_id: str, state: versioning.DeploymentState | None) -> str:
    if state is None or build_id not in state.versions:
        return NOT_REGISTERED
    # The routing config is newer than a version's summary right after a change.
    if state.current == build_id:
        return versioning.VersionStatus.CURRENT.value
    if state.ramping == build_id:
        return versioning.VersionStatus.RAMPING.value
    return state.versions[build_id].status.value


def held_entry(
    target: str,
    found: Mapping[str, DeploymentState | None],
    remembered: Mapping[str, Mapping[str, Any]],
    previous: Mapping[str, Any],
    error: str,
    pipeline: str,
    kind: str,
) -> dict[str, Any]:
    """Temporal cannot be asked: the last known routing, every Deployment held."""
    versions = []
    for build_id in sorted(b for b, f in found.items() if f is not None):
        present = found[build_id]
        assert present is not None
        item = {
            **dict(remembered.get(build_id) or {"buildId": build_id, "status": "Unknown"}),
            "deployment": names.version_deployment_name(pipeline, kind, build_id),
            "role": HOLD,
            "replicas": present.replicas,
            "readyReplicas": present.ready_replicas,
        }
        item.pop("backlog", None)
        versions.append(item)
    return {
        "targetBuildId": target,
        "currentBuildId": previous.get("currentBuildId"),
        "versionRollout": "Unknown",
        "versionRolloutMessage": f"holding every version: {error}",
        "versions": versions,
    } | _totals(found)


def _totals(found: Mapping[str, DeploymentState | None]) -> dict[str, Any]:
    """The pool's replicas: every version's pods serve or drain its work."""
    present = [f for f in found.values() if f is not None]
    return {
        "currentReplicas": sum(f.replicas for f in present),
        "readyReplicas": sum(f.ready_replicas for f in present),
    }


def condition(
    conditions: list[dict[str, Any]],
    pools: Mapping[str, Mapping[str, Any]],
    spec: PipelineSpec,
) -> list[dict[str, Any]]:
    """``Rollout``: True when every versioned pool's target is Current (Steady);
    absent for a pipeline without versioned pools."""
    versioned = {
        kind: pools[kind]
        for kind in pools
        if spec.pools[kind].versioning is not None and pools[kind].get("versionRollout")
    }
    if not versioned:
        return conditions
    phases = [entry["versionRollout"] for entry in versioned.values()]
    message = "; ".join(
        f"{kind}: {entry.get('versionRolloutMessage', '')}" for kind, entry in versioned.items()
    )
    unsettled = [p for p in phases if p != versioning.Phase.STEADY.value]
    reason = unsettled[0] if unsettled else versioning.Phase.STEADY.value
    return set_condition(conditions, ROLLOUT, not unsettled, reason, message)
