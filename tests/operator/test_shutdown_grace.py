"""Each pool's pods get long enough to finish their work when they are stopped
(a scale-down, a rollout, a node drain): terminationGracePeriodSeconds defaults to
the pool's longest step plus a margin, and the worker's own graceful shutdown
(WORKER_SHUTDOWN_GRACE_S) is rendered just below it."""

from __future__ import annotations

import copy

import pytest
from test_resources import by_name, container, cr

from docpipe_operator import POOLS, resources
from docpipe_operator.defaults import (
    DEFAULT_TERMINATION_GRACE_S,
    MIN_TERMINATION_GRACE_S,
    SHUTDOWN_MARGIN_S,
    worker_shutdown_grace_s,
)
from docpipe_operator.spec import SpecError, parse


def rendered(body: dict, kind: str) -> tuple[int, int]:
    """(the pod's grace, the worker's shutdown grace) of one pool."""
    spec = parse(body["spec"], body["metadata"]["name"])
    deployment = by_name(
        resources.manifests(body, spec), "Deployment", f"{body['metadata']['name']}-{kind}"
    )
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    return grace, int(env["WORKER_SHUTDOWN_GRACE_S"])


@pytest.mark.parametrize("kind", POOLS)
def test_by_default_a_pool_gets_its_longest_step_plus_a_margin(kind: str) -> None:
    body = cr("minimal")
    grace, worker = rendered(body, kind)
    assert grace == DEFAULT_TERMINATION_GRACE_S[kind]
    assert worker == grace - SHUTDOWN_MARGIN_S


def test_the_gpu_pool_waits_longest_and_cpu_and_io_cover_a_default_step() -> None:
    body = cr("minimal")
    worker = {kind: rendered(body, kind)[1] for kind in POOLS}
    assert worker["gpu"] > worker["cpu"] >= 120
    assert worker["io"] >= 120
    assert worker["workflow"] < worker["cpu"]


def test_a_pool_s_own_grace_moves_the_worker_s_shutdown_with_it() -> None:
    body = copy.deepcopy(cr("minimal"))
    body["spec"]["pools"]["gpu"]["terminationGracePeriodSeconds"] = 900
    assert rendered(body, "gpu") == (900, 900 - SHUTDOWN_MARGIN_S)


def test_a_grace_too_short_to_shut_down_is_refused() -> None:
    body = copy.deepcopy(cr("minimal"))
    body["spec"]["pools"]["cpu"]["terminationGracePeriodSeconds"] = MIN_TERMINATION_GRACE_S - 1
    with pytest.raises(SpecError, match="terminationGracePeriodSeconds"):
        parse(body["spec"], "docs")
    assert worker_shutdown_grace_s(MIN_TERMINATION_GRACE_S) > 0
