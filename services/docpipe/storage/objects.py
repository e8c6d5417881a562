"""Object storage behind one small async interface.

Raw documents, clean text, chunks and embeddings travel between activities as
object-store keys (claim check), so every activity needs the same five verbs:
put, get, exists, delete, list. Production talks S3 (MinIO, AWS, Ceph); the
embedded demo stack can use a plain directory instead, selected by a
``file://`` endpoint, so `docpipe run` works without any object server.

A process opens ONE store (one aioboto3 session and one client with a large
connection pool) and shares it between all of its concurrent activities:
creating a client per call costs a TLS handshake and a credentials lookup each
time and defeats connection reuse.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote, urlsplit

from docpipe.config import Settings
from docpipe.metrics.io import count_bytes, timed

if TYPE_CHECKING:  # pragma: no cover - typing only
    from types_aiobotocore_s3 import S3Client  # type: ignore[import-not-found]
else:
    S3Client = Any

# Sized for the IO worker's ~200 concurrent activities, each holding at most
# one connection at a time (a multipart upload holds a few, briefly).
MAX_POOL_CONNECTIONS = 256
# Parts of one multipart upload sent at the same time: enough to fill a link,
# few enough that one large upload cannot starve the shared connection pool.
MULTIPART_CONCURRENCY = 4
# The most keys S3's DeleteObjects takes in one request.
DELETE_BATCH = 1000


class ObjectNotFound(KeyError):
    """The key does not exist in the store."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"object not found: {self.key}"


class InvalidKey(ValueError):
    """The key is empty or would address something outside the store."""


@dataclass(frozen=True)
class StoredObject:
    """One listed object: its key, when it was last written (epoch seconds), its size."""

    key: str
    last_modified: float
    size: int


@runtime_checkable
class ObjectStore(Protocol):
    """What activities need from object storage; every call is idempotent."""

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        """Store ``data`` under ``key``, replacing any previous object."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the object's bytes; raise :class:`ObjectNotFound` if absent."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    async def list_keys(self, prefix: str = "") -> list[str]:
        """All keys starting with ``prefix``, sorted."""
        ...

    async def list_objects(self, prefix: str = "") -> list[StoredObject]:
        """Every object whose key starts with ``prefix``, with its age and size, by key."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> None:
        """:meth:`delete` each key, in as few requests as the store allows."""
        ...

    async def ensure_bucket(self) -> None:
        """Create the bucket (or directory) if it does not exist yet."""
        ...


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or "\x00" in key:
        raise InvalidKey(f"invalid object key {key!r}")
    return key


# --------------------------------------------------------------------------- S3


class S3ObjectStore:
    """An :class:`ObjectStore` on any S3-compatible server.

    Build it with :meth:`open`, which enters the aioboto3 client once; the
    instance is then shared by every activity of the process.
    """

    def __init__(self, client: S3Client, bucket: str, *, region: str, multipart_threshold: int):
        self._client = client
        self.bucket = bucket
        self._region = region
        # Parts are as large as the threshold: S3 requires >= 5 MiB per part
        # (except the last), and Settings enforces that minimum.
        self._part_size = multipart_threshold
        self.multipart_threshold = multipart_threshold

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[S3ObjectStore]:
        """Create the process's session and client; close them on exit."""
        import aioboto3
        from aiobotocore.config import AioConfig

        config = AioConfig(
            # "standard" retries throttling and 5xx with jittered backoff, and
            # counts a retry quota so a dead server is not hammered.
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            connect_timeout=10,
            read_timeout=60,
            # Path-style works on MinIO, Ceph, moto and AWS alike; virtual-host
            # style would need wildcard DNS for a self-hosted endpoint.
            s3={"addressing_style": "path"},
        )
        session = aioboto3.Session()
        async with session.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key.get_secret_value(),
            aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
            config=config,
        ) as client:
            yield cls(
                client,
                settings.s3_bucket,
                region=settings.s3_region,
                multipart_threshold=settings.s3_multipart_threshold_bytes,
            )

    @property
    def client(self) -> S3Client:
        """The shared aioboto3 client, for what this interface does not cover."""
        return self._client

    @timed("s3", "put")
    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        _check_key(key)
        if len(data) >= self.multipart_threshold:
            await self._put_multipart(key, data, content_type)
        else:
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            )
        count_bytes("s3", "out", len(data))

    async def _put_multipart(self, key: str, data: bytes, content_type: str) -> None:
        """Upload in parts, a few at a time; abort on failure so no parts linger.

        Single PUTs of large bodies fail as a whole on any hiccup and cannot be
        retried piecewise; parts are retried individually by botocore.
        """
        created = await self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        upload_id = created["UploadId"]
        limit = asyncio.Semaphore(MULTIPART_CONCURRENCY)

        async def upload_part(number: int, start: int) -> dict[str, Any]:
            async with limit:
                part = await self._client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data[start : start + self._part_size],
                )
            return {"PartNumber": number, "ETag": part["ETag"]}

        try:
            parts = await asyncio.gather(
                *(
                    upload_part(number, start)
                    for number, start in enumerate(range(0, len(data), self._part_size), 1)
                )
            )
            await self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": list(parts)},
            )
        except BaseException:
            # Shielded so a cancelled activity still releases the stored parts.
            await asyncio.shield(
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            )
            raise

    @timed("s3", "get")
    async def get(self, key: str) -> bytes:
        _check_key(key)
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.NoSuchKey as exc:
            raise ObjectNotFound(key) from exc
        async with response["Body"] as body:
            data: bytes = await body.read()
        count_bytes("s3", "in", len(data))
        return data

    @timed("s3", "head")
    async def exists(self, key: str) -> bool:
        _check_key(key)
        from botocore.exceptions import ClientError

        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise
        return True

    @timed("s3", "delete")
    async def delete(self, key: str) -> None:
        _check_key(key)
        await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def list_keys(self, prefix: str = "") -> list[str]:
        return [found.key for found in await self.list_objects(prefix)]

    @timed("s3", "list")
    async def list_objects(self, prefix: str = "") -> list[StoredObject]:
        found: list[StoredObject] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(
                StoredObject(item["Key"], item["LastModified"].timestamp(), item["Size"])
                for item in page.get("Contents", [])
            )
        return sorted(found, key=lambda item: item.key)

    @timed("s3", "delete_many")
    async def delete_many(self, keys: Iterable[str]) -> None:
        batch = [_check_key(key) for key in keys]
        for start in range(0, len(batch), DELETE_BATCH):
            objects = [{"Key": key} for key in batch[start : start + DELETE_BATCH]]
            response = await self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
            # DeleteObjects answers 200 even when some keys were not deleted.
            if errors := response.get("Errors"):
                first = errors[0]
                raise RuntimeError(
                    f"{len(errors)} objects not deleted, e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )

    async def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _status(exc) != 404:
                raise
        create: dict[str, Any] = {"Bucket": self.bucket}
        if self._region != "us-east-1":  # us-east-1 rejects an explicit constraint
            create["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            await self._client.create_bucket(**create)
        except ClientError as exc:
            # Another worker won the race: the bucket is there, which is the goal.
            code = exc.response.get("Error", {}).get("Code")
            if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise


def _status(exc: Any) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


# ------------------------------------------------------------------------ Local


class LocalObjectStore:
    """An :class:`ObjectStore` on a directory, for the embedded demo stack.

    Keys map to relative paths (``/`` makes sub-directories). Writes go to a
    temporary file that is renamed into place, so a reader never sees half an
    object and a crash leaves either the old or the new version. Blocking file
    IO runs in threads so the event loop keeps serving other activities.
    """

    _TMP_SUFFIX = ".docpipe-tmp"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._root = str(self.root)

    def _path(self, key: str) -> Path:
        # Lexical, no filesystem calls (resolve() cost a stat per path component,
        # a quarter of the GPU worker's CPU per object): the store writes no
        # symlinks, so a key can only escape the root through "..".
        _check_key(key)
        path = os.path.normpath(os.path.join(self._root, key))
        if path == self._root or not path.startswith(self._root + os.sep):
            raise InvalidKey(f"object key {key!r} escapes the store root")
        return Path(path)

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        # A directory has nowhere to keep content_type; readers sniff or get
        # the type from the metadata row instead.
        path = self._path(key)
        await asyncio.to_thread(self._write_atomic, path, data)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=self._TMP_SUFFIX
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        return await asyncio.to_thread(path.is_file)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except (FileNotFoundError, IsADirectoryError):
            pass

    async def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            await self.delete(key)

    async def list_keys(self, prefix: str = "") -> list[str]:
        return [found.key for found in await self.list_objects(prefix)]

    async def list_objects(self, prefix: str = "") -> list[StoredObject]:
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> list[StoredObject]:
        if not self.root.is_dir():
            return []
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.endswith(self._TMP_SUFFIX):
                    continue  # a write in progress, not an object yet
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted since the walk saw it
                found.append(StoredObject(key, stat.st_mtime, stat.st_size))
        return sorted(found, key=lambda item: item.key)

    async def ensure_bucket(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)


# ----------------------------------------------------------------------- Factory


def local_root_from_endpoint(endpoint: str) -> Path:
    """``file:///srv/objects`` -> ``/srv/objects``."""
    parts = urlsplit(endpoint)
    if parts.scheme != "file" or parts.netloc not in {"", "localhost"}:
        raise ValueError(f"not a local file:// endpoint: {endpoint!r}")
    return Path(unquote(parts.path))


def open_object_store(settings: Settings) -> AbstractAsyncContextManager[ObjectStore]:
    """The store S3_ENDPOINT names: ``file://`` is a directory, http(s) is S3.

    Use it once per process (``async with open_object_store(s) as store``) and
    share ``store``; leaving the block closes the S3 client.
    """
    if settings.s3_endpoint.startswith("file://"):
        return _local(local_root_from_endpoint(settings.s3_endpoint))
    return S3ObjectStore.open(settings)


@asynccontextmanager
async def _local(root: Path) -> AsyncIterator[ObjectStore]:
    yield LocalObjectStore(root)


T = TypeVar("T")


async def read_each_once(
    store: ObjectStore, object_keys: Iterable[str], parse: Callable[[bytes], T]
) -> dict[str, T | ObjectNotFound]:
    """Every distinct key read once, concurrently; a missing one maps to its error."""
    distinct = sorted({k for k in object_keys if k})

    async def one(key: str) -> T | ObjectNotFound:
        try:
            return parse(await store.get(key))
        except ObjectNotFound as missing:
            return missing

    return dict(zip(distinct, await asyncio.gather(*(one(k) for k in distinct)), strict=True))
