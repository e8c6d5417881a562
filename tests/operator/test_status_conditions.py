"""Conditions follow the Kubernetes convention: the transition time marks a flip."""

from __future__ import annotations

from docpipe_operator.status import READY, set_condition


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
