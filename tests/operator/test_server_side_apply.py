"""The emulator's server-side apply follows the API server's rules (server_side_apply.py)."""

from __future__ import annotations

import pytest
from server_side_apply import ApplyConflict, apply, owners, record_update


def deployment(**pod: object) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"a": "1"}},
        "spec": {"template": {"spec": {"containers": [{"name": "w"}], **pod}}},
    }


def test_a_field_the_manager_leaves_out_is_removed() -> None:
    first = apply(None, deployment(nodeSelector={"gpu": "v100"}, priorityClassName="p"), "op")
    second = apply(first, deployment(), "op")
    pod = second["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "priorityClassName" not in pod
    assert pod["containers"] == [{"name": "w"}]


def test_a_field_another_manager_owns_stays() -> None:
    first = apply(None, {**deployment(), "spec": {**deployment()["spec"], "replicas": 3}}, "op")
    shared = apply(
        first, {"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 3}}, "scaler"
    )
    without = apply(shared, deployment(), "op")
    assert without["spec"]["replicas"] == 3


def test_a_different_value_another_manager_owns_conflicts_unless_forced() -> None:
    first = apply(None, {"apiVersion": "v1", "kind": "X", "spec": {"replicas": 2}}, "a")
    with pytest.raises(ApplyConflict, match=r"spec\.replicas"):
        apply(first, {"apiVersion": "v1", "kind": "X", "spec": {"replicas": 5}}, "b")
    forced = apply(
        first, {"apiVersion": "v1", "kind": "X", "spec": {"replicas": 5}}, "b", force=True
    )
    assert forced["spec"]["replicas"] == 5
    assert ("spec", "replicas") not in owners(forced).get(("a", "Apply"), set())


def test_an_update_takes_the_fields_it_changes() -> None:
    first = apply(None, {"apiVersion": "v1", "kind": "X", "spec": {"replicas": 2}}, "a")
    after = {**first, "spec": {"replicas": 7}}
    fields = record_update(first, after, "kubectl")
    assert fields is not None
    after["metadata"] = {**after["metadata"], "managedFields": fields}
    assert ("spec", "replicas") in owners(after)[("kubectl", "Update")]
    # The applier no longer owns it: leaving it out keeps kubectl's value.
    assert apply(after, {"apiVersion": "v1", "kind": "X", "spec": {}}, "a")["spec"]["replicas"] == 7
