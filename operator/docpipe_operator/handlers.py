"""kopf handlers for DocumentPipeline: thin, they wire kopf to reconcile.py and autoscaler.py.

* login: the same credentials as our own API client (kube_login.py);
* create / resume / update: create or patch the owned Deployments and Services;
* a timer per object: one autoscaling round (each pool at its own poll interval);
* delete: ownerReferences let Kubernetes collect the children; we only drop
  the pipeline's metric series.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import kopf

from docpipe.config import load_payload_keyring
from docpipe_operator import GROUP, PLURAL, VERSION, autoscaler, drain, metrics, reconcile
from docpipe_operator.backlog import TemporalClients
from docpipe_operator.config import load
from docpipe_operator.kube import Kube
from docpipe_operator.kube_login import connection_info, load_configuration
from docpipe_operator.spec import PipelineSpec, SpecError, parse

CONFIG = load()
TRUST = CONFIG.trust()
RESOURCE = (GROUP, VERSION, PLURAL)


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    return await connection_info(await load_configuration())


@kopf.on.startup()
async def startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf neither waits for nor cancels a timer that is mid-round when the
    # operator exits; give a round (at worst a Temporal deadline or two) time
    # to finish before the API client below is closed.
    settings.background.instant_exit_timeout = 2 * CONFIG.temporal_timeout_seconds + 1
    memo.kube = await Kube.connect()
    memo.temporal = TemporalClients(
        timeout_s=CONFIG.temporal_timeout_seconds, payload_keys=load_payload_keyring()
    )
    memo.in_flight = drain.MetricsEndpointReader()
    memo.sweeper = asyncio.create_task(_sweep_stale_metrics())


async def _sweep_stale_metrics() -> None:
    """A replica that loses the peering race stops running timers but keeps its
    process: its gauges go once they are older than a few rounds. Not a kopf
    handler on purpose: kopf pauses those exactly when this must run."""
    while True:
        await asyncio.sleep(CONFIG.tick_seconds)
        metrics.forget_stale(time.monotonic())


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if "sweeper" in memo:
        memo.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await memo.sweeper
    if "kube" in memo:
        await memo.kube.close()


# A failed create/patch (API server 5xx, a 409 from a racing writer) raises;
# kopf retries the whole, idempotent handler after the backoff.
@kopf.on.resume(*RESOURCE, backoff=CONFIG.retry_backoff_seconds)
@kopf.on.create(*RESOURCE, backoff=CONFIG.retry_backoff_seconds)
@kopf.on.update(*RESOURCE, backoff=CONFIG.retry_backoff_seconds)
async def ensure(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    """Owned Deployments and Services match the spec (a replay changes nothing)."""
    try:
        spec = parse(body["spec"], body["metadata"]["name"])
    except SpecError as exc:
        result = reconcile.invalid(body, str(exc))
    else:
        result = await reconcile.ensure_workloads(memo.kube, body, spec, policy=TRUST)
        # A refusal may be cured outside the spec (a Secret labelled, the allowlist
        # widened and the operator restarted): the timer checks again.
        memo.refused = result.refusals
    _apply(body, patch, result)


@kopf.timer(
    *RESOURCE,
    interval=CONFIG.tick_seconds,
    initial_delay=CONFIG.tick_seconds,
    backoff=CONFIG.retry_backoff_seconds,
)
async def autoscale(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    """Read backlog, decide per pool, scale, write status and Events."""
    try:
        spec = parse(body["spec"], body["metadata"]["name"])
    except SpecError as exc:
        # ensure() reported it; nothing sensible to scale. Keep the status saying so.
        if (again := reconcile.still_invalid(body, str(exc))) is not None:
            _apply(body, patch, again)
        return
    if memo.get("refused"):
        await _check_refused_again(body, memo, patch, spec)
        return
    pools = memo.setdefault("pools", {})
    # This replica handles the pipeline: its gauges hold for a few rounds.
    slowest = max([CONFIG.tick_seconds, *(pool.poll_interval_s for pool in spec.pools.values())])
    metrics.touch(
        body["metadata"]["namespace"], body["metadata"]["name"], time.monotonic(), 3 * slowest
    )
    result = await autoscaler.autoscale(
        memo.kube,
        memo.temporal,
        body,
        spec,
        pools,
        now=time.time(),
        monotonic=time.monotonic(),
        policy=TRUST,
        seen=memo.setdefault("rounds", {}),
        in_flight=memo.get("in_flight"),
    )
    if result is not None:
        _apply(body, patch, result)


async def _check_refused_again(
    body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, spec: PipelineSpec
) -> None:
    """A refused pipeline is neither rendered nor scaled; every retry backoff its
    Secrets are checked again, and it rolls out once they pass. The Warning is
    posted again only when the reasons change."""
    if time.monotonic() < memo.get("recheck_at", 0.0):
        return
    memo.recheck_at = time.monotonic() + CONFIG.retry_backoff_seconds
    before = memo.refused
    result = await reconcile.ensure_workloads(memo.kube, body, spec, policy=TRUST)
    memo.refused = result.refusals
    if result.refusals == before:
        result.notices = []
    _apply(body, patch, result)


@kopf.on.delete(*RESOURCE, optional=True)
def forget_metrics(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    metrics.forget(namespace, name)
    if "temporal" in memo:
        memo.temporal.release((namespace, name))


def _apply(body: kopf.Body, patch: kopf.Patch, result: reconcile.Result) -> None:
    for key, value in result.status.items():
        patch.status[key] = value
    for notice in result.notices:
        kopf.event(body, type=notice.type, reason=notice.reason, message=notice.message)
