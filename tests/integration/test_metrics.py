"""The metrics modules: what each records, and that absent hardware means absent series.

Most tests here need no server (collectors read a process tree, a fake NVML,
an executor); the object store and PostgreSQL pool tests run against the
devstack's moto S3 and PostgreSQL. test_dashboards.py checks the same metrics
end to end, scraped from running workers by a real Prometheus.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from docpipe.config import Settings
from docpipe.errors import DocumentError, TransientError
from docpipe.metrics import cpu, gpu, io, pipeline, set_worker_kind, worker_kind
from docpipe.metrics.process import ProcessTreeCollector, available_cores
from docpipe.models import DocumentOutcome, Stage, Status
from docpipe.storage.metadata import open_metadata_store
from docpipe.storage.objects import ObjectNotFound, open_object_store


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


# ------------------------------------------------------------------- process


BURN_THEN_SLEEP = (
    "import time\nend = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\ntime.sleep(60)"
)
# A parent of its own, so the test sees only the child it made (pytest's other
# children, the devstack's servers, would blur the numbers).
PARENT = (
    "import subprocess, sys, time\n"
    f"child = subprocess.Popen([sys.executable, '-c', {BURN_THEN_SLEEP!r}])\n"
    "print(child.pid, flush=True)\ntime.sleep(60)"
)


def test_cpu_time_and_memory_of_children_are_counted_and_survive_their_exit() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        collector = ProcessTreeCollector(parent.pid)

        def readings() -> dict[tuple[str, str | None], float]:
            return {
                (s.name, s.labels.get("process")): s.value
                for family in collector.collect()
                for s in family.samples
            }

        deadline = time.monotonic() + 20
        while (values := readings())[("docpipe_process_cpu_seconds_total", "children")] < 0.25:
            assert time.monotonic() < deadline, values
            time.sleep(0.1)
        assert values[("docpipe_process_resident_memory_bytes", "children")] > 0
        assert values[("docpipe_process_resident_memory_bytes", "main")] > 0
        burned = values[("docpipe_process_cpu_seconds_total", "children")]
        assert burned < 5, "only the child's own CPU time"

        os.kill(child_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (after := readings())[("docpipe_process_resident_memory_bytes", "children")] > 0:
            assert time.monotonic() < deadline, after
            time.sleep(0.1)
        assert after[("docpipe_process_cpu_seconds_total", "children")] >= burned, "never goes down"
        assert after[("docpipe_process_cpu_cores", None)] == available_cores()
    finally:
        parent.kill()
        parent.wait()


def test_available_cores_honours_a_cgroup_cpu_limit(tmp_path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("50000 100000\n")
    assert available_cores(cpu_max) == 0.5
    cpu_max.write_text("max 100000\n")
    assert available_cores(cpu_max) >= 1


def test_the_worker_label_is_the_kind_the_process_started_as() -> None:
    previous = worker_kind()
    try:
        set_worker_kind("io")
        collector = ProcessTreeCollector()
        assert {s.labels["worker"] for f in collector.collect() for s in f.samples} == {"io"}
    finally:
        set_worker_kind(previous)


# ---------------------------------------------------------------------- cpu


def test_the_pool_reports_size_busy_and_queued() -> None:
    release = threading.Event()
    pool = cpu.MeteredPool(ThreadPoolExecutor(2), size=2)
    collector = cpu.PoolCollector()
    collector.pools.append(pool)

    def gauges() -> dict[str, float]:
        return {f.name: f.samples[0].value for f in collector.collect()}

    before = sample("docpipe_cpu_pool_task_duration_seconds_count", function="wait")
    futures = [pool.submit(release.wait) for _ in range(5)]
    assert gauges() == {
        "docpipe_cpu_pool_processes": 2,
        "docpipe_cpu_pool_busy_processes": 2,
        "docpipe_cpu_pool_queued_tasks": 3,
    }
    release.set()
    for future in futures:
        future.result(5)
    pool.shutdown()
    assert gauges()["docpipe_cpu_pool_busy_processes"] == 0
    assert gauges()["docpipe_cpu_pool_queued_tasks"] == 0
    assert sample("docpipe_cpu_pool_task_duration_seconds_count", function="wait") == before + 5


async def test_the_pool_works_behind_run_in_executor() -> None:
    pool = cpu.MeteredPool(ThreadPoolExecutor(1), size=1)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(pool, sum, [1, 2, 3]) == 6
    assert pool.pending == 0
    pool.shutdown()


# ---------------------------------------------------------------------- gpu


class FakeNvml:
    """Just enough of pynvml: one GPU, or NVML missing."""

    class NVMLError(Exception):
        pass

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: int = 1, broken: bool = False) -> None:
        self.devices, self.broken = devices, broken

    def nvmlInit(self) -> None:
        if self.broken:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return self.devices

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=40 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        raise self.NVMLError("Not Supported")  # a reading may fail alone

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=87, memory=30)


def test_without_nvml_or_a_gpu_there_are_no_gpu_series_at_all() -> None:
    for nvml in (FakeNvml(broken=True), FakeNvml(devices=0)):
        registry = CollectorRegistry()
        assert gpu.register_nvml_collector(registry, nvml) is None
        assert b"docpipe_gpu" not in generate_latest(registry)


def test_gpu_devices_are_read_at_scrape_time() -> None:
    registry = CollectorRegistry()
    assert gpu.register_nvml_collector(registry, FakeNvml()) is not None
    found = samples(registry)
    device = (("gpu", "0"), ("name", "NVIDIA H100 80GB HBM3"))
    assert found[("docpipe_gpu_memory_used_bytes", device)] == 40 * 2**30
    assert found[("docpipe_gpu_memory_total_bytes", device)] == 80 * 2**30
    assert found[("docpipe_gpu_utilization_ratio", device)] == 0.87
    assert ("docpipe_gpu_temperature_celsius", device) not in found, "absent, not 0"


def test_each_micro_batch_is_recorded_with_its_fill_and_wait() -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    on_batch = gpu.batch_observer(model, max_batch_items=64)
    on_batch(16, 3, 0.004)
    on_batch(64, 9, 0.020)
    assert sample("docpipe_gpu_batch_max_items", model=model) == 64
    assert sample("docpipe_gpu_batch_size_items_sum", model=model) == 80
    assert sample("docpipe_gpu_batch_fill_ratio_sum", model=model) == 0.25 + 1.0
    assert sample("docpipe_gpu_batch_queue_wait_seconds_count", model=model) == 2
    assert sample("docpipe_gpu_batch_queue_wait_seconds_bucket", model=model, le="0.005") == 1


def test_embedding_lookups_count_hits_misses_and_tokens() -> None:
    model = f"m-{uuid.uuid4().hex[:6]}"
    hits = sample("docpipe_gpu_embedding_cache_lookups_total", result="hit")
    gpu.record_embedding_lookups(model, hits=3, misses=2, miss_tokens=250)
    assert sample("docpipe_gpu_embedding_cache_lookups_total", result="hit") == hits + 3
    assert sample("docpipe_gpu_inference_tokens_total", task="embed", model=model) == 250


# ----------------------------------------------------------------------- io


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ObjectNotFound("k"), "not_found"),
        (TimeoutError(), "timeout"),
        (httpx.ConnectError("refused"), "connection"),
        (httpx.ReadTimeout("slow"), "timeout"),
        (DocumentError(Stage.DOWNLOAD, "HTTP 404"), "rejected"),
        (TransientError("HTTP 503"), "transient"),
        (asyncio.CancelledError(), "cancelled"),
        (ValueError("?"), "ValueError"),
    ],
)
def test_errors_have_a_small_vocabulary_of_kinds(error: BaseException, kind: str) -> None:
    assert io.error_kind(error) == kind


async def test_a_backend_request_is_timed_counted_in_flight_and_its_error_kept() -> None:
    backend = f"b{uuid.uuid4().hex[:6]}"
    worker = worker_kind()
    seen_in_flight = []

    @io.timed(backend, "get")
    async def get(fail: bool) -> str:
        seen_in_flight.append(
            sample("docpipe_io_requests_in_flight", worker=worker, backend=backend)
        )
        if fail:
            raise ObjectNotFound("k")
        return "ok"

    assert await get(False) == "ok"
    with pytest.raises(ObjectNotFound):
        await get(True)
    assert seen_in_flight == [1, 1]
    labels = {"worker": worker, "backend": backend}
    assert sample("docpipe_io_requests_in_flight", **labels) == 0
    assert sample("docpipe_io_request_duration_seconds_count", **labels, operation="get") == 2
    assert sample("docpipe_io_errors_total", **labels, operation="get", kind="not_found") == 1


def test_postgres_pool_collector_sums_pools_and_survives_missing_counters() -> None:
    collector = io.PostgresPoolCollector()
    stats = {
        "pool_min": 1,
        "pool_max": 20,
        "pool_size": 3,
        "pool_available": 1,
        "requests_waiting": 2,
    }
    collector.pools.append(SimpleNamespace(get_stats=lambda: dict(stats)))
    collector.pools.append(SimpleNamespace(get_stats=lambda: dict(stats, requests_wait_ms=1500)))
    found = {s.name: s.value for f in collector.collect() for s in f.samples}
    assert found["docpipe_io_postgres_pool_size_connections"] == 6
    assert found["docpipe_io_postgres_pool_idle_connections"] == 2
    assert found["docpipe_io_postgres_pool_max_connections"] == 40
    assert found["docpipe_io_postgres_pool_waiting_requests"] == 4
    assert found["docpipe_io_postgres_pool_wait_seconds_total"] == 1.5
    assert found["docpipe_io_postgres_pool_requests_total"] == 0


@pytest.mark.integration
async def test_s3_requests_and_bytes_are_recorded(settings: Settings) -> None:
    worker = worker_kind()
    s3 = {"worker": worker, "backend": "s3"}
    out_before = sample("docpipe_io_bytes_total", **s3, direction="out")
    in_before = sample("docpipe_io_bytes_total", **s3, direction="in")
    missing_before = sample("docpipe_io_errors_total", **s3, operation="get", kind="not_found")
    async with open_object_store(settings) as store:
        await store.ensure_bucket()
        key = f"metrics/{uuid.uuid4().hex}"
        await store.put(key, b"x" * 1000)
        assert await store.get(key) == b"x" * 1000
        with pytest.raises(ObjectNotFound):
            await store.get(key + "-missing")
    assert sample("docpipe_io_bytes_total", **s3, direction="out") == out_before + 1000
    assert sample("docpipe_io_bytes_total", **s3, direction="in") == in_before + 1000
    assert (
        sample("docpipe_io_errors_total", **s3, operation="get", kind="not_found")
        == missing_before + 1
    )


@pytest.mark.integration
async def test_the_metadata_pool_is_reported_while_open(settings: Settings) -> None:
    async with open_metadata_store(settings) as metadata:
        await metadata.ping()
        open_text = generate_latest(REGISTRY).decode()
    closed_text = generate_latest(REGISTRY).decode()
    pool_max = settings.metadata_db_pool_max
    assert (
        f'docpipe_io_postgres_pool_max_connections{{worker="{worker_kind()}"}} {float(pool_max)}'
        in open_text
    )
    assert "docpipe_io_postgres_pool_size_connections" not in closed_text, (
        "a closed pool is dropped"
    )
    assert (
        sample(
            "docpipe_io_request_duration_seconds_count",
            worker=worker_kind(),
            backend="postgres",
            operation="ping",
        )
        >= 1
    )


# ------------------------------------------------------------------ pipeline


def outcome(status: Status, stage: Stage | None = None) -> DocumentOutcome:
    return DocumentOutcome(
        document_id=uuid.uuid4().hex,
        source="s",
        row_number=1,
        status=status,
        run_id="r",
        failure_stage=stage,
        failure_reason="why" if stage else None,
    )


def test_outcomes_are_counted_by_stage_and_timed_from_their_batch_start() -> None:
    done = sample("docpipe_pipeline_documents_completed_total")
    ocr = sample("docpipe_pipeline_documents_failed_total", stage="ocr")
    latency = sample("docpipe_pipeline_document_duration_seconds_count", status="succeeded")
    started = outcome(Status.SUCCEEDED)
    started.started_at = datetime.now(UTC) - timedelta(seconds=3)
    pipeline.record_outcomes(
        [started, outcome(Status.SUCCEEDED), outcome(Status.FAILED, Stage.OCR)]
    )
    assert sample("docpipe_pipeline_documents_completed_total") == done + 2
    assert sample("docpipe_pipeline_documents_failed_total", stage="ocr") == ocr + 1
    # Only an outcome that says when its batch started has a latency.
    assert (
        sample("docpipe_pipeline_document_duration_seconds_count", status="succeeded")
        == latency + 1
    )


def test_every_stage_has_a_failure_series_from_the_start() -> None:
    for stage in Stage:
        assert (
            REGISTRY.get_sample_value(
                "docpipe_pipeline_documents_failed_total", {"stage": stage.value}
            )
            is not None
        )
