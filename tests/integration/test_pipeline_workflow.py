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

from docpipe import steps
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
    OcrJob,
    OcrResult,
    OcrText,
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
from docpipe.workflows import DocumentPipelineWorkflow

pytestmark = pytest.mark.integration


class FakeSteps:
    """Per-document behaviour is chosen by the source name: 'bad-*' fail their step;
    'image-*' need OCR, where 'image-blank' holds no text and 'image-noise' only
    a stray symbol (the OCR text then fails validation)."""

    def __init__(self) -> None:
        self.recorded: list[DocumentOutcome] = []
        self.embed_calls = 0
        self.embed_raises: Exception | None = None
        self.embed_delay_s = 0.0
        self.embed_first_attempt_hangs_s = 0.0
        self.embedded_documents: list[str] = []
        self.stored_vectors: list[VectorJob] = []

    @activity.defn(name=steps.DOWNLOAD_DOCUMENT)
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

    @activity.defn(name=steps.PREPARE_TEXT)
    async def prepare(self, jobs: list[TextJob]) -> PrepareResult:
        result = PrepareResult()
        for job in jobs:
            image = job.source.startswith("image-")
            if image and not job.raw_key.startswith("ocr/"):
                result.needs_ocr.append(OcrJob(job.document_id, [job.raw_key], "image/png", True))
            elif job.source.startswith("bad-text") or job.source == "image-noise":
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

    @activity.defn(name=steps.PERFORM_OCR)
    async def ocr(self, jobs: list[OcrJob]) -> OcrResult:
        info = {"width": 64, "height": 64, "format": "PNG", "phash": "00ff00ff00ff00ff"}
        return OcrResult(
            succeeded=[
                OcrText(
                    j.document_id,
                    f"ocr/{j.document_id}",
                    1,
                    0.0,
                    dict(info),
                    chars=0 if j.document_id.endswith("blank") else 1,
                )
                for j in jobs
            ]
        )

    @activity.defn(name=steps.GENERATE_EMBEDDINGS)
    async def embed(self, jobs: list[EmbeddingJob]) -> EmbedResult:
        self.embed_calls += 1
        self.embedded_documents.extend(j.document_id for j in jobs)
        if self.embed_first_attempt_hangs_s and activity.info().attempt == 1:
            await asyncio.sleep(self.embed_first_attempt_hangs_s)  # stuck, not busy
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

    @activity.defn(name=steps.STORE_VECTOR_EMBEDDINGS)
    async def vectors(self, jobs: list[VectorJob]) -> StoreVectorsResult:
        self.stored_vectors.extend(jobs)
        return StoreVectorsResult(stored=[j.document_id for j in jobs])

    @activity.defn(name=steps.QUERY_METADATA_DATABASE)
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
            self.ocr,
            self.embed,
            self.vectors,
            self.metadata,
            self.query,
            self.webhook,
        ]


@pytest.fixture
async def client(devstack) -> Client:
    return await Client.connect(devstack.env["TEMPORAL_HOST"])


def one_queue_options(queue: str, **overrides) -> PipelineOptions:
    """Every step on ``queue`` (one worker runs the fakes), heartbeats every 30 s."""
    overrides.setdefault("timeouts", StepTimeouts(heartbeat=30, metadata_grace=10))
    return PipelineOptions(
        queues=TaskQueues(cpu=queue, gpu=queue, io=queue, workflow=queue), **overrides
    )


async def run_batch(
    client: Client,
    fakes: FakeSteps,
    sources: list[str],
    queue: str | None = None,
    **option_overrides,
) -> PipelineResult:
    queue = queue or f"test-{uuid.uuid4().hex[:8]}"
    options = one_queue_options(queue, **option_overrides)
    docs = [
        DocumentRef(s if s.startswith("image-") else f"doc-{i}", s, i + 2)
        for i, s in enumerate(sources)
    ]
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
        steps.DOWNLOAD_DOCUMENT,
        steps.QUERY_METADATA_DATABASE,
        steps.PREPARE_TEXT,
        steps.GENERATE_EMBEDDINGS,
        steps.STORE_VECTOR_EMBEDDINGS,
        steps.STORE_METADATA,
        steps.CALL_EXTERNAL_API,
    }
    assert set(scheduled.values()) == {30}, scheduled


async def test_an_image_without_text_succeeds_with_its_image_analysis_and_no_chunks(client):
    fakes = FakeSteps()
    result = await run_batch(client, fakes, ["image-blank", "image-noise", "good-1"])
    outcomes = by_source(result)
    for name in ("image-blank", "image-noise"):
        image = outcomes[name]
        assert image.status == Status.SUCCEEDED, image.failure_reason
        assert image.has_text is False
        assert image.chunk_count == 0
        assert image.image_info and image.image_info["phash"] == "00ff00ff00ff00ff"
        assert image.ocr_pages == 1
    assert outcomes["good-1"].has_text is True
    assert set(fakes.embedded_documents) == {"doc-2"}, "nothing to embed for an image without text"
    cleared = {j.document_id: j for j in fakes.stored_vectors if j.chunk_count == 0}
    assert set(cleared) == {"image-blank", "image-noise"}, "stale chunks of an earlier version go"
    assert all(not j.embeddings_key for j in cleared.values())


async def test_a_document_that_fails_still_has_no_has_text_verdict(client):
    result = await run_batch(client, FakeSteps(), ["bad-text"])
    assert by_source(result)["bad-text"].has_text is None


async def test_no_document_fails_for_waiting_in_a_queue_far_longer_than_its_step_budget(client):
    # One GPU slot, each embedding call busy for 1 s, a 2.5 s budget per attempt, and
    # eight batches at once: the last waits ~7 s in the queue, several budgets' worth.
    queue = f"test-{uuid.uuid4().hex[:8]}"
    gpu_queue = f"{queue}-gpu"
    fakes = FakeSteps()
    fakes.embed_delay_s = 1.0
    options = PipelineOptions(
        queues=TaskQueues(cpu=queue, gpu=gpu_queue, io=queue, workflow=queue),
        timeouts=StepTimeouts(gpu_start_to_close=2.5, per_chunk=0, heartbeat=30),
    )
    batches = [
        [DocumentRef(f"b{b}-d{d}", f"good-{b}-{d}", d + 2) for d in range(3)] for b in range(8)
    ]
    others = [f for f in fakes.all() if f is not fakes.embed]
    async with (
        Worker(client, task_queue=queue, workflows=[DocumentPipelineWorkflow], activities=others),
        Worker(client, task_queue=gpu_queue, activities=[fakes.embed], max_concurrent_activities=1),
    ):
        results = await asyncio.gather(
            *(
                client.execute_workflow(
                    DocumentPipelineWorkflow.run,
                    PipelineInput(run_id="busy", documents=docs, options=options),
                    id=f"wf-{queue}-{i}",
                    task_queue=queue,
                )
                for i, docs in enumerate(batches)
            )
        )
    outcomes = [o for r in results for o in r.outcomes]
    assert len(outcomes) == 24
    assert all(o.status == Status.SUCCEEDED for o in outcomes), [
        o.failure_reason for o in outcomes if o.failure_reason
    ]
    assert fakes.embed_calls == 8, "no attempt timed out while it waited"


async def test_a_stuck_attempt_is_caught_by_its_budget_and_retried(client):
    fakes = FakeSteps()
    fakes.embed_first_attempt_hangs_s = 30
    result = await run_batch(
        client, fakes, ["good-1"], timeouts=StepTimeouts(gpu_start_to_close=1, per_chunk=0)
    )
    assert by_source(result)["good-1"].status == Status.SUCCEEDED
    assert fakes.embed_calls == 2, "the hung first attempt was abandoned after its budget"


async def test_the_starter_never_runs_more_batches_at_once_than_admission_allows(client, settings):
    from docpipe.client.admission import AdmissionPolicy
    from docpipe.client.starter import run_documents

    queue = f"test-{uuid.uuid4().hex[:8]}"
    local = settings.model_copy(
        update={
            "cpu_task_queue": queue,
            "gpu_task_queue": queue,
            "io_task_queue": queue,
            "workflow_task_queue": queue,
        }
    )
    fakes = FakeSteps()
    fakes.embed_delay_s = 0.3
    documents = [DocumentRef(f"adm-{i}", f"good-{i}", i + 2) for i in range(40)]
    running: list[int] = []
    stop = asyncio.Event()

    async def watch(run_id: str) -> None:
        while not stop.is_set():
            count = await client.count_workflows(
                f'WorkflowId STARTS_WITH "{run_id}-batch-" AND ExecutionStatus = "Running"'
            )
            running.append(count.count)
            await asyncio.sleep(0.1)

    async with Worker(
        client, task_queue=queue, workflows=[DocumentPipelineWorkflow], activities=fakes.all()
    ):
        watcher = asyncio.create_task(watch("admission"))
        summary = await run_documents(
            client,
            local,
            documents,
            batch_size=2,
            run_id="admission",
            admission=AdmissionPolicy(max_in_flight=3, initial=2, ramp=1),
        )
        stop.set()
        await watcher
    assert summary.succeeded_count == 40 and summary.failed_count == 0
    assert fakes.embed_calls == 20
    assert running and max(running) <= 3, running
