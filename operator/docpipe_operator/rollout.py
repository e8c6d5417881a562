"""One tick of a versioned pool: Temporal's routing first, then every version's Deployment.

A versioned pool (``versioning.enabled``) is a Temporal Worker Deployment with one
Kubernetes Deployment per live Build ID ("rainbow"). The spec renders only the
target version's Deployment (reconcile.ensure_workloads); this module does the
rest each time the pool is due:

1. describe the Worker Deployment and ask :func:`versioning.plan` for the next
   step (the same three calls :func:`worker_deployments.advance` makes, keeping the
   described state, which status shows);
2. make the plan's routing change (ramp, make Current, clear a ramp), with an
   Event: Temporal keeps the rollout's state, so a restart resumes it;
3. give every version's Deployment its role: scale ``Serve`` and ``Drain``
   versions with scaling.py on their own backlog (worker_deployments.backlog_by_build_id)
   within versioning.replica_bounds, scale ``ScaleToZero`` ones to zero, delete
   ``Delete`` ones.

Missing data never shrinks a version: Temporal unreachable holds every version
as it is (no routing, no scaling, no deletion), and a version whose backlog could
not be read is held by scaling.decide, as the pool scaler holds a pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from docpipe.queue_stats import QueueStats
from docpipe_operator import draining, names, resources, rollout_status, scaling, versioning
from docpipe_operator.backlog import queue_signal
from docpipe_operator.kube import DeploymentState, Kube
from docpipe_operator.spec import PipelineSpec
from docpipe_operator.status import Notice
from docpipe_operator.worker_deployments import VersioningApi

log = logging.getLogger(__name__)


@dataclass
class VersionMemory:
    """Per version, between ticks: the scaling policy's state and the count it set."""

    state: scaling.ScalingState = field(default_factory=scaling.ScalingState)
    owned: int | None = None


@dataclass
class Tick:
    """What one tick did: the pool's status fields, Events, and the target's decision."""

    entry: dict[str, Any]
    notices: list[Notice]
    decision: scaling.Decision | None
    """The target version's scaling decision (the pool's desiredReplicas), if it was made."""
    stats: QueueStats | None = None
    """The target version's backlog."""


async def tick(
    kube: Kube,
    api: VersioningApi | None,
    body: Mapping[str, Any],
    spec: PipelineSpec,
    kind: str,
    target_found: DeploymentState | None,
    memory: MutableMapping[str, VersionMemory],
    previous: Mapping[str, Any],
    *,
    now: float,
    unreachable: str | None = None,
    before_scale_down: BeforeScaleDown | None = None,
    drain: DrainVersion | None = None,
) -> Tick:
    """Advance the pool's rollout one step and size every version's Deployment.

    ``api`` is None (with ``unreachable`` saying why) when Temporal cannot be
    asked; ``target_found`` is the target's Deployment as reconcile read (or
    recreated) it; ``previous`` the pool's last status entry, whose ``versions``
    name the Deployments of older versions (their names derive from the Build ID).
    ``before_scale_down(namespace, pod selector)`` runs before a version loses
    replicas: the operator ranks its pods so that idle ones go first (drain.py).
    With ``drain`` (activity pools), each version drains before it removes a pod
    instead (cordon.py), as an unversioned pool does; where its pods cannot be read,
    the ranking above.
    """
    pool = spec.pools[kind]
    assert pool.versioning is not None, "only versioned pools have a rollout"
    target = pool.versioning.build_id
    namespace, pipeline = body["metadata"]["namespace"], body["metadata"]["name"]
    name = names.temporal_deployment_name(namespace, pipeline, kind)
    remembered = {v["buildId"]: v for v in previous.get("versions") or [] if "buildId" in v}
    notices: list[Notice] = []

    state: versioning.DeploymentState | None = None
    error = unreachable if api is None else None
    if api is not None:
        try:
            state = await api.describe(name)
        except Exception as exc:  # unreachable, deadline, refused: hold everything
            error = f"describe worker deployment {name}: {_short(exc)}"

    candidates = {target, *remembered, *(state.versions if state is not None else ())}
    found = await _deployments(kube, namespace, pipeline, kind, candidates - {target})
    found[target] = target_found
    deployed = {b for b, f in found.items() if f is not None}

    if error is not None:
        entry = rollout_status.held_entry(
            target, found, remembered, previous, error, pipeline, kind
        )
        return Tick(entry, notices, None)

    wall = datetime.fromtimestamp(now, UTC)
    decided = versioning.plan(target, state, pool.versioning.rollout, wall, deployed)
    if decided.routing is not None and state is not None:
        try:
            await api.route(name, decided.routing, state.conflict_token)  # type: ignore[union-attr]
        except Exception as exc:  # a conflict or a refusal: the next tick decides afresh
            notices.append(Notice("Warning", "RolloutStepFailed", f"{kind}: {_short(exc)}"))
        else:
            notices.append(Notice("Normal", "RolloutStep", f"{kind}: {decided.message}"))
            log.info("%s/%s %s: %s", namespace, pipeline, kind, decided.message)

    serving = [
        b for b, r in decided.roles.items() if r in (versioning.Role.SERVE, versioning.Role.DRAIN)
    ]
    try:
        backlog = await api.backlog(name, serving, spec.queues[kind], workflow=kind == "workflow")  # type: ignore[union-attr]
    except Exception as exc:  # each version holds (missing data never shrinks one)
        log.warning("%s/%s %s: per-version backlog: %s", namespace, pipeline, kind, _short(exc))
        backlog = {}

    decision: scaling.Decision | None = None
    registered = state.versions if state is not None else {}
    for build_id, role in sorted(decided.roles.items()):
        current = found.get(build_id)
        try:
            if role in (versioning.Role.SERVE, versioning.Role.DRAIN):
                if current is None:
                    current = await _recreate_version(
                        kube, body, spec, kind, build_id, remembered, notices
                    )
                if current is None:
                    continue
                made, replicas = await _scale_version(
                    kube,
                    namespace,
                    names.version_deployment_name(pipeline, kind, build_id),
                    pool,
                    role,
                    waiting=build_id not in registered,
                    found=current,
                    stats=backlog.get(build_id),
                    memory=memory.setdefault(build_id, VersionMemory()),
                    now=now,
                    before_scale_down=_for_version(
                        before_scale_down, namespace, pipeline, kind, build_id
                    ),
                    drain=None
                    if drain is None
                    else _drain_version(drain, namespace, pipeline, kind, build_id),
                )
                found[build_id] = dataclasses.replace(current, replicas=replicas)
                if build_id == target:
                    decision = made
                elif made.direction:
                    notices.append(
                        Notice("Normal", "VersionScaled", f"{kind} {build_id}: {made.message}")
                    )
            elif role is versioning.Role.SCALE_TO_ZERO and current is not None:
                if current.replicas != 0:
                    deployment = names.version_deployment_name(pipeline, kind, build_id)
                    await kube.scale(namespace, deployment, 0)
                    found[build_id] = dataclasses.replace(current, replicas=0)
                    memory.pop(build_id, None)
                    notices.append(
                        Notice(
                            "Normal",
                            "VersionScaledToZero",
                            f"{kind}: {build_id} is drained; Deployment {deployment} scaled to 0",
                        )
                    )
            elif role is versioning.Role.DELETE and current is not None:
                deployment = names.version_deployment_name(pipeline, kind, build_id)
                if await kube.delete_owned(
                    "Deployment", namespace, deployment, body["metadata"]["uid"]
                ):
                    notices.append(
                        Notice(
                            "Normal",
                            "VersionDeleted",
                            f"{kind}: {build_id} is no longer needed; Deployment {deployment} deleted",
                        )
                    )
                found[build_id] = None
                memory.pop(build_id, None)
        except Exception as exc:  # 409/500/timeouts: the next tick tries again
            log.warning("%s/%s %s %s: %s", namespace, pipeline, kind, build_id, exc)
            notices.append(
                Notice("Warning", "VersionScaleFailed", f"{kind} {build_id}: {_short(exc)}")
            )

    if state is not None and state.current is not None:
        notices += await _retire_unversioned(kube, body, kind)
    entry = rollout_status.pool_entry(
        target, state, decided, found, remembered, backlog, spec, pipeline, kind
    )
    return Tick(entry, notices, decision, backlog.get(target))


async def _retire_unversioned(kube: Kube, body: Mapping[str, Any], kind: str) -> list[Notice]:
    """A pool switched to versioning keeps its unversioned Deployment until a version
    is Current: Temporal then routes the open unversioned workflows there too, and the
    old pods only finish what they hold (their graceful shutdown on deletion)."""
    namespace, pipeline = body["metadata"]["namespace"], body["metadata"]["name"]
    name = names.deployment_name(pipeline, kind)
    try:
        if await kube.delete_owned("Deployment", namespace, name, body["metadata"]["uid"]):
            message = f"{kind}: a version is Current; unversioned Deployment {name} deleted"
            return [Notice("Normal", "UnversionedDeleted", message)]
    except Exception as exc:  # the next tick tries again
        return [Notice("Warning", "VersionScaleFailed", f"{kind} unversioned: {_short(exc)}")]
    return []


async def _deployments(
    kube: Kube, namespace: str, pipeline: str, kind: str, build_ids: Collection[str]
) -> dict[str, DeploymentState | None]:
    """Each version's Deployment, read by name (the operator gets, it never lists)."""
    ids = sorted(build_ids)
    states = await asyncio.gather(
        *(kube.deployment(namespace, names.version_deployment_name(pipeline, kind, b)) for b in ids)
    )
    return dict(zip(ids, states, strict=True))


async def _recreate_version(
    kube: Kube,
    body: Mapping[str, Any],
    spec: PipelineSpec,
    kind: str,
    build_id: str,
    remembered: Mapping[str, Mapping[str, Any]],
    notices: list[Notice],
) -> DeploymentState | None:
    """An older version that still drains lost its Deployment (deleted by hand): its
    pinned workflows need workers, so it comes back with the image status remembers.
    Without one the operator cannot know its code, and says so."""
    image = (remembered.get(build_id) or {}).get("image")
    if not image:
        notices.append(
            Notice(
                "Warning",
                "VersionMissing",
                f"{kind}: {build_id} still has work in Temporal but no Deployment, and its "
                "image is unknown; its pinned workflows wait for its workers",
            )
        )
        return None
    manifest = resources.version_deployment(body, spec, kind, build_id, image)
    await kube.apply(manifest, body["metadata"]["uid"])
    notices.append(
        Notice(
            "Warning",
            "DeploymentRecreated",
            f"Deployment {manifest['metadata']['name']} ({kind} {build_id}) was missing; recreated",
        )
    )
    return DeploymentState(manifest["spec"].get("replicas", 1), 0, 0)


BeforeScaleDown = Callable[[str, Mapping[str, str]], Awaitable[object]]
"""``(namespace, pod selector)``: called before a Deployment loses replicas."""
DrainVersion = Callable[
    [str, Mapping[str, str], int, draining.Decide, float],
    Awaitable[tuple[scaling.Decision, int]],
]
"""``(namespace, pod selector, replicas, decide, now)``: one drain-before-remove step
(draining.drain_step) -> the decision and the replicas to set; raises when it cannot."""


def _version_selector(pipeline: str, kind: str, build_id: str) -> dict[str, str]:
    """One version's pods: the pool's labels plus its version label."""
    return {
        **names.selector_labels(pipeline, kind),
        names.VERSION_LABEL: names.version_slug(build_id),
    }


def _drain_version(
    drain: DrainVersion, namespace: str, pipeline: str, kind: str, build_id: str
) -> Callable[[int, draining.Decide, float], Awaitable[tuple[scaling.Decision, int]]]:
    selector = _version_selector(pipeline, kind, build_id)
    return lambda current, decide, now: drain(namespace, selector, current, decide, now)


def _for_version(
    hook: BeforeScaleDown | None, namespace: str, pipeline: str, kind: str, build_id: str
) -> Callable[[], Awaitable[object]] | None:
    """The hook bound to one version's pods (the pool's labels plus its version label)."""
    if hook is None:
        return None
    selector = _version_selector(pipeline, kind, build_id)
    return lambda: hook(namespace, selector)


async def _scale_version(
    kube: Kube,
    namespace: str,
    deployment: str,
    pool: Any,
    role: versioning.Role,
    *,
    waiting: bool,
    found: DeploymentState,
    stats: QueueStats | None,
    memory: VersionMemory,
    now: float,
    before_scale_down: Callable[[], Awaitable[object]] | None = None,
    drain: Callable[[int, draining.Decide, float], Awaitable[tuple[scaling.Decision, int]]]
    | None = None,
) -> tuple[scaling.Decision, int]:
    """scaling.decide for one version within its role's bounds; the patch, if any,
    before the state is committed (a failed one is retried, as for a pool). Returns
    the decision and the Deployment's replicas (more while cordoned pods drain)."""
    low, high = versioning.replica_bounds(role, pool.knobs.min_replicas, pool.knobs.max_replicas)
    knobs = dataclasses.replace(pool.knobs, min_replicas=low, max_replicas=high)
    if waiting and role is versioning.Role.SERVE:
        # A version exists in Temporal once a worker polls: a new target needs a pod
        # even in a pool that may idle at zero, or its rollout never starts.
        knobs = dataclasses.replace(knobs, min_replicas=max(low, 1), scale_to_zero=False)
    current = memory.owned if memory.owned is not None else found.replicas
    signal = queue_signal(stats)
    drained = None
    if drain is not None and signal is not None:

        def decide(serving: int, counted: float | None) -> scaling.Decision:
            return scaling.decide(serving, signal, knobs, memory.state, now, None, counted)

        try:
            drained = await drain(current, decide, now)
        except Exception as exc:  # the pods cannot be read: rank and scale the old way
            log.warning("%s/%s: could not drain, scaling without: %s", namespace, deployment, exc)
    if drained is not None:
        decision, replicas = drained
    else:
        decision = scaling.decide(current, signal, knobs, memory.state, now)
        replicas = decision.replicas
        if replicas < found.replicas and before_scale_down is not None:
            await before_scale_down()
    if replicas != found.replicas:
        await kube.scale(namespace, deployment, replicas)
    memory.state = decision.state
    memory.owned = replicas
    return decision, replicas


def _short(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
