"""Which batch bundles `docpipe gc` deletes: the policy, then the collector on a directory.

A bundle is ``batches/<id>/`` and goes as a whole or not at all: it stays while
any document row points into it or any object in it is younger than the
minimum age; nothing outside ``batches/`` is ever a candidate.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docpipe.storage import keys
from docpipe.storage.bundle_gc import (
    Bundle,
    CollectionPlan,
    bundle_of,
    collect_garbage,
    plan_collection,
)
from docpipe.storage.objects import LocalObjectStore, StoredObject

NOW = 1_000_000_000.0
DAY = 86_400.0
OLD = NOW - 2 * DAY


def listed(*keys_and_times: tuple[str, float], size: int = 10) -> list[StoredObject]:
    return [StoredObject(key, when, size) for key, when in keys_and_times]


def prefixes(bundles: list[Bundle]) -> list[str]:
    return [bundle.prefix for bundle in bundles]


def plan(
    objects: list[StoredObject], referenced: frozenset[str] = frozenset(), min_age_s: float = DAY
) -> CollectionPlan:
    return plan_collection(objects, referenced, now=NOW, min_age_s=min_age_s)


# ------------------------------------------------------------------- policy


def test_an_old_bundle_no_row_points_to_is_deleted_whole() -> None:
    result = plan(listed(("batches/a/chunks.json", OLD), ("batches/a/vectors.npz", OLD)))
    assert prefixes(result.delete) == ["batches/a/"]
    assert result.delete[0].keys == ("batches/a/chunks.json", "batches/a/vectors.npz")
    assert result.delete[0].size_bytes == 20


def test_a_referenced_bundle_is_kept() -> None:
    result = plan(listed(("batches/a/chunks.json", OLD)), frozenset({"batches/a/chunks.json"}))
    assert result.delete == [] and prefixes(result.referenced) == ["batches/a/"]


def test_one_referenced_key_keeps_the_whole_bundle() -> None:
    objects = listed(("batches/a/chunks.json", OLD), ("batches/a/vectors.npz", OLD))
    result = plan(objects, frozenset({"batches/a/vectors.npz"}))
    assert result.delete == []
    assert result.referenced[0].keys == ("batches/a/chunks.json", "batches/a/vectors.npz")


def test_a_reference_to_a_key_not_listed_still_keeps_its_bundle() -> None:
    result = plan(listed(("batches/a/chunks.json", OLD)), frozenset({"batches/a/vectors.npz"}))
    assert prefixes(result.referenced) == ["batches/a/"]


def test_a_young_bundle_is_kept_even_without_references() -> None:
    result = plan(listed(("batches/a/chunks.json", NOW - 60)))
    assert result.delete == [] and prefixes(result.young) == ["batches/a/"]


def test_one_young_object_keeps_the_whole_bundle() -> None:
    result = plan(listed(("batches/a/chunks.json", OLD), ("batches/a/vectors.npz", NOW - 60)))
    assert result.delete == [] and prefixes(result.young) == ["batches/a/"]


def test_a_referenced_bundle_counts_as_referenced_even_when_young() -> None:
    result = plan(listed(("batches/a/chunks.json", NOW)), frozenset({"batches/a/chunks.json"}))
    assert prefixes(result.referenced) == ["batches/a/"] and result.young == []


def test_a_bundle_exactly_the_minimum_age_is_old_enough() -> None:
    result = plan(listed(("batches/a/chunks.json", NOW - DAY)))
    assert prefixes(result.delete) == ["batches/a/"]


def test_minimum_age_zero_deletes_every_unreferenced_bundle() -> None:
    result = plan(listed(("batches/a/x", NOW), ("batches/b/x", NOW)), frozenset({"batches/b/x"}), 0)
    assert prefixes(result.delete) == ["batches/a/"]
    assert prefixes(result.referenced) == ["batches/b/"]


def test_keys_outside_bundles_are_never_candidates() -> None:
    document = "0123abcd"
    outside = [
        keys.raw(document), keys.text(document), keys.chunks(document),
        keys.embeddings(document), keys.compressed(document), "ingest/ab/documents.csv",
        "batches", "batches/loose-object", "batchesX/a/chunks.json",
    ]  # fmt: skip
    result = plan(listed(*((key, OLD) for key in outside)))
    assert result.delete == result.referenced == result.young == []


def test_each_bundle_is_decided_on_its_own() -> None:
    objects = listed(
        ("batches/gone/chunks.json", OLD),
        ("batches/kept/chunks.json", OLD),
        ("batches/young/chunks.json", NOW - 5),
        ("raw/doc", OLD),
    )
    result = plan(objects, frozenset({"batches/kept/chunks.json", "raw/doc"}))
    assert prefixes(result.delete) == ["batches/gone/"]
    assert prefixes(result.referenced) == ["batches/kept/"]
    assert prefixes(result.young) == ["batches/young/"]


def test_the_bundle_keys_the_pipeline_writes_are_bundles() -> None:
    ids = ["d1", "d2"]
    assert bundle_of(keys.chunk_bundle(ids)) == bundle_of(keys.vector_bundle(ids))
    assert bundle_of(keys.chunk_bundle(ids)) == f"batches/{keys.bundle_id(ids)}/"
    assert bundle_of(keys.chunks("d1")) is None


# ------------------------------------------------------ collector, on a directory


class Rows:
    """The metadata store's one query the collector needs."""

    def __init__(self, *referenced: str) -> None:
        self.referenced = set(referenced)

    async def bundle_references(self) -> set[str]:
        return set(self.referenced)


async def write(store: LocalObjectStore, key: str, age_s: float) -> None:
    await store.put(key, b"0123456789")
    when = NOW - age_s
    os.utime(store.root / key, (when, when))


@pytest.fixture
async def store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path)
    await write(store, "batches/old/chunks.json", 2 * DAY)
    await write(store, "batches/old/vectors.npz", 2 * DAY)
    await write(store, "batches/used/chunks.json", 2 * DAY)
    await write(store, "batches/new/chunks.json", 60)
    await write(store, "raw/doc", 30 * DAY)
    return store


async def test_the_collector_deletes_only_the_unreferenced_old_bundle(
    store: LocalObjectStore,
) -> None:
    result = await collect_garbage(store, Rows("batches/used/chunks.json"), min_age_s=DAY, now=NOW)
    assert prefixes(result.plan.delete) == ["batches/old/"]
    assert (result.deleted_objects, result.deleted_bytes) == (2, 20)
    assert await store.list_keys() == [
        "batches/new/chunks.json", "batches/used/chunks.json", "raw/doc",
    ]  # fmt: skip


async def test_a_dry_run_deletes_nothing(store: LocalObjectStore) -> None:
    before = await store.list_keys()
    result = await collect_garbage(store, Rows(), min_age_s=0, dry_run=True, now=NOW)
    assert result.dry_run
    assert prefixes(result.plan.delete) == ["batches/new/", "batches/old/", "batches/used/"]
    assert await store.list_keys() == before


async def test_the_directory_store_lists_modification_times_and_sizes(
    store: LocalObjectStore,
) -> None:
    objects = await store.list_objects("batches/old/")
    assert [(o.key, o.last_modified, o.size) for o in objects] == [
        ("batches/old/chunks.json", NOW - 2 * DAY, 10),
        ("batches/old/vectors.npz", NOW - 2 * DAY, 10),
    ]
