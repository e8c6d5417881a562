"""Server-side apply as the API server does it, for the emulator (pure functions).

The rules (https://kubernetes.io/docs/reference/using-api/server-side-apply/):

* every field has owners, recorded per manager and operation in
  ``metadata.managedFields`` (``fieldsV1``: ``{"f:spec": {"f:replicas": {}}}``,
  ``"."`` marks a map owned as such);
* an *apply* (``application/apply-patch+yaml``, ``fieldManager`` required)
  merges the applied object into the live one and makes the manager own exactly
  the fields it applied: a field it owned before and left out is removed from
  the object, unless another manager owns it too;
* applying a value that differs from one another manager owns is a conflict
  (409), unless ``force``: then the field changes hands;
* an *update* (merge or JSON patch, create, PUT) makes its manager own the
  fields whose values it changed, and takes them from everyone else.

Simplification, named so nobody relies on it: every list is atomic (owned as a
whole). Kubernetes merges some lists by key (containers by name, env by name);
with one manager per list, as here, the outcome is the same.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

Path = tuple[str, ...]

# Identity and bookkeeping: never owned.
_UNOWNED: set[Path] = {
    ("apiVersion",),
    ("kind",),
    ("status",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "uid"),
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("metadata", "creationTimestamp"),
    ("metadata", "deletionTimestamp"),
    ("metadata", "managedFields"),
}


class ApplyConflict(Exception):
    """Applied values that differ from fields other managers own."""

    def __init__(self, conflicts: list[tuple[Path, str]]) -> None:
        self.conflicts = conflicts
        listed = "; ".join(f'conflict with "{who}": .{".".join(p)}' for p, who in conflicts)
        super().__init__(f"Apply failed with {len(conflicts)} conflict(s): {listed}")


def field_set(obj: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    """Paths of every map and leaf in ``obj`` (lists are leaves), minus identity fields."""
    found: set[Path] = set()
    for key, value in obj.items():
        path = (*prefix, key)
        if path in _UNOWNED:
            continue
        found.add(path)
        if isinstance(value, Mapping):
            found |= field_set(value, path)
    return found


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    """The managedFields encoding of a set of paths."""
    root: dict[str, Any] = {}
    paths = set(paths)
    for path in sorted(paths):
        node = root
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    # A map that is owned as such and has owned children carries ".".
    for path in paths:
        node = root
        for key in path:
            node = node[f"f:{key}"]
        if node and "." not in node:
            node["."] = {}
    return root


def from_fields_v1(fields: Mapping[str, Any], prefix: Path = ()) -> set[Path]:
    found: set[Path] = set()
    for key, value in fields.items():
        if key == ".":
            continue
        path = (*prefix, key.removeprefix("f:"))
        found.add(path)
        found |= from_fields_v1(value, path)
    return found


def owners(obj: Mapping[str, Any]) -> dict[tuple[str, str], set[Path]]:
    """(manager, operation) -> owned paths, from ``metadata.managedFields``."""
    found: dict[tuple[str, str], set[Path]] = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if "manager" not in entry:
            continue
        key = (entry["manager"], entry.get("operation", "Update"))
        found.setdefault(key, set()).update(from_fields_v1(entry.get("fieldsV1") or {}))
    return found


def managed_fields(owned: Mapping[tuple[str, str], set[Path]], api_version: str) -> list[Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(paths),
        }
        for (manager, operation), paths in owned.items()
        if paths
    ]


_MISSING = object()


def _get(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _delete(obj: dict[str, Any], path: Path) -> None:
    parent: Any = obj
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
        if parent is None:
            return
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def _merge(live: Mapping[str, Any], applied: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(live))
    for key, value in applied.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply(
    live: Mapping[str, Any] | None,
    applied: Mapping[str, Any],
    manager: str,
    *,
    force: bool = False,
) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` (a new object if ``live`` is None)."""
    owned = owners(live) if live is not None else {}
    me = (manager, "Apply")
    before = owned.pop(me, set())
    wanted = field_set(applied)
    conflicts: list[tuple[Path, str]] = []
    for path in sorted(wanted):
        value = _get(applied, path)
        if isinstance(value, Mapping):
            continue  # a map's own ownership never conflicts, its leaves do
        for (other, _), paths in owned.items():
            if path in paths and live is not None and _get(live, path) != value:
                conflicts.append((path, other))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for path, _ in conflicts:
        for paths in owned.values():
            paths.discard(path)
    result = _merge(live or {}, applied)
    others = set().union(*owned.values()) if owned else set()
    for path in sorted(before - wanted, key=len, reverse=True):
        if path in others or any(o[: len(path)] == path for o in others):
            continue  # still someone's (or holds something that is)
        _delete(result, path)
    owned[me] = wanted
    result.setdefault("metadata", {})["managedFields"] = managed_fields(
        owned, str(applied.get("apiVersion", ""))
    )
    return result


def record_update(
    before: Mapping[str, Any], after: dict[str, Any], manager: str
) -> list[Any] | None:
    """managedFields after an update by ``manager`` (None: the object tracks no owners).

    The manager gets the fields whose values changed; every other manager loses them.
    """
    owned = owners(before)
    if not owned:
        return None
    changed = {
        path
        for path in field_set(after) | field_set(before)
        if _get(before, path) != _get(after, path) and not isinstance(_get(after, path), Mapping)
    }
    if not changed:
        return list((before.get("metadata") or {}).get("managedFields") or [])
    for paths in owned.values():
        paths -= changed
    owned.setdefault((manager, "Update"), set()).update(
        path for path in changed if _get(after, path) is not _MISSING
    )
    return managed_fields(owned, str(after.get("apiVersion", "")))


def merge_patch(live: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``live`` into ``new`` (None deletes a key)."""
    patch: dict[str, Any] = {key: None for key in live if key not in new}
    for key, value in new.items():
        old = live.get(key, _MISSING)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            if sub := merge_patch(old, value):
                patch[key] = sub
        elif old != value:
            patch[key] = copy.deepcopy(value)
    return patch


def merge_patch_apply(live: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: ``patch`` applied to ``live``."""
    result = copy.deepcopy(dict(live))
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_patch_apply(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
