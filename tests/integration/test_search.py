"""The read path: what was ingested can be found (search) and looked up (show).

Five documents on unrelated subjects are stored the way the IO worker stores
them (row in PostgreSQL, chunk vectors in Chroma, chunk texts in the full-text
index), in a Chroma collection of their own and under a tag of their own, so
other tests' documents in the shared PostgreSQL never decide an assertion.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from cli_runs import docpipe_server

from docpipe.config import Settings
from docpipe.csv_input import document_id_for
from docpipe.models import DocumentOutcome, Status
from docpipe.retrieval.filters import BadSearch, search_request
from docpipe.retrieval.lookup import sections
from docpipe.retrieval.service import ReadPath, open_read_path
from docpipe.storage.chunk_texts import ChunkTextRows, ChunkTexts
from docpipe.storage.text_search import text_search_config
from docpipe.storage.vectors import DocumentVectors

pytestmark = pytest.mark.integration

TAG = f"search-{uuid.uuid4().hex[:8]}"
COLLECTION = f"search_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Doc:
    name: str
    title: str
    language: str
    content_type: str
    chunks: tuple[str, ...]

    @property
    def source(self) -> str:
        return f"https://docs.example.org/{TAG}/{self.name}"

    @property
    def document_id(self) -> str:
        return document_id_for(self.source)


CORPUS = [
    Doc(
        "lighthouse.html",
        "Keeping the Skerryvore lighthouse",
        "en",
        "text/html",
        (
            "The keepers of the Skerryvore lighthouse trimmed the lamp wicks every four hours.",
            "Storms from the Atlantic kept the relief boat away for weeks; the logbook "
            "records fog signals, oil deliveries and the state of the lantern glass.",
        ),
    ),
    Doc(
        "sourdough.txt",
        "Sourdough starter hydration",
        "en",
        "text/plain",
        (
            "A sourdough starter at 100 percent hydration is equal weights of flour and water.",
            "Feed the levain twice a day; a stiffer starter ferments more slowly and sourer.",
        ),
    ),
    Doc(
        "borrow.md",
        "Lifetimes and the Rust borrow checker",
        "en",
        "text/markdown",
        (
            "The borrow checker rejects a reference that outlives the value it points to.",
            "Error E0502 means a value was borrowed mutably while an immutable borrow was alive.",
        ),
    ),
    Doc(
        "bienen.txt",
        "Bienen im Winter",
        "de",
        "text/plain",
        (
            "Im Winter bilden die Bienen eine Wintertraube und wärmen die Königin.",
            "Der Imker kontrolliert das Futter im Bienenstock, ohne die Beute zu öffnen.",
        ),
    ),
    Doc(
        "volcanic.html",
        "Vineyards on volcanic ash in Lanzarote",
        "en",
        "text/html",
        (
            "In La Geria each vine grows in a pit dug through the black volcanic ash (picón).",
            "Low stone walls shelter the vines from the trade winds; the ash keeps dew.",
        ),
    ),
]
BY_NAME = {doc.name: doc for doc in CORPUS}


@pytest.fixture(scope="module")
async def read_path(settings: Settings, embedder) -> AsyncIterator[ReadPath]:
    own = settings.model_copy(update={"vector_collection": COLLECTION})
    async with open_read_path(own) as read_path:
        vectors = await read_path.vectors()
        await read_path.metadata.upsert_outcomes(
            [
                DocumentOutcome(
                    document_id=doc.document_id,
                    source=doc.source,
                    row_number=number,
                    status=Status.SUCCEEDED,
                    run_id=TAG,
                    title=doc.title,
                    tags=[TAG, doc.language],
                    content_type=doc.content_type,
                    language=doc.language,
                    chunk_count=len(doc.chunks),
                    embedding_model="all-MiniLM-L6-v2",
                )
                for number, doc in enumerate(CORPUS, start=1)
            ]
        )
        await vectors.upsert_documents(
            [
                DocumentVectors(
                    doc.document_id,
                    list(doc.chunks),
                    embedder.encode(list(doc.chunks)),
                    {"language": doc.language, "title": doc.title, "source": doc.source},
                )
                for doc in CORPUS
            ]
        )
        await ChunkTexts(read_path.metadata).replace(
            [ChunkTextRows(doc.document_id, doc.chunks, doc.language) for doc in CORPUS]
        )
        yield read_path


async def top(read_path: ReadPath, query: str, **kwargs: object) -> list[str]:
    request = search_request(query, **{"tag": TAG, **kwargs})  # type: ignore[arg-type]
    return [hit.document_id for hit in await read_path.search(request)]


# ------------------------------------------------------------ known items


@pytest.mark.parametrize("mode", ["vector", "text", "hybrid"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("lighthouse keeper logbook", "lighthouse.html"),
        ("how much water in a sourdough starter", "sourdough.txt"),
        ("E0502 borrowed mutably", "borrow.md"),
        ("wine grown in volcanic ash", "volcanic.html"),
    ],
)
async def test_each_mode_finds_the_document_a_query_describes(
    read_path: ReadPath, mode: str, query: str, expected: str
) -> None:
    found = await top(read_path, query, mode=mode, k=3)
    assert found[0] == BY_NAME[expected].document_id


async def test_text_search_matches_inflected_forms_in_the_document_language(
    read_path: ReadPath,
) -> None:
    # "Bienenstöcke"/"kontrollieren" are not in the text; the German stemmer matches them.
    found = await top(read_path, "Bienen kontrollieren", mode="text", language="de")
    assert found[:1] == [BY_NAME["bienen.txt"].document_id]


async def test_a_hit_carries_its_document_title_source_and_chunk(read_path: ReadPath) -> None:
    hits = await read_path.search(search_request("E0502", tag=TAG, mode="text", k=1))
    hit = hits[0]
    doc = BY_NAME["borrow.md"]
    assert (hit.title, hit.source, hit.content_type) == (doc.title, doc.source, "text/markdown")
    assert hit.chunk_index == 1 and "E0502" in hit.text
    assert hit.text_rank == 1 and hit.score > 0


async def test_hybrid_reports_both_ranks_of_a_chunk_both_retrievers_found(
    read_path: ReadPath,
) -> None:
    hits = await read_path.search(search_request("Skerryvore lighthouse lamp", tag=TAG, k=1))
    assert hits[0].vector_rank is not None and hits[0].text_rank is not None


async def test_k_bounds_the_results(read_path: ReadPath) -> None:
    assert len(await top(read_path, "the", mode="vector", k=2)) == 2


async def test_a_query_of_stop_words_only_finds_nothing_by_text(read_path: ReadPath) -> None:
    assert await top(read_path, "the of and", mode="text") == []


# ---------------------------------------------------------------- filters


async def test_filters_narrow_every_mode(read_path: ReadPath) -> None:
    html = {BY_NAME["lighthouse.html"].document_id, BY_NAME["volcanic.html"].document_id}
    for mode in ("vector", "text", "hybrid"):
        found = await top(
            read_path, "lighthouse vineyard sourdough", mode=mode, content_type="text/html"
        )
        assert found and set(found) <= html, mode
        german = await top(read_path, "Bienen Winter", mode=mode, language="de")
        assert set(german) == {BY_NAME["bienen.txt"].document_id}, mode


async def test_a_tag_nobody_has_finds_nothing(read_path: ReadPath) -> None:
    request = search_request("lighthouse", tag=f"{TAG}-none")
    assert await read_path.search(request) == []


async def test_failed_documents_are_never_returned(read_path: ReadPath) -> None:
    doc = BY_NAME["sourdough.txt"]
    before = await top(read_path, "sourdough starter hydration", mode="text")
    assert doc.document_id in before
    row = await read_path.metadata.get(doc.document_id)
    assert row is not None
    failed = DocumentOutcome(
        document_id=doc.document_id,
        source=doc.source,
        row_number=2,
        status=Status.FAILED,
        run_id=TAG,
        title=doc.title,
        tags=[TAG, doc.language],
    )
    try:
        await read_path.metadata.upsert_outcomes([failed])
        for mode in ("vector", "text", "hybrid"):
            after = await top(read_path, "sourdough starter hydration", mode=mode)
            assert doc.document_id not in after, mode
    finally:
        restored = DocumentOutcome(
            **{**{k: row[k] for k in ("document_id", "source", "row_number", "run_id", "title")},
               "status": Status.SUCCEEDED, "tags": [TAG, doc.language],
               "content_type": doc.content_type, "language": doc.language}
        )  # fmt: skip
        await read_path.metadata.upsert_outcomes([restored])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": "   "}, "the query is empty"),
        ({"query": "x", "k": 0}, "k must be between 1 and 100"),
        ({"query": "x", "k": 101}, "k must be between 1 and 100"),
        ({"query": "x", "mode": "fuzzy"}, "mode must be one of vector, text, hybrid"),
        ({"query": "x", "language": "english"}, "ISO 639"),
        ({"query": "x", "content_type": "html"}, "MIME type"),
    ],
)
def test_bad_requests_say_what_is_wrong(kwargs: dict, message: str) -> None:
    query = kwargs.pop("query")
    with pytest.raises(BadSearch, match=message):
        search_request(query, **kwargs)


# ------------------------------------------------------------------- show


async def test_show_finds_a_document_by_id_and_by_source(read_path: ReadPath) -> None:
    doc = BY_NAME["borrow.md"]
    by_id = await read_path.show(doc.document_id)
    by_source = await read_path.show(doc.source)
    assert by_id is not None and by_source is not None
    assert by_id["document_id"] == by_source["document_id"] == doc.document_id
    assert by_id["title"] == doc.title and by_id["chunk_count"] == 2
    grouped = dict(sections(by_id))
    assert ("status", "succeeded") in grouped["document"]


async def test_show_of_something_never_ingested_is_none(read_path: ReadPath) -> None:
    assert await read_path.show("https://docs.example.org/never-seen") is None


# -------------------------------------------------------- the index itself


async def test_the_text_index_holds_exactly_a_documents_current_chunks(
    settings: Settings, read_path: ReadPath
) -> None:
    index = ChunkTexts(read_path.metadata)
    document_id = f"doc-{uuid.uuid4().hex}"
    await index.replace([ChunkTextRows(document_id, ["one", "two", "three"], "en")])
    await index.replace([ChunkTextRows(document_id, ["only one now"], "en")])
    assert await index.count_for(document_id) == 1
    await index.replace([ChunkTextRows(document_id, [], "en")])
    assert await index.count_for(document_id) == 0


async def test_every_language_dictionary_named_exists_in_postgresql(read_path: ReadPath) -> None:
    from docpipe.storage import text_search

    async with read_path.metadata.connection() as conn:
        cursor = await conn.execute("SELECT cfgname FROM pg_ts_config")
        installed = {row[0] for row in await cursor.fetchall()}
    named = {text_search_config(code) for code in text_search._CONFIGS}
    assert named <= installed, named - installed


# ------------------------------------------------------- CLI and HTTP API


def docpipe(devstack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # Wide enough that the table never folds a title or an id.
    env = {**os.environ, **devstack.env, "VECTOR_COLLECTION": COLLECTION, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "docpipe", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_the_cli_searches_and_shows_as_table_or_json(read_path: ReadPath, devstack) -> None:
    doc = BY_NAME["borrow.md"]
    as_json = await asyncio.to_thread(
        docpipe, devstack, "search", "E0502 borrowed", "--tag", TAG, "--mode", "text", "-o", "json"
    )
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["mode"] == "text" and answer["results"][0]["document_id"] == doc.document_id
    as_table = await asyncio.to_thread(
        docpipe, devstack, "search", "E0502 borrowed", "--tag", TAG, "--mode", "text"
    )
    assert as_table.returncode == 0, as_table.stderr
    assert doc.title in as_table.stdout and doc.document_id in as_table.stdout

    shown = await asyncio.to_thread(docpipe, devstack, "show", doc.source, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["document_id"] == doc.document_id and record["status"] == "succeeded"
    missing = await asyncio.to_thread(docpipe, devstack, "show", "doc-nothing-like-it")
    assert missing.returncode == 1 and "no document" in missing.stderr


@pytest.fixture(scope="module")
def api(read_path: ReadPath, devstack) -> Iterator[str]:
    with docpipe_server({**devstack.env, "VECTOR_COLLECTION": COLLECTION}, "serve") as url:
        yield url


def test_the_api_searches_with_the_same_filters(api: str) -> None:
    doc = BY_NAME["volcanic.html"]
    for mode in ("text", "hybrid"):
        answer = httpx.get(
            f"{api}/search",
            params={"q": "vines in volcanic ash", "tag": TAG, "mode": mode, "k": 2},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["mode"] == mode and len(body["results"]) <= 2
        assert body["results"][0]["document_id"] == doc.document_id
        assert body["results"][0]["title"] == doc.title


def test_the_api_looks_documents_up_by_id_and_source(api: str) -> None:
    doc = BY_NAME["lighthouse.html"]
    by_id = httpx.get(f"{api}/documents/{doc.document_id}", timeout=10)
    assert by_id.status_code == 200 and by_id.json()["title"] == doc.title
    by_source = httpx.get(f"{api}/documents", params={"source": doc.source}, timeout=10)
    assert by_source.status_code == 200 and by_source.json()["document_id"] == doc.document_id
    assert httpx.get(f"{api}/documents/doc-none", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"q": "x", "k": 0}, "k"),
        ({"q": "x", "k": 101}, "k"),
        ({"q": "x", "mode": "fuzzy"}, "mode"),
        ({"q": "x", "language": "xx1"}, "ISO 639"),
        ({"q": "x", "type": "html"}, "MIME type"),
        ({"k": 3}, "q"),
    ],
)
def test_the_api_answers_bad_parameters_with_422_and_a_reason(
    api: str, params: dict, says: str
) -> None:
    answer = httpx.get(f"{api}/search", params=params, timeout=10)
    assert answer.status_code == 422
    assert says in answer.text


def test_the_api_publishes_its_openapi_schema(api: str) -> None:
    schema = httpx.get(f"{api}/openapi.json", timeout=10).json()
    assert {"/search", "/documents/{document_id}", "/documents", "/healthz"} <= set(schema["paths"])
    parameters = {p["name"]: p for p in schema["paths"]["/search"]["get"]["parameters"]}
    assert parameters["k"]["schema"]["maximum"] == 100


def test_the_cli_can_search_and_show_through_the_api(api: str, devstack) -> None:
    doc = BY_NAME["volcanic.html"]
    # No store settings at all: everything goes through `docpipe serve`.
    env = {"METADATA_DB_PORT": "1", "VECTOR_DB_URL": "http://127.0.0.1:1", "COLUMNS": "250"}
    found = subprocess.run(
        [sys.executable, "-m", "docpipe", "search", "vines in volcanic ash", "--tag", TAG,
         "--api", api, "-o", "json"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["document_id"] == doc.document_id
    shown = subprocess.run(
        [sys.executable, "-m", "docpipe", "show", doc.source, "-o", "json"],
        env={**os.environ, **env, "DOCPIPE_API_URL": api},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["title"] == doc.title
    bad = subprocess.run(
        [sys.executable, "-m", "docpipe", "search", "x", "--language", "xx1", "--api", api],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "language" in bad.stderr
