"""Who owns which fields of the objects the operator applies (managedFields). Pure.

Owned objects are written by server-side apply under :data:`FIELD_MANAGER`;
``spec.replicas`` belongs to :data:`SCALER_FIELD_MANAGER`, so applying the
template never resets them, and to neither for a pool whose replicas an HPA or
KEDA owns. These functions rewrite an object's managedFields for the moves
between those owners (kube.py sends the result as a JSON patch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELD_MANAGER = "docpipe-operator"
"""Owns everything the operator renders, except replicas."""
SCALER_FIELD_MANAGER = "docpipe-operator-autoscaler"
"""Owns ``spec.replicas`` of the Deployments."""
LEGACY_FIELD_MANAGERS = ("OpenAPI-Generator",)
"""Who wrote owned objects before server-side apply (kubernetes_asyncio's user agent):
their fields pass to the operator's managers once, so removed fields go away after
an upgrade too."""


def owns(entries: list[dict[str, Any]], manager: str, spec_field: str) -> bool:
    """Does ``manager`` own ``spec.<spec_field>`` in these managedFields?"""
    return any(
        entry.get("manager") == manager
        and spec_field in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        for entry in entries
    )


def release_replicas(entries: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """managedFields without the operator's managers owning ``spec.replicas``, or None
    if neither does. The value stays: an unowned field is kept, and whoever writes it
    next (the HPA, through the scale subresource) owns it."""
    ours = (FIELD_MANAGER, SCALER_FIELD_MANAGER)
    kept = []
    for entry in entries:
        spec = ((entry.get("fieldsV1") or {}).get("f:spec")) or {}
        if entry.get("manager") not in ours or "f:replicas" not in spec:
            kept.append(entry)
            continue
        fields = dict(entry["fieldsV1"])
        rest = {key: value for key, value in spec.items() if key != "f:replicas"}
        if rest:
            fields["f:spec"] = rest
        else:
            del fields["f:spec"]
        if fields:
            kept.append({**entry, "fieldsV1": fields})
    return kept if kept != entries else None


def take_over_legacy_fields(entries: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """managedFields with the pre-apply writers' fields moved to the operator's
    managers (``spec.replicas`` to the autoscaler's), or None if there are none.

    The same move ``kubectl apply --server-side`` makes for client-side apply
    (client-go's csaupgrade): without it, fields an older operator wrote stay
    owned by it, and leaving them out of an apply would never remove them.
    """
    legacy = [
        e
        for e in entries
        if e.get("manager") in LEGACY_FIELD_MANAGERS and e.get("operation") == "Update"
    ]
    if not legacy:
        return None
    template: dict[str, Any] = {}
    replicas: dict[str, Any] = {}
    for entry in legacy:
        fields = dict(entry.get("fieldsV1") or {})
        spec = dict(fields.get("f:spec") or {})
        if "f:replicas" in spec:
            replicas = {"f:spec": {"f:replicas": spec.pop("f:replicas")}}
            if spec:
                fields["f:spec"] = spec
            else:
                fields.pop("f:spec", None)
        template = _merge_fields(template, fields)
    kept = [e for e in entries if e not in legacy]
    for manager, fields in ((FIELD_MANAGER, template), (SCALER_FIELD_MANAGER, replicas)):
        if not fields:
            continue
        mine = next(
            (e for e in kept if e.get("manager") == manager and e.get("operation") == "Apply"),
            None,
        )
        if mine is None:
            mine = {
                "manager": manager,
                "operation": "Apply",
                "apiVersion": legacy[0].get("apiVersion"),
                "fieldsType": "FieldsV1",
                "fieldsV1": {},
            }
            kept.append(mine)
        mine["fieldsV1"] = _merge_fields(mine.get("fieldsV1") or {}, fields)
    return kept


def _merge_fields(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(a)
    for key, value in b.items():
        merged[key] = _merge_fields(merged.get(key) or {}, value) if value else merged.get(key, {})
    return merged
