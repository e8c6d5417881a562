"""Local-file sources: read only inside the worker's LOCAL_SOURCE_ROOT folders.

A CSV row is data: without a root no local path is readable (a row
``/proc/self/environ`` must not hand the worker's secrets to the pipeline);
with roots, a path must resolve -- ``..`` and symlinks included -- inside one.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from docpipe.activities.io.download import download
from docpipe.activities.io.local_files import confine
from docpipe.config import load_settings
from docpipe.errors import DocumentError
from docpipe.models import Stage

CAP = 64 * 1024
BODY = b"Hello, docpipe!\n"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:  # never used for local files
        yield client


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "note.txt").write_bytes(BODY)
    (root / "big.bin").write_bytes(b"x" * (CAP + 1))
    (tmp_path / "secret.txt").write_text("outside the root")
    (root / "link-out.txt").symlink_to(tmp_path / "secret.txt")
    return root


async def fails(source: str, client: httpx.AsyncClient, roots: list[Path]) -> str:
    with pytest.raises(DocumentError) as caught:
        await download(source, client, max_bytes=CAP, local_roots=roots)
    assert caught.value.stage == Stage.DOWNLOAD
    return caught.value.reason


# ------------------------------------------------------------- the default


@pytest.mark.parametrize("source", ["/proc/self/environ", "file:///etc/passwd", "relative.txt"])
async def test_without_a_root_no_local_file_is_read(client: httpx.AsyncClient, source: str) -> None:
    reason = await fails(source, client, [])
    assert "LOCAL_SOURCE_ROOT" in reason
    assert "not readable on this worker" in reason


def test_settings_have_no_local_root_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_SOURCE_ROOT", raising=False)
    assert load_settings().local_source_roots == ()


def test_local_source_root_lists_folders_like_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    settings = load_settings(local_source_root=f"{a}{os.pathsep}{b}{os.pathsep}")
    assert settings.local_source_roots == (a, b)


# ------------------------------------------------------------ inside a root


async def test_a_local_path_inside_the_root_is_read(files: Path, client: httpx.AsyncClient) -> None:
    got = await download(
        str(files / "sub" / "note.txt"), client, max_bytes=CAP, local_roots=[files]
    )
    assert got.data == BODY
    assert got.filename == "note.txt"
    assert got.content_type == "text/plain"
    assert got.final_url == (files / "sub" / "note.txt").as_uri()


async def test_a_file_url_inside_the_root_is_read(files: Path, client: httpx.AsyncClient) -> None:
    got = await download(
        (files / "sub" / "note.txt").as_uri(), client, max_bytes=CAP, local_roots=[files]
    )
    assert got.data == BODY


async def test_a_relative_path_is_taken_from_the_first_root(
    files: Path, client: httpx.AsyncClient
) -> None:
    got = await download("sub/note.txt", client, max_bytes=CAP, local_roots=[files])
    assert got.data == BODY


async def test_any_of_several_roots_will_do(
    files: Path, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    got = await download(
        str(files / "sub" / "note.txt"), client, max_bytes=CAP, local_roots=[other, files]
    )
    assert got.data == BODY


async def test_a_missing_file_fails_the_document(files: Path, client: httpx.AsyncClient) -> None:
    assert "does not exist" in await fails(str(files / "nope.txt"), client, [files])


async def test_a_directory_fails_the_document(files: Path, client: httpx.AsyncClient) -> None:
    assert "is a directory" in await fails(str(files / "sub"), client, [files])


async def test_an_oversized_file_fails_the_document(files: Path, client: httpx.AsyncClient) -> None:
    assert f"larger than the {CAP}-byte limit" in await fails(
        str(files / "big.bin"), client, [files]
    )


# ------------------------------------------------------------ escaping it


@pytest.mark.parametrize("source", ["../secret.txt", "sub/../../secret.txt", "link-out.txt"])
async def test_paths_that_escape_the_root_are_refused(
    files: Path, client: httpx.AsyncClient, source: str
) -> None:
    assert "outside the allowed root" in await fails(source, client, [files])


async def test_absolute_paths_outside_the_root_are_refused(
    files: Path, client: httpx.AsyncClient
) -> None:
    assert "outside the allowed root" in await fails(
        (files.parent / "secret.txt").as_uri(), client, [files]
    )


def test_a_root_is_a_folder_not_a_name_prefix(tmp_path: Path) -> None:
    (tmp_path / "docs-private").mkdir()
    with pytest.raises(DocumentError, match="outside the allowed root"):
        confine(tmp_path / "docs-private" / "x.txt", [tmp_path / "docs"])
