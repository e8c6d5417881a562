"""A pool at zero replicas is looked at every few seconds: scale from zero reacts within a
statistics refresh and a wake poll, not a whole poll interval."""

from __future__ import annotations

from docpipe_operator.autoscaler import WAKE_POLL_S, next_poll_s
from docpipe_operator.kube import DeploymentState


def deployment(replicas: int) -> DeploymentState:
    return DeploymentState(replicas=replicas, ready_replicas=replicas, updated_replicas=replicas)


def test_a_pool_at_zero_is_polled_on_the_wake_interval() -> None:
    assert next_poll_s(15.0, deployment(0)) == WAKE_POLL_S == 5.0


def test_a_running_pool_keeps_its_poll_interval() -> None:
    assert next_poll_s(15.0, deployment(2)) == 15.0


def test_a_poll_interval_shorter_than_the_wake_poll_is_kept() -> None:
    assert next_poll_s(1.0, deployment(0)) == 1.0
