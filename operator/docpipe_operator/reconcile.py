"""What the handlers do when a spec changes, minus kopf: keep the owned objects in
line with the spec, unless the trust policy refuses the pipeline, and report a spec
the operator cannot honour. The autoscaling round is autoscaler.py.

Each function takes the API layer (:class:`~docpipe_operator.kube.Kube`) and the
CR, and returns a status patch plus the Events to post; the kopf handlers apply them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from docpipe_operator import resources, sizing, trust
from docpipe_operator.backlog import Endpoint
from docpipe_operator.kube import Kube, Outcome
from docpipe_operator.spec import TLS_CA_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, PipelineSpec
from docpipe_operator.status import NOT_ALLOWED, READY, Notice, Phase, set_condition

log = logging.getLogger(__name__)

MEMORY_LIMIT_TOO_LOW = "MemoryLimitTooLow"
"""A pool's memory limit is below what its worker may use (sizing.py)."""


@dataclass
class Result:
    """A status patch (merged into ``status``) and Events to post."""

    status: dict[str, Any] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    """Why nothing was rendered (trust.py), empty when the pipeline was accepted."""


def invalid(body: Mapping[str, Any], error: str, *, notify: bool = True) -> Result:
    """Status and (with ``notify``) a Warning for a spec the operator cannot honour."""
    conditions = (body.get("status") or {}).get("conditions") or []
    generation = body["metadata"].get("generation")
    conditions = set_condition(
        conditions, READY, False, "InvalidSpec", error, generation=generation
    )
    return Result(
        status={"phase": Phase.INVALID.value, "conditions": conditions},
        notices=[Notice("Warning", "InvalidSpec", error)] if notify else [],
    )


def still_invalid(body: Mapping[str, Any], error: str) -> Result | None:
    """The Invalid status again if something overwrote it, else None.

    An autoscaling round that began before an invalid update lands writes its
    status (phase Pending/Running) after the update handler wrote Invalid; the
    next round restores it, without a second Warning.
    """
    status = body.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == READY), {})
    if status.get("phase") == Phase.INVALID.value and ready.get("reason") == "InvalidSpec":
        return None
    return invalid(body, error, notify=False)


def refused(body: Mapping[str, Any], problems: list[str]) -> Result:
    """Status and a Warning for a pipeline that asks for what its author may not have.

    Like :func:`invalid`, nothing is rendered, patched or scaled; unlike it, the
    cure may lie outside the spec (a Secret's owner labels it, an admin widens the
    allowlist), so the operator checks again from its timer.
    """
    message = "refused: " + "; ".join(problems)
    conditions = (body.get("status") or {}).get("conditions") or []
    generation = body["metadata"].get("generation")
    conditions = set_condition(
        conditions, READY, False, NOT_ALLOWED, message, generation=generation
    )
    return Result(
        status={"phase": Phase.INVALID.value, "conditions": conditions},
        notices=[Notice("Warning", NOT_ALLOWED, message)],
        refusals=list(problems),
    )


async def trust_problems(
    kube: Kube, namespace: str, spec: PipelineSpec, policy: trust.TrustPolicy
) -> list[str]:
    """Everything in ``spec`` its author may not make the operator do (trust.py).

    Images and ServiceAccounts are judged from the spec alone; each Secret the
    pipeline names is read by name for its labels (the operator's own namespace
    needs none, so nothing is read there).
    """
    problems = trust.workload_problems(spec, policy)
    uses = trust.secret_uses(spec)
    if uses and namespace != policy.operator_namespace:
        names = sorted({use.name for use in uses})
        found = await asyncio.gather(*(kube.secret_labels(namespace, name) for name in names))
        labels = dict(zip(names, found, strict=True))
        problems += trust.secret_problems(uses, labels, namespace, policy)
    return problems


async def ensure_workloads(
    kube: Kube, body: Mapping[str, Any], spec: PipelineSpec, *, policy: trust.TrustPolicy
) -> Result:
    """Create or update every owned Deployment and Service (idempotent), unless
    ``policy`` refuses the pipeline: then nothing is rendered."""
    if problems := await trust_problems(kube, body["metadata"]["namespace"], spec, policy):
        log.warning(
            "%s/%s refused: %s",
            body["metadata"]["namespace"],
            body["metadata"]["name"],
            "; ".join(problems),
        )
        return refused(body, problems)
    owner_uid = body["metadata"]["uid"]
    outcomes: dict[str, Outcome] = {}
    for manifest in resources.manifests(body, spec):
        key = f"{manifest['kind']}/{manifest['metadata']['name']}"
        outcomes[key] = await kube.apply(manifest, owner_uid)
    for kind, name in resources.unwanted(body, spec):  # a budget turned off
        if await kube.delete_owned(kind, body["metadata"]["namespace"], name, owner_uid):
            outcomes[f"{kind}/{name}"] = Outcome.DELETED
    changed = {
        key: outcome for key, outcome in outcomes.items() if outcome is not Outcome.UNCHANGED
    }
    result = Result(status={"observedGeneration": body["metadata"].get("generation")})
    status = body.get("status") or {}
    if status.get("phase") in (None, Phase.INVALID.value):
        result.status["phase"] = Phase.PENDING.value
        conditions = status.get("conditions") or []
        result.status["conditions"] = set_condition(
            conditions, READY, False, "Reconciling", "worker Deployments are being rolled out"
        )
    for problem in sizing.sizing_problems(spec):
        result.notices.append(Notice("Warning", MEMORY_LIMIT_TOO_LOW, problem))
    if changed:
        verbs = sorted({outcome.value for outcome in changed.values()})
        message = f"{' and '.join(verbs)}: " + ", ".join(sorted(changed))
        reason = "WorkloadsCreated" if Outcome.CREATED in changed.values() else "WorkloadsUpdated"
        result.notices.append(Notice("Normal", reason, message))
        log.info("%s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"], message)
    return result


async def endpoint(
    kube: Kube,
    namespace: str,
    spec: PipelineSpec,
    *,
    policy: trust.TrustPolicy = trust.TrustPolicy(),  # noqa: B008  (frozen, never mutated)
) -> Endpoint:
    """Where this pipeline's Temporal is, with its API key and TLS material read from Secrets.

    The same connection the workers make from their env and mounted files
    (``docpipe.config.TemporalConnection``), so what works for one works for the other.
    Each Secret must pass ``policy`` (its docpipe.io/allow-reference label) before a
    byte of it is decoded: the operator never reads a Secret on a pipeline author's word.
    """
    t = spec.temporal

    def permit(labels: Mapping[str, str]) -> bool:
        return trust.secret_allowed(labels, namespace, policy)

    api_key = None
    if t.api_key is not None:
        api_key = await kube.secret_value(namespace, t.api_key.name, t.api_key.key, permit=permit)
    tls: dict[str, bytes] = {}
    if t.tls_secret is not None:
        tls = await kube.secret_data(namespace, t.tls_secret.name, t.tls_secret.keys, permit=permit)
    return Endpoint(
        t.address,
        t.namespace,
        t.uses_tls,
        api_key,
        server_root_ca_cert=tls.get(TLS_CA_KEY),
        client_cert=tls.get(TLS_CERT_KEY),
        client_private_key=tls.get(TLS_PRIVATE_KEY_KEY),
        server_name=t.server_name,
    )


def describe_error(exc: BaseException) -> str:
    """A short, value-free account of a failure (an ApiException's body may echo a request)."""
    from kubernetes_asyncio.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__
