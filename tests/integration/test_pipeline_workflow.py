"""The per-batch workflow's orchestration, against a real Temporal dev server.

Activities here are stand-ins registered under the real activity names: these
tests are about what the workflow does with their answers (failure isolation,
deadlines, recording), not about the steps themselves, which have their own
tests and run for real in the end-to-end test.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from docpipe.models import (
    DocumentFailure,
    DocumentOutcome,
    DocumentRef,
    EmbeddedDocument,
    EmbeddingJob,
    EmbedResult,
    FetchedDocument,
    FetchResult,
    MetadataAnswer,
    MetadataQuery,
    PipelineInput,
    PipelineOptions,
    PipelineResult,
    PreparedDocument,
    PrepareResult,
    Stage,
    Status,
    StepTimeouts,
    StoreVectorsResult,
    TaskQueues,
    TextJob,
    VectorJob,
    WebhookRequest,
)
from docpipe.workflows import DocumentPipelineWorkflow, steps

pytestmark = pytest.mark.integration


class FakeSteps:
    """Per-document behaviour is chosen by the source name: 'bad-*' fail their step."""

    def __init__(self) -> None:
        self.recorded: list[DocumentOutcome] = []
        self.embed_calls = 0
        self.embed_raises: Exception | None = None
        self.embed_delay_s = 0.0

    @activity.defn(name=steps.DOWNLOAD_DOCUMENTS)
    async def download(self, refs: list[DocumentRef]) -> FetchResult:
        result = FetchResult()
        for ref in refs:
            if ref.source.startswith("bad-download"):
                result.failed.append(DocumentFailure(ref.document_id, Stage.DOWNLOAD, "HTTP 404"))
            else:
                result.succeeded.append(
                    FetchedDocument(
                        ref.document_id, f"raw/{ref.document_id}", 10, "abc", "text/plain"
                    )
                )
        return result

    @activity.defn(name=steps.PREPARE_DOCUMENTS)
    async def prepare(self, jobs: list[TextJob]) -> PrepareResult:
        result = PrepareResult()
        for job in jobs:
            if job.source.startswith("bad-text"):
                result.failed.append(
                    DocumentFailure(job.document_id, Stage.VALIDATE, "document is empty")
                )
            else:
                result.succeeded.append(
                    PreparedDocument(
                        job.document_id,
                        "t",
                        f"chunks/{job.document_id}",
                        "c",
                        "Title",
                        "en",
                        0.99,
                        100,
                        20,
                        25,
                        2,
                        50,
                        {"word": 3},
                    )
                )
        return result

    @activity.defn(name=steps.GENERATE_EMBEDDINGS)
    async def embed(self, jobs: list[EmbeddingJob]) -> EmbedResult:
        self.embed_calls += 1
        if self.embed_delay_s:
            await asyncio.sleep(self.embed_delay_s)
        if self.embed_raises:
            raise self.embed_raises
        return EmbedResult(
            succeeded=[
                EmbeddedDocument(
                    j.document_id, f"emb/{j.document_id}", j.chunks_key, j.chunk_count, 384, "m"
                )
                for j in jobs
            ]
        )

    @activity.defn(name=steps.STORE_VECTORS)
    async def vectors(self, jobs: list[VectorJob]) -> StoreVectorsResult:
        return StoreVectorsResult(stored=[j.document_id for j in jobs])

    @activity.defn(name=steps.QUERY_METADATA)
    async def query(self, query: MetadataQuery) -> MetadataAnswer:
        return MetadataAnswer(
            {i: "doc-stored-earlier" for i in query.content_sha256 if i == "doc-0"}
        )

    @activity.defn(name=steps.STORE_METADATA)
    async def metadata(self, outcomes: list[DocumentOutcome]) -> None:
        self.recorded.extend(outcomes)

    @activity.defn(name=steps.CALL_EXTERNAL_API)
    async def webhook(self, request: WebhookRequest) -> None:
        self.posted = request.url

    def all(self) -> list:
        return [
            self.download,
            self.prepare,
            self.embed,
            self.vectors,
            self.metadata,
            self.query,
            self.webhook,
        ]


@pytest.fixture
async def client(devstack) -> Client:
    return await Client.connect(devstack.env["TEMPORAL_HOST"])


async def run_batch(
    client: Client,
    fakes: FakeSteps,
    sources: list[str],
    queue: str | None = None,
    **option_overrides,
) -> PipelineResult:
    queue = queue or f"test-{uuid.uuid4().hex[:8]}"
    options = PipelineOptions(
        queues=TaskQueues(cpu=queue, gpu=queue, io=queue, workflow=queue),
        timeouts=StepTimeouts(heartbeat=30, metadata_grace=10),
        **option_overrides,
    )
    docs = [DocumentRef(f"doc-{i}", s, i + 2) for i, s in enumerate(sources)]
    docs += [DocumentRef("row-bad", "", 99, invalid_reason="row has no url")]
    async with Worker(
        client, task_queue=queue, workflows=[DocumentPipelineWorkflow], activities=fakes.all()
    ):
        return await client.execute_workflow(
            DocumentPipelineWorkflow.run,
            PipelineInput(run_id="r1", documents=docs, options=options),
            id=f"wf-{queue}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=60),
        )


def by_source(result: PipelineResult) -> dict[str, DocumentOutcome]:
    return {o.source: o for o in result.outcomes}


async def test_each_bad_document_fails_alone_with_its_stage_and_the_batch_goes_on(client):
    fakes = FakeSteps()
    result = await run_batch(client, fakes, ["good-1", "bad-download", "bad-text", "good-2"])
    outcomes = by_source(result)
    assert outcomes["good-1"].status == Status.SUCCEEDED
    assert outcomes["good-2"].status == Status.SUCCEEDED
    assert outcomes["good-1"].chunk_count == 2 and outcomes["good-1"].embeddings_key
    assert (outcomes["bad-download"].failure_stage, outcomes["bad-download"].failure_reason) == (
        Stage.DOWNLOAD,
        "HTTP 404",
    )
    assert outcomes["bad-text"].failure_stage == Stage.VALIDATE
    assert outcomes[""].failure_stage == Stage.CSV
    assert outcomes[""].failure_reason == "row has no url"


async def test_every_document_is_recorded_once_including_failures(client):
    fakes = FakeSteps()
    result = await run_batch(client, fakes, ["good-1", "bad-download"])
    assert sorted(o.document_id for o in fakes.recorded) == sorted(
        o.document_id for o in result.outcomes
    )
    assert len(fakes.recorded) == 3


async def test_a_step_that_gives_up_fails_its_documents_with_the_reason_and_still_records(client):
    fakes = FakeSteps()
    fakes.embed_raises = ApplicationError("model weights are corrupt", non_retryable=True)
    result = await run_batch(client, fakes, ["good-1", "good-2"])
    outcomes = by_source(result)
    assert outcomes["good-1"].status == Status.FAILED
    assert outcomes["good-1"].failure_stage == Stage.EMBED
    assert "model weights are corrupt" in outcomes["good-1"].failure_reason
    assert outcomes["good-1"].chunk_count == 2, "what was done before the failure is kept"
    assert len(fakes.recorded) == 3


async def test_documents_past_the_deadline_fail_with_stage_timeout_and_are_recorded(client):
    fakes = FakeSteps()
    fakes.embed_delay_s = 5
    result = await run_batch(client, fakes, ["good-1"], deadline_seconds=2)
    outcome = by_source(result)["good-1"]
    assert outcome.status == Status.FAILED
    assert outcome.failure_stage == Stage.TIMEOUT
    assert {o.document_id for o in fakes.recorded} >= {"doc-0"}


async def test_one_activity_call_per_step_for_the_whole_batch(client):
    fakes = FakeSteps()
    await run_batch(client, fakes, [f"good-{i}" for i in range(25)])
    assert fakes.embed_calls == 1


async def test_identical_content_is_marked_as_a_duplicate_but_still_processed(client):
    fakes = FakeSteps()  # every fake download has the same content hash
    result = await run_batch(client, fakes, ["good-0", "good-1", "good-2"])
    outcomes = by_source(result)
    assert outcomes["good-0"].duplicate_of == "doc-stored-earlier", "found in the metadata database"
    assert outcomes["good-1"].duplicate_of == "doc-stored-earlier", "the earliest copy"
    assert outcomes["good-2"].duplicate_of == "doc-stored-earlier"
    assert all(o.status == Status.SUCCEEDED for o in result.outcomes if o.source)


async def test_every_step_heartbeats_so_a_dead_worker_is_noticed_within_the_heartbeat_timeout(
    client,
):
    # Without a heartbeat timeout, a step whose worker died is retried only after its
    # whole start-to-close timeout (minutes); every step, the bookkeeping ones too.
    queue = f"test-{uuid.uuid4().hex[:8]}"
    await run_batch(client, FakeSteps(), ["good-0"], queue=queue, webhook_url="http://hook")
    scheduled = {}
    async for event in client.get_workflow_handle(f"wf-{queue}").fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[attributes.activity_type.name] = attributes.heartbeat_timeout.ToSeconds()
    assert set(scheduled) >= {
        steps.DOWNLOAD_DOCUMENTS,
        steps.QUERY_METADATA,
        steps.PREPARE_DOCUMENTS,
        steps.GENERATE_EMBEDDINGS,
        steps.STORE_VECTORS,
        steps.STORE_METADATA,
        steps.CALL_EXTERNAL_API,
    }
    assert set(scheduled.values()) == {30}, scheduled
