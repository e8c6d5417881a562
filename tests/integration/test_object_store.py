"""The object store: the same contract on S3 (moto_server) and on a directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from docpipe.config import Settings
from docpipe.local.devstack import DevStack
from docpipe.storage import InvalidKey, ObjectNotFound, ObjectStore, open_object_store
from docpipe.storage.objects import LocalObjectStore, S3ObjectStore  # the two backends

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(scope="module")
async def s3_store(devstack: DevStack) -> AsyncIterator[S3ObjectStore]:
    # 5 MiB is S3's smallest allowed part, so the multipart path is cheap to test.
    settings = devstack.settings(s3_multipart_threshold_bytes=5 * MiB)
    async with open_object_store(settings) as store:
        assert isinstance(store, S3ObjectStore)
        await store.ensure_bucket()
        yield store


@pytest.fixture(params=["s3", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each contract test runs once per backend."""
    if request.param == "s3":
        return request.getfixturevalue("s3_store")
    (tmp_path / "objects").mkdir()
    return LocalObjectStore(tmp_path / "objects")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ contract


async def test_put_then_get_returns_the_same_bytes(store: ObjectStore) -> None:
    key = f"{unique()}/raw/doc.bin"
    data = os.urandom(4096)
    await store.put(key, data, "application/pdf")
    assert await store.get(key) == data


async def test_put_replaces_an_existing_object(store: ObjectStore) -> None:
    key = unique()
    await store.put(key, b"first")
    await store.put(key, b"second")
    assert await store.get(key) == b"second"


async def test_get_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    key = unique("missing")
    with pytest.raises(ObjectNotFound) as caught:
        await store.get(key)
    assert caught.value.key == key


async def test_exists_follows_put_and_delete(store: ObjectStore) -> None:
    key = unique()
    assert not await store.exists(key)
    await store.put(key, b"x")
    assert await store.exists(key)
    await store.delete(key)
    assert not await store.exists(key)


async def test_delete_of_a_missing_key_is_not_an_error(store: ObjectStore) -> None:
    await store.delete(unique("never-written"))


async def test_list_keys_returns_sorted_keys_under_a_prefix(store: ObjectStore) -> None:
    prefix = unique("list")
    keys = [f"{prefix}/b/2.txt", f"{prefix}/a/1.txt", f"{prefix}/c.txt"]
    for key in keys:
        await store.put(key, b"x")
    await store.put(f"{prefix}-other/d.txt", b"x")
    assert await store.list_keys(f"{prefix}/") == sorted(keys)
    assert await store.list_keys(unique("nothing")) == []


async def test_empty_bytes_are_an_object_too(store: ObjectStore) -> None:
    key = unique()
    await store.put(key, b"")
    assert await store.exists(key)
    assert await store.get(key) == b""


async def test_ensure_bucket_can_be_called_again(store: ObjectStore) -> None:
    await store.ensure_bucket()
    await store.ensure_bucket()


@pytest.mark.parametrize("key", ["", "/etc/passwd"])
async def test_invalid_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put(key, b"x")


# ------------------------------------------------------------------------ S3


async def test_objects_above_the_threshold_go_up_in_parts(s3_store: S3ObjectStore) -> None:
    key = unique("large")
    data = os.urandom(11 * MiB)  # 5 + 5 + 1 MiB
    await s3_store.put(key, data, "application/octet-stream")

    assert await s3_store.get(key) == data
    head = await s3_store.client.head_object(Bucket=s3_store.bucket, Key=key)
    # A multipart object's ETag is "<md5 of part md5s>-<number of parts>".
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == len(data)
    uploads = await s3_store.client.list_multipart_uploads(Bucket=s3_store.bucket)
    assert not uploads.get("Uploads"), "no unfinished multipart uploads are left behind"


async def test_objects_below_the_threshold_go_up_in_one_request(s3_store: S3ObjectStore) -> None:
    key = unique("small")
    await s3_store.put(key, b"small", "text/plain")
    head = await s3_store.client.head_object(Bucket=s3_store.bucket, Key=key)
    assert "-" not in head["ETag"]
    assert head["ContentType"] == "text/plain"


async def test_ensure_bucket_creates_a_missing_bucket(devstack: DevStack) -> None:
    settings = devstack.settings(s3_bucket=unique("bucket"))
    async with open_object_store(settings) as store:
        with pytest.raises(Exception, match="NoSuchBucket"):
            await store.put("k", b"x")
        await store.ensure_bucket()
        await store.put("k", b"x")
        assert await store.get("k") == b"x"


# --------------------------------------------------------------------- local


async def test_local_keys_that_escape_the_root_are_refused(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    for key in ["../outside", "a/../../outside", "a/../.."]:
        with pytest.raises(InvalidKey):
            await store.put(key, b"x")
    assert not (tmp_path / "outside").exists()


async def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put("nested/dir/doc.txt", b"hello")
    await store.put("nested/dir/doc.txt", b"hello again")
    files = sorted(
        p.relative_to(tmp_path / "objects").as_posix() for p in tmp_path.rglob("*") if p.is_file()
    )
    assert files == ["nested/dir/doc.txt"]
    assert await store.list_keys() == ["nested/dir/doc.txt"]


async def test_open_object_store_picks_the_backend_from_the_endpoint(
    settings: Settings, tmp_path: Path
) -> None:
    async with open_object_store(settings) as store:
        assert isinstance(store, S3ObjectStore)
    local_settings = settings.model_copy(update={"s3_endpoint": (tmp_path / "objs").as_uri()})
    async with open_object_store(local_settings) as store:
        assert isinstance(store, LocalObjectStore)
        assert store.root == (tmp_path / "objs").resolve()
