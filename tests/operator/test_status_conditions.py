"""Conditions follow the Kubernetes convention: the transition time marks a flip."""

from __future__ import annotations

from typing import Any

from docpipe_operator.status import (
    READY,
    Phase,
    Rollout,
    phase,
    progressing_condition,
    ready_condition,
    rollout,
    set_condition,
)


def test_the_transition_time_moves_only_when_the_status_flips() -> None:
    first = set_condition([], READY, False, "Reconciling", "rolling out", now="t1")
    same = set_condition(first, READY, False, "Reconciling", "still rolling out", now="t2")
    flipped = set_condition(same, READY, True, "AllReady", "every pool is ready", now="t3")
    assert [c["lastTransitionTime"] for c in (first[0], same[0], flipped[0])] == ["t1", "t1", "t3"]
    assert same[0]["message"] == "still rolling out"


def test_a_condition_written_without_a_time_gets_one() -> None:
    # Written by hand or by an older operator: it must not break the next round.
    written = [{"type": READY, "status": "True", "reason": "AllReady", "message": ""}]
    updated = set_condition(written, READY, True, "AllReady", "", now="t1")
    assert updated[0]["lastTransitionTime"] == "t1"


def two_ready_pods(state: Rollout, message: str) -> dict[str, Any]:
    """A pool status entry: both pods ready, the rollout where ``state`` says."""
    return {"currentReplicas": 2, "readyReplicas": 2, "rollout": state, "rolloutMessage": message}


def test_a_template_not_on_every_pod_is_not_ready_although_every_pod_is() -> None:
    """maxUnavailable: 0 keeps the old pods ready while the new image never starts."""
    state, message = rollout(replicas=2, updated=0, generation=3, observed_generation=3, stuck=None)
    assert state is Rollout.PROGRESSING and "0/2" in message
    pools = {"cpu": two_ready_pods(state, message)}
    ready, reason, _ = ready_condition(pools)
    assert (ready, reason) == (False, "RollingOut")
    assert progressing_condition(pools)[:2] == (True, "RollingOut")


def test_a_template_the_controller_has_not_seen_is_still_rolling_out() -> None:
    state, _ = rollout(replicas=1, updated=1, generation=4, observed_generation=3, stuck=None)
    assert state is Rollout.PROGRESSING


def test_a_stuck_rollout_is_degraded() -> None:
    state, message = rollout(
        replicas=2,
        updated=1,
        generation=3,
        observed_generation=3,
        stuck='ReplicaSet "x" has timed out progressing.',
    )
    pools = {
        "cpu": two_ready_pods(state, message),
        "io": {"currentReplicas": 1, "readyReplicas": 1, "rollout": "Complete"},
    }
    assert ready_condition(pools)[:2] == (False, "RolloutStuck")
    ok, reason, text = progressing_condition(pools)
    assert (ok, reason) == (False, "ProgressDeadlineExceeded") and "timed out" in text
    assert phase(False, True, stuck=True) is Phase.DEGRADED


def test_a_complete_rollout_with_ready_pods_is_ready() -> None:
    state, _ = rollout(replicas=2, updated=2, generation=3, observed_generation=3, stuck=None)
    pools = {"cpu": {"currentReplicas": 2, "readyReplicas": 2, "rollout": state}}
    assert ready_condition(pools)[0] is True
    assert progressing_condition(pools)[:2] == (True, "RolloutComplete")
