"""s3:// document sources, read with the IO worker's own S3 client from moto_server.

A source bucket is filled the way a user's would be; the download step must
fetch what is there, refuse what is not allowed, and fail each bad source
alone with a reason -- and the allowed source kinds are a setting.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from docpipe.activities.io.activities import IoActivities
from docpipe.activities.io.download import download
from docpipe.activities.io.s3_source import S3SourceReader, parse_s3_url
from docpipe.config import Settings
from docpipe.errors import DocumentError
from docpipe.local.devstack import DevStack
from docpipe.models import DocumentRef, Stage
from docpipe.storage import S3ObjectStore, open_object_store

pytestmark = pytest.mark.integration

CAP = 1024
REPORT = b"Quarterly report\n\nRevenue grew in every region.\n"


@pytest.fixture(scope="module")
async def sources(devstack: DevStack) -> AsyncIterator[tuple[S3ObjectStore, str]]:
    """The worker's store, and a second bucket of source documents beside its own."""
    bucket = f"sources-{uuid.uuid4().hex[:8]}"
    async with open_object_store(devstack.settings(s3_bucket=bucket)) as store:
        assert isinstance(store, S3ObjectStore)
        await store.ensure_bucket()
        await store.put("reports/q3 report.txt", REPORT, "text/plain")
        await store.put("empty.txt", b"", "text/plain")
        await store.put("big.bin", b"x" * (CAP + 1), "application/octet-stream")
        yield store, bucket


async def test_an_object_is_fetched_with_its_type_and_name(sources) -> None:
    store, bucket = sources
    read = S3SourceReader(store.client)
    got = await read(f"s3://{bucket}/reports/q3%20report.txt", CAP)
    assert got.data == REPORT
    assert got.content_type == "text/plain"
    assert got.filename == "q3 report.txt"
    assert got.final_url == f"s3://{bucket}/reports/q3%20report.txt"


async def test_an_empty_object_is_fetched_as_no_bytes(sources) -> None:
    # S3 answers 416 to a ranged GET of an empty object; that is not an error.
    store, bucket = sources
    got = await S3SourceReader(store.client)(f"s3://{bucket}/empty.txt", CAP)
    assert got.data == b""


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://{bucket}/missing.txt", "no such object"),
        ("s3://no-such-bucket-{uid}/a.txt", "no such bucket"),
        ("s3://{bucket}/big.bin", f"larger than the {CAP}-byte limit ({CAP + 1} bytes)"),
        ("s3://{bucket}/", "needs a bucket and an object key"),
        ("s3:///key.txt", "needs a bucket and an object key"),
    ],
)
async def test_a_bad_s3_source_fails_that_document_with_the_reason(
    sources, url: str, reason: str
) -> None:
    store, bucket = sources
    with pytest.raises(DocumentError) as caught:
        await S3SourceReader(store.client)(url.format(bucket=bucket, uid=uuid.uuid4().hex[:6]), CAP)
    assert caught.value.stage == Stage.DOWNLOAD
    assert reason in caught.value.reason


async def test_only_allowlisted_buckets_may_be_read(sources) -> None:
    store, bucket = sources
    read = S3SourceReader(store.client, allowed_buckets=["public-docs"])
    with pytest.raises(DocumentError, match="not among the allowed source buckets"):
        await read(f"s3://{bucket}/reports/q3%20report.txt", CAP)


def test_an_s3_url_names_bucket_and_unquoted_key() -> None:
    assert parse_s3_url("s3://docs/a/b%2Bc.pdf") == ("docs", "a/b+c.pdf")


async def test_source_kinds_outside_download_schemes_are_refused(tmp_path) -> None:
    local = tmp_path / "note.txt"
    local.write_text("hello")
    async with httpx.AsyncClient() as http:
        for source, kind in [
            (str(local), "local file"),
            (local.as_uri(), "local file"),
            ("s3://docs/a.txt", "s3"),
            ("http://example.com/a.txt", "http"),
        ]:
            with pytest.raises(DocumentError, match=f"{kind} sources are not allowed here"):
                await download(source, http, max_bytes=CAP, schemes={"https"})
        got = await download(
            str(local), http, max_bytes=CAP, schemes={"file"}, local_roots=[tmp_path]
        )
        assert got.data == b"hello"


def test_download_schemes_must_name_known_kinds() -> None:
    assert Settings(download_schemes=" HTTPS, s3 ").download_schemes == "https,s3"
    with pytest.raises(ValueError, match="unknown source kind"):
        Settings(download_schemes="https,ftp")


async def test_the_download_activity_keeps_an_s3_source_as_the_documents_raw_object(
    devstack: DevStack, sources
) -> None:
    _, bucket = sources
    settings = devstack.settings(download_schemes="s3", download_s3_buckets=bucket)
    good = DocumentRef("doc-s3-good", f"s3://{bucket}/reports/q3%20report.txt", 2)
    local = DocumentRef("doc-s3-local", "/etc/hostname", 3)
    async with open_object_store(settings) as store, httpx.AsyncClient() as http:
        await store.ensure_bucket()
        activities = IoActivities(settings, http, store, None, None)  # type: ignore[arg-type]
        result = await ActivityEnvironment().run(activities.download_document, [good, local])
        assert [d.document_id for d in result.succeeded] == ["doc-s3-good"]
        fetched = result.succeeded[0]
        assert await store.get(fetched.raw_key) == REPORT
        assert fetched.size_bytes == len(REPORT)
        assert fetched.final_url == good.source
        assert fetched.filename == "q3 report.txt"  # a hint for the sniffer
        [failure] = result.failed
        assert failure.document_id == "doc-s3-local"
        assert "local file sources are not allowed here" in failure.reason
