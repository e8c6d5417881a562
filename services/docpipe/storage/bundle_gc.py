"""Deleting the batch bundles no document row points to any more.

Chunks and vectors live in one bundle per batch under ``batches/<bundle id>/``
(see ``keys.py``), and a document's row names the bundle its chunks and vectors
are in. When a document runs again in another batch its row moves to the new
bundle; the old one is then garbage once no other row points into it.

The policy is pure (:func:`plan_collection`: listing, references and a clock in,
the bundles to delete and to keep out); :func:`collect_garbage` does the IO.
A bundle is kept whole if ANY row points into it, or if ANY of its objects is
younger than the minimum age: a batch still running writes its bundle first
and its rows at its end, so a young bundle without rows may be about to get
them. Nothing outside ``batches/`` is ever considered.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from docpipe.storage.objects import ObjectStore, StoredObject

BUNDLES = "batches/"
"""The prefix every batch bundle's keys start with (``keys.chunk_bundle`` and co)."""


@dataclass(frozen=True)
class Bundle:
    """One bundle directory and what is in it."""

    prefix: str
    """``batches/<bundle id>/``: every key of the bundle starts with it."""
    keys: tuple[str, ...]
    size_bytes: int
    newest: float
    """When its most recently written object was written (epoch seconds)."""


@dataclass(frozen=True)
class CollectionPlan:
    """Every bundle found, in exactly one of three lists (each sorted by prefix)."""

    delete: list[Bundle]
    referenced: list[Bundle]
    """Kept: a document row points into it."""
    young: list[Bundle]
    """Kept: unreferenced, but an object in it is younger than the minimum age."""


def bundle_of(key: str) -> str | None:
    """``batches/<id>/...`` -> ``batches/<id>/``; None for a key in no bundle."""
    if not key.startswith(BUNDLES):
        return None
    bundle_id, slash, _rest = key[len(BUNDLES) :].partition("/")
    return f"{BUNDLES}{bundle_id}/" if bundle_id and slash else None


def plan_collection(
    objects: Iterable[StoredObject],
    referenced: Collection[str],
    *,
    now: float,
    min_age_s: float,
) -> CollectionPlan:
    """Which bundles to delete and which to keep, and why.

    ``objects`` is a listing (keys outside bundles are ignored), ``referenced``
    the keys document rows point to: a reference to any key of a bundle, listed
    or not, keeps the whole bundle."""
    found: dict[str, list[StoredObject]] = defaultdict(list)
    for item in objects:
        if (prefix := bundle_of(item.key)) is not None:
            found[prefix].append(item)
    pointed_at = {prefix for key in referenced if (prefix := bundle_of(key)) is not None}
    plan = CollectionPlan(delete=[], referenced=[], young=[])
    for prefix in sorted(found):
        items = found[prefix]
        bundle = Bundle(
            prefix=prefix,
            keys=tuple(sorted(item.key for item in items)),
            size_bytes=sum(item.size for item in items),
            newest=max(item.last_modified for item in items),
        )
        if prefix in pointed_at:
            plan.referenced.append(bundle)
        elif now - bundle.newest < min_age_s:
            plan.young.append(bundle)
        else:
            plan.delete.append(bundle)
    return plan


class BundleReferences(Protocol):
    """What the collector needs from the metadata store."""

    async def bundle_references(self) -> set[str]: ...


@dataclass(frozen=True)
class CollectionResult:
    """What one collection did (or, on a dry run, would do)."""

    plan: CollectionPlan
    dry_run: bool

    @property
    def deleted_objects(self) -> int:
        return sum(len(bundle.keys) for bundle in self.plan.delete)

    @property
    def deleted_bytes(self) -> int:
        return sum(bundle.size_bytes for bundle in self.plan.delete)


async def collect_garbage(
    store: ObjectStore,
    metadata: BundleReferences,
    *,
    min_age_s: float,
    dry_run: bool = False,
    now: float | None = None,
) -> CollectionResult:
    """Delete every bundle :func:`plan_collection` gives up (none on a dry run).

    The listing comes before the references: a row written in between points at
    a bundle already listed, and the reference read after it keeps that bundle."""
    objects = await store.list_objects(BUNDLES)
    referenced = await metadata.bundle_references()
    plan = plan_collection(
        objects, referenced, now=time.time() if now is None else now, min_age_s=min_age_s
    )
    if not dry_run:
        await store.delete_many(key for bundle in plan.delete for key in bundle.keys)
    return CollectionResult(plan=plan, dry_run=dry_run)
