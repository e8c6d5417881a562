"""Read ``s3://bucket/key`` document sources with the IO worker's pooled S3 client.

Documents often already live in a bucket; fetching them over S3 (rather than
through presigned http URLs) keeps credentials out of the CSV and reuses the
worker's one aioboto3 client. The same rules as for http hold: a bad source is
a :class:`DocumentError` (no such bucket or key, access denied, a bucket not on
the allowlist, too large), a flaky server a :class:`TransientError`.

The byte cap is enforced with a ranged GET (``bytes=0-<cap>``): at most one
byte more than the cap ever crosses the wire, whatever the object's size, and
the total in Content-Range names the real size in the error.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from docpipe.activities.io.downloaded import Downloaded
from docpipe.errors import DocumentError, TransientError
from docpipe.models import Stage

# S3 error codes that name a bad source: retrying cannot make them succeed.
_SOURCE_ERRORS = {
    "NoSuchKey": "no such object",
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "access denied",
    "InvalidBucketName": "invalid bucket name",
    "AllAccessDisabled": "access denied",
}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://bucket/key``; a URL without either is a bad source."""
    parts = urlsplit(url)
    bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
    if not bucket or not key or key.endswith("/"):
        raise DocumentError(
            Stage.DOWNLOAD,
            f"an s3 source needs a bucket and an object key (s3://bucket/key): {url}",
        )
    return bucket, key


class S3SourceReader:
    """Fetches ``s3://`` sources, at most ``max_bytes`` each.

    ``allowed_buckets``: if not empty, the only buckets sources may name; the
    worker's credentials may reach more (its own artifact bucket at least).
    """

    def __init__(self, client: Any, allowed_buckets: Collection[str] = ()) -> None:
        self._client = client
        self.allowed_buckets = frozenset(b for b in allowed_buckets if b)

    async def __call__(self, url: str, max_bytes: int) -> Downloaded:
        bucket, key = parse_s3_url(url)
        if self.allowed_buckets and bucket not in self.allowed_buckets:
            raise DocumentError(
                Stage.DOWNLOAD,
                f"bucket {bucket!r} is not among the allowed source buckets "
                f"(DOWNLOAD_S3_BUCKETS: {', '.join(sorted(self.allowed_buckets))})",
            )
        response = await self._get(url, bucket, key, f"bytes=0-{max_bytes}")
        if response is None:  # a zero-length object has no byte 0 to range over
            response = await self._get(url, bucket, key, None)
            assert response is not None
        total = _total_size(response)
        if total is not None and total > max_bytes:
            raise DocumentError(
                Stage.DOWNLOAD,
                f"{url} is larger than the {max_bytes}-byte limit ({total} bytes)",
            )
        try:
            async with response["Body"] as body:
                data: bytes = await body.read()
        except Exception as exc:  # the connection dropped mid-body
            raise TransientError(f"reading {url} failed: {exc}") from exc
        if len(data) > max_bytes:
            raise DocumentError(Stage.DOWNLOAD, f"{url} is larger than the {max_bytes}-byte limit")
        return Downloaded(
            data=data,
            content_type=str(response.get("ContentType") or ""),
            final_url=url,
            filename=PurePosixPath(key).name,
        )

    async def _get(self, url: str, bucket: str, key: str, byte_range: str | None) -> Any:
        """The GetObject response; None when the range is unsatisfiable (an empty object)."""
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if byte_range is not None:
            request["Range"] = byte_range
        try:
            return await self._client.get_object(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "InvalidRange" or status == 416:
                return None
            if code in _SOURCE_ERRORS:
                raise DocumentError(Stage.DOWNLOAD, f"{_SOURCE_ERRORS[code]}: {url}") from None
            if status in {403, 404}:
                reason = "access denied" if status == 403 else "no such object"
                raise DocumentError(Stage.DOWNLOAD, f"{reason}: {url}") from None
            raise TransientError(f"S3 answered {code or status} for {url}") from exc
        except BotoCoreError as exc:  # endpoint unreachable, timeouts, dropped connections
            raise TransientError(f"S3 unreachable for {url}: {exc}") from exc


def _total_size(response: Any) -> int | None:
    """The object's full size from ``Content-Range: bytes 0-N/TOTAL``, if ranged."""
    content_range = str(response.get("ContentRange") or "")
    _, _, total = content_range.rpartition("/")
    return int(total) if total.isdigit() else None
