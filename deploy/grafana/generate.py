"""Build docpipe's Grafana dashboards (the *.json files beside this script and their
twins in the chart's helm/docpipe/dashboards/, written in one run).

Long because it is declarative: every panel of every dashboard, query by query.

    python deploy/grafana/generate.py          # rewrite the JSON files
    python deploy/grafana/generate.py --check  # exit 1 if a file is out of date

The JSON files are what Grafana loads (provisioning, the chart's ConfigMaps);
this script is where they are edited, so every panel shares one layout, one
datasource variable and one label-filter style. tests/integration/
test_dashboards.py evaluates every query below against a real Prometheus.

Conventions: ``$datasource`` picks the Prometheus; ``$namespace`` filters by
the ``namespace`` label (a Kubernetes namespace added by the scrape config, or
the Temporal namespace on SDK metrics) and defaults to All (``.*``, which also
matches series without the label); rates use ``$__rate_interval``; Temporal
SDK histograms are in milliseconds, docpipe's in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHART_DASHBOARDS = HERE.parents[1] / "helm" / "docpipe" / "dashboards"
OUTPUT_DIRS = (HERE, CHART_DASHBOARDS)
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
SHARE: dict[str, Any] = {"unit": "percentunit", "min": 0, "max": 1}
"""Panel settings of a share between 0 and 1, shown in percent."""
WORKER_JOBS = 'job=~"docpipe(-(workflow|cpu|gpu|io))?|.+-(workflow|cpu|gpu|io)-metrics"'
"""Worker scrape jobs: docpipe-<kind> (deploy/prometheus/prometheus.yml), docpipe
(deploy/compose.yaml's docpipe_* job) or the operator's per-pool metrics Services
(<pipeline>-<kind>-metrics). A worker's SDK endpoint in a job of its own is left
out: the process is down when its docpipe endpoint is."""


@dataclass
class Target:
    expr: str
    legend: str = ""
    heatmap: bool = False


@dataclass
class Panel:
    title: str
    targets: list[Target]
    description: str
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | gauge | heatmap
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None


@dataclass
class Row:
    title: str
    panels: list[Panel] = field(default_factory=list)


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    rows: list[Row]
    variables: list[dict[str, Any]]


def t(expr: str, legend: str = "") -> Target:
    return Target(expr, legend)


def q(quantile: float, metric: str, by: str, selector: str) -> str:
    """A histogram quantile of ``metric``'s buckets, grouped by ``by`` (plus le)."""
    group = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({quantile}, sum by ({group}) "
        f"(rate({metric}_bucket{{{selector}}}[$__rate_interval])))"
    )


def rate(metric: str, selector: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{selector}}}[$__rate_interval]))"


# ----------------------------------------------------------------- variables


def datasource_var() -> dict[str, Any]:
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "includeAll": False,
        "multi": False,
        "options": [],
    }


def query_var(
    name: str,
    query: str,
    *,
    label: str | None = None,
    include_all: bool = True,
    default: str | None = None,
) -> dict[str, Any]:
    """A variable from label values; All is ``.*`` (it also matches an absent label)."""
    if default is None:
        current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        current = {"selected": True, "text": default, "value": default}
    return {
        "name": name,
        "label": label or name,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "current": current,
        "hide": 0,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "includeAll": include_all,
        "allValue": ".*" if include_all else None,
        "multi": include_all,
        "options": [],
    }


def namespace_var(metric: str) -> dict[str, Any]:
    return query_var("namespace", f"label_values({metric}, namespace)")


def queue_var(default: str) -> dict[str, Any]:
    return query_var(
        "queue",
        'label_values(temporal_num_pollers{poller_type="activity_task"}, task_queue)',
        label="task queue",
        include_all=False,
        default=default,
    )


# ---------------------------------------------------------- shared panels


def activity_duration(worker: str) -> Panel:
    sel = f'worker="{worker}", {NS}'
    return Panel(
        "Activity duration (p50, p95)",
        [
            t(q(0.5, "docpipe_activity_duration_seconds", "activity", sel), "p50 {{activity}}"),
            t(q(0.95, "docpipe_activity_duration_seconds", "activity", sel), "p95 {{activity}}"),
        ],
        "Wall time of one activity, i.e. one step for a whole batch of documents. "
        "Rising with a flat batch size means the worker (or a backend) got slower.",
        unit="s",
    )


def stat(title: str, expr: str, description: str, unit: str = "short") -> Panel:
    """A quarter-width single-number panel of the overview's first row."""
    return Panel(title, [t(expr)], description, unit=unit, kind="stat", width=6, height=4)


def memory(worker: str) -> Panel:
    return Panel(
        "Memory (RSS)",
        [
            t(
                f'sum by (instance, process) (docpipe_process_resident_memory_bytes{{worker="{worker}", {NS}}})',
                "{{instance}} {{process}}",
            )
        ],
        "Resident memory of the worker process (main) and of its child processes. "
        "Compare with the pod's memory limit: a steady climb is a leak, a cliff an OOM kill.",
        unit="bytes",
    )


def slots(queue_selector: str) -> Panel:
    sel = f'worker_type="ActivityWorker", task_queue=~"{queue_selector}", {NS}'
    return Panel(
        "Activity slots used / available",
        [
            t(f"sum by (task_queue) (temporal_worker_task_slots_used{{{sel}}})", "used"),
            t(f"sum by (task_queue) (temporal_worker_task_slots_available{{{sel}}})", "available"),
        ],
        "Temporal SDK task slots of this worker type. Used = the configured maximum while "
        "schedule-to-start grows: the workers are saturated, add replicas.",
    )


def schedule_to_start(queue_selector: str) -> Panel:
    sel = f'task_queue=~"{queue_selector}", {NS}'
    return Panel(
        "Activity schedule-to-start (p95)",
        [
            t(
                q(0.95, "temporal_activity_schedule_to_start_latency", "task_queue", sel),
                "{{task_queue}}",
            )
        ],
        "How long activity tasks waited in the queue before a worker picked them up "
        "(Temporal SDK, milliseconds). The first sign that this worker type needs more replicas.",
        unit="ms",
    )


# ---------------------------------------------------------------- dashboards


def pipeline_overview() -> Dashboard:
    done = f"docpipe_pipeline_documents_completed_total{{{NS}}}"
    failed = f"docpipe_pipeline_documents_failed_total{{{NS}}}"
    return Dashboard(
        "docpipe-pipeline",
        "docpipe / Pipeline overview",
        "Documents in and out of the pipeline, where they fail, how long they take, and "
        "whether the workers keep up.",
        [
            Row(
                "Outcomes",
                [
                    stat(
                        "Documents completed",
                        f"sum(increase({done}[$__range]))",
                        "Documents stored with every step done, in the selected time range.",
                    ),
                    stat(
                        "Documents failed",
                        f"sum(increase({failed}[$__range]))",
                        "Documents that failed at some stage, in the selected time range. "
                        "`docpipe failures` lists them with their reasons.",
                    ),
                    stat(
                        "Failure ratio",
                        f"sum(increase({failed}[$__range])) / clamp_min("
                        f"sum(increase({failed}[$__range])) + "
                        f"sum(increase({done}[$__range])), 1)",
                        "Failed / (failed + completed) in the selected range. Bad input fails "
                        "documents by design; a jump usually means a source or a backend broke.",
                        unit="percentunit",
                    ),
                    stat(
                        "Worker targets up",
                        f"sum(up{{{WORKER_JOBS}}})",
                        "Scrape targets of the workers that answer (each worker has two: "
                        "docpipe metrics and Temporal SDK metrics).",
                    ),
                    Panel(
                        "Documents per second",
                        [
                            t(f"sum(rate({done}[$__rate_interval]))", "completed"),
                            t(f"sum(rate({failed}[$__rate_interval]))", "failed"),
                        ],
                        "Pipeline throughput: documents whose outcome was stored, per second.",
                        unit="ops",
                    ),
                    Panel(
                        "Failures by stage",
                        [t(f"sum by (stage) (rate({failed}[$__rate_interval]))", "{{stage}}")],
                        "Where documents fail: download (bad URL, 404), extract/validate (bad or "
                        "empty files), ocr, embed, store, timeout (the batch deadline passed).",
                        unit="ops",
                    ),
                    Panel(
                        "End-to-end latency (p50, p95)",
                        [
                            t(
                                q(0.5, "docpipe_pipeline_document_duration_seconds", "", NS),
                                "p50",
                            ),
                            t(
                                q(0.95, "docpipe_pipeline_document_duration_seconds", "", NS),
                                "p95",
                            ),
                        ],
                        "From the start of a document's batch workflow to its outcome being "
                        "stored. Grows with batch size, backlog and the slowest step.",
                        unit="s",
                    ),
                    Panel(
                        "Documents per step",
                        [
                            t(
                                rate("docpipe_documents_total", NS, "activity, result"),
                                "{{activity}} {{result}}",
                            )
                        ],
                        "Per-document results of each batch step (needs_ocr: handed from the CPU "
                        "step to OCR on the GPU worker).",
                        unit="ops",
                    ),
                ],
            ),
            Row(
                "Workers",
                [
                    Panel(
                        "Step duration (p95)",
                        [
                            t(
                                q(
                                    0.95,
                                    "docpipe_activity_duration_seconds",
                                    "worker, activity",
                                    NS,
                                ),
                                "{{worker}} {{activity}}",
                            )
                        ],
                        "Wall time of each batch step. The slowest step sets the pipeline's pace.",
                        unit="s",
                    ),
                    Panel(
                        "Activities in flight",
                        [
                            t(
                                f"sum by (worker) (docpipe_activities_in_flight{{{NS}}})",
                                "{{worker}}",
                            )
                        ],
                        "Batch steps executing now, per worker type.",
                    ),
                    schedule_to_start(".*"),
                    Panel(
                        "Backlog per queue",
                        [
                            t(
                                f"max by (queue) (docpipe_operator_queue_backlog_tasks{{{NS}}})",
                                "{{queue}}",
                            )
                        ],
                        "Tasks waiting per task queue, as the autoscaler reads them from Temporal "
                        "(needs the operator; `docpipe status` shows the same without it).",
                    ),
                ],
            ),
        ],
        [datasource_var(), namespace_var("docpipe_activities_in_flight")],
    )


def cpu_worker() -> Dashboard:
    cpu = f'worker="cpu", {NS}'
    return Dashboard(
        "docpipe-cpu-worker",
        "docpipe / CPU worker",
        "Text extraction and processing: CPU and memory of the worker and its process pool, "
        "documents and bytes processed, pool saturation.",
        [
            Row(
                "Resources",
                [
                    Panel(
                        "CPU cores in use",
                        [
                            t(
                                f"sum by (process) (rate(docpipe_process_cpu_seconds_total{{{cpu}}}[$__rate_interval]))",
                                "{{process}}",
                            ),
                            t(f"sum(docpipe_process_cpu_cores{{{cpu}}})", "available"),
                        ],
                        "CPU time per second of the main process (Temporal, IO) and of the pool "
                        "processes (the text work). Children near 'available' = CPU-bound.",
                    ),
                    Panel(
                        "CPU utilisation",
                        [
                            t(
                                f"sum by (instance) (rate(docpipe_process_cpu_seconds_total{{{cpu}}}[$__rate_interval])) "
                                f"/ sum by (instance) (docpipe_process_cpu_cores{{{cpu}}})",
                                "{{instance}}",
                            )
                        ],
                        "Cores in use / cores the worker may use (affinity, cgroup CPU limit). "
                        "Sustained > 90 % with a queue in the pool: add replicas or cores.",
                        unit="percentunit",
                        min=0,
                    ),
                    memory("cpu"),
                    Panel(
                        "Input bytes per second",
                        [t(rate("docpipe_cpu_input_bytes_total", NS), "raw bytes")],
                        "Raw document bytes read for text processing.",
                        unit="Bps",
                    ),
                ],
            ),
            Row(
                "Documents",
                [
                    Panel(
                        "Documents per second",
                        [t(rate("docpipe_documents_total", cpu, "result"), "{{result}}")],
                        "Documents through prepare_text: succeeded, failed (bad input) or "
                        "needs_ocr (images and scanned PDFs sent to the GPU worker).",
                        unit="ops",
                    ),
                    activity_duration("cpu"),
                ],
            ),
            Row(
                "Process pool",
                [
                    Panel(
                        "Pool processes: size, busy, queued",
                        [
                            t(f"sum(docpipe_cpu_pool_{metric}{{{NS}}})", legend)
                            for metric, legend in (
                                ("processes", "size"),
                                ("busy_processes", "busy"),
                                ("queued_tasks", "queued"),
                            )
                        ],
                        "Queued > 0 for long = the pool is the bottleneck (WORKER_CPU_THREADS or "
                        "more replicas), not Temporal.",
                    ),
                    Panel(
                        "Pool busy ratio",
                        [
                            t(
                                f"sum(docpipe_cpu_pool_busy_processes{{{NS}}}) "
                                f"/ sum(docpipe_cpu_pool_processes{{{NS}}})"
                            )
                        ],
                        "Share of pool processes working now.",
                        kind="gauge",
                        **SHARE,
                    ),
                    Panel(
                        "Pool task duration (p95)",
                        [
                            t(
                                q(0.95, "docpipe_cpu_pool_task_duration_seconds", "function", NS),
                                "{{function}}",
                            )
                        ],
                        "From submitting one document to the pool to its result (queueing "
                        "included): prepare_text, render_pages (scanned PDFs).",
                        unit="s",
                    ),
                    slots("$queue"),
                    schedule_to_start("$queue"),
                ],
            ),
        ],
        [
            datasource_var(),
            namespace_var("docpipe_cpu_pool_processes"),
            queue_var("cpu-bound-queue"),
        ],
    )


def gpu_worker() -> Dashboard:
    return Dashboard(
        "docpipe-gpu-worker",
        "docpipe / GPU worker",
        "Model inference: GPU devices (NVML; no data on CPU-only nodes), throughput in items "
        "and tokens, micro-batching efficiency and queueing.",
        [
            Row(
                "Devices (NVML)",
                [
                    Panel(
                        "GPU memory used / total",
                        [
                            t(f"docpipe_gpu_memory_{which}_bytes{{{NS}}}", "GPU {{gpu}} " + which)
                            for which in ("used", "total")
                        ],
                        "Device memory per GPU. Models, activations of the current batch and "
                        "the CUDA caching allocator all count.",
                        unit="bytes",
                    ),
                    Panel(
                        "GPU memory used",
                        [
                            t(
                                f"docpipe_gpu_memory_used_bytes{{{NS}}} "
                                f"/ docpipe_gpu_memory_total_bytes{{{NS}}}",
                                "GPU {{gpu}}",
                            )
                        ],
                        "Near 100 %: out-of-memory splits batches in halves (slower); lower "
                        "EMBEDDING_MAX_BATCH_ITEMS or give the pod a larger GPU.",
                        kind="gauge",
                        **SHARE,
                    ),
                    Panel(
                        "GPU utilisation",
                        [t(f"docpipe_gpu_utilization_ratio{{{NS}}}", "GPU {{gpu}}")],
                        "Share of time a kernel ran. Low utilisation with a backlog: batches are "
                        "too small or the worker waits on IO.",
                        **SHARE,
                    ),
                    Panel(
                        "GPU temperature",
                        [t(f"docpipe_gpu_temperature_celsius{{{NS}}}", "GPU {{gpu}}")],
                        "Core temperature; GPUs throttle their clocks when hot.",
                        unit="celsius",
                    ),
                ],
            ),
            Row(
                "Inference",
                [
                    Panel(
                        "Items per second",
                        [
                            t(
                                rate("docpipe_gpu_inference_items_total", NS, "task, model"),
                                "{{task}} {{model}}",
                            )
                        ],
                        "Chunks embedded and pages read by OCR, per second.",
                        unit="ops",
                    ),
                    Panel(
                        "Tokens per second",
                        [
                            t(
                                rate("docpipe_gpu_inference_tokens_total", NS, "model"),
                                "{{model}}",
                            )
                        ],
                        "Tokens of the chunk texts sent to the embedding model.",
                        unit="short",
                    ),
                    Panel(
                        "Model call duration (p95)",
                        [
                            t(
                                q(0.95, "docpipe_gpu_inference_duration_seconds", "device", NS),
                                "{{device}}",
                            )
                        ],
                        "One micro-batch on one device. On CPU (no GPU) expect 10-100x longer.",
                        unit="s",
                    ),
                    Panel(
                        "Embedding cache lookups",
                        [
                            t(
                                rate("docpipe_gpu_embedding_cache_lookups_total", NS, "result"),
                                "{{result}}",
                            )
                        ],
                        "Chunk vectors found before the model (hit: stored or in memory) versus "
                        "embedded (miss). Re-runs of unchanged documents should be all hits.",
                        unit="ops",
                    ),
                ],
            ),
            Row(
                "Micro-batching",
                [
                    Panel(
                        "Batch size (p50, p95, mean)",
                        [
                            t(q(0.5, "docpipe_gpu_batch_size_items", "", NS), "p50"),
                            t(q(0.95, "docpipe_gpu_batch_size_items", "", NS), "p95"),
                            t(
                                f"sum(rate(docpipe_gpu_batch_size_items_sum{{{NS}}}[$__rate_interval])) "
                                f"/ sum(rate(docpipe_gpu_batch_size_items_count{{{NS}}}[$__rate_interval]))",
                                "mean",
                            ),
                        ],
                        "Items per model call. Larger batches use the GPU better.",
                    ),
                    Panel(
                        "Batch efficiency (filled / max)",
                        [
                            t(
                                f"sum(rate(docpipe_gpu_batch_fill_ratio_sum{{{NS}}}[$__rate_interval])) "
                                f"/ sum(rate(docpipe_gpu_batch_fill_ratio_count{{{NS}}}[$__rate_interval]))",
                                "mean fill",
                            ),
                        ],
                        "How full micro-batches are relative to EMBEDDING_MAX_BATCH_ITEMS. Low "
                        "under load: more concurrent activities per GPU or a longer "
                        "EMBEDDING_MAX_WAIT_MS would merge more requests.",
                        **SHARE,
                    ),
                    Panel(
                        "Batch queue wait (p95)",
                        [t(q(0.95, "docpipe_gpu_batch_queue_wait_seconds", "", NS), "p95")],
                        "How long the oldest request of a batch waited for its model call: "
                        "the batching window, plus waiting for a busy device.",
                        unit="s",
                    ),
                    Panel(
                        "Batch size distribution",
                        [
                            Target(
                                f"sum by (le) (increase(docpipe_gpu_batch_size_items_bucket{{{NS}}}[$__rate_interval]))",
                                "{{le}}",
                                heatmap=True,
                            )
                        ],
                        "Model calls per batch-size bucket over time.",
                        kind="heatmap",
                    ),
                ],
            ),
            Row(
                "Worker",
                [
                    activity_duration("gpu"),
                    memory("gpu"),
                    slots("$queue"),
                    schedule_to_start("$queue"),
                ],
            ),
        ],
        [
            datasource_var(),
            namespace_var("docpipe_gpu_inference_items_total"),
            queue_var("gpu-bound-queue"),
        ],
    )


def io_worker() -> Dashboard:
    io = f'worker="io", {NS}'
    return Dashboard(
        "docpipe-io-worker",
        "docpipe / IO worker",
        "Network and storage: requests in flight, latency, bytes and errors per backend "
        "(S3, PostgreSQL, Chroma, HTTP), and the PostgreSQL connection pool.",
        [
            Row(
                "Backends",
                [
                    Panel(
                        "Requests in flight",
                        [
                            t(
                                f"sum by (backend) (docpipe_io_requests_in_flight{{{io}}})",
                                "{{backend}}",
                            )
                        ],
                        "Requests open per backend: the connections in use of each shared client. "
                        "Flat at a pool's size = connection exhaustion.",
                    ),
                    Panel(
                        "Requests per second",
                        [
                            t(
                                rate(
                                    "docpipe_io_request_duration_seconds_count",
                                    io,
                                    "backend, operation",
                                ),
                                "{{backend}} {{operation}}",
                            )
                        ],
                        "Requests per backend and operation.",
                        unit="reqps",
                    ),
                    Panel(
                        "Latency (p95)",
                        [
                            t(
                                q(
                                    0.95,
                                    "docpipe_io_request_duration_seconds",
                                    "backend, operation",
                                    io,
                                ),
                                "{{backend}} {{operation}}",
                            )
                        ],
                        "Per request: an object, an upsert batch, a download.",
                        unit="s",
                    ),
                    Panel(
                        "Bytes per second",
                        [
                            t(
                                rate("docpipe_io_bytes_total", io, "backend, direction"),
                                "{{backend}} {{direction}}",
                            )
                        ],
                        "Payload bytes received (in) and sent (out) per backend.",
                        unit="Bps",
                    ),
                    Panel(
                        "Errors per second",
                        [
                            t(
                                rate("docpipe_io_errors_total", io, "backend, kind"),
                                "{{backend}} {{kind}}",
                            )
                        ],
                        "Failed requests by kind: timeout, connection, pool_timeout (PostgreSQL "
                        "pool exhausted), not_found (often a cache miss), rejected (bad input, "
                        "e.g. a 404), transient (retried).",
                        unit="reqps",
                    ),
                    Panel(
                        "Object store traffic by worker",
                        [
                            t(
                                rate(
                                    "docpipe_io_bytes_total",
                                    f'backend="s3", {NS}',
                                    "worker, direction",
                                ),
                                "{{worker}} {{direction}}",
                            )
                        ],
                        "S3 bytes of every worker type (the claim check moves all artifacts "
                        "through the object store).",
                        unit="Bps",
                    ),
                ],
            ),
            Row(
                "PostgreSQL pool",
                [
                    Panel(
                        "Pool connections",
                        [
                            t(f"sum(docpipe_io_postgres_pool_{metric}{{{io}}})", legend)
                            for metric, legend in (
                                ("size_connections", "open"),
                                ("idle_connections", "idle"),
                                ("max_connections", "max"),
                                ("waiting_requests", "waiting"),
                            )
                        ],
                        "open = max, idle = 0 and waiting > 0: the pool is exhausted; raise "
                        "METADATA_DB_POOL_MAX (within the server's max_connections).",
                    ),
                    Panel(
                        "Pool wait",
                        [
                            t(
                                rate("docpipe_io_postgres_pool_wait_seconds_total", io),
                                "seconds waited per second",
                            ),
                            t(
                                rate("docpipe_io_postgres_pool_requests_total", io),
                                "connections requested per second",
                            ),
                        ],
                        "Time requests spent waiting for a connection, per second of wall time.",
                    ),
                ],
            ),
            Row(
                "Worker",
                [
                    activity_duration("io"),
                    memory("io"),
                    slots("$queue"),
                    schedule_to_start("$queue"),
                ],
            ),
        ],
        [
            datasource_var(),
            namespace_var("docpipe_io_requests_in_flight"),
            queue_var("io-bound-queue"),
        ],
    )


def autoscaler() -> Dashboard:
    sel = 'namespace=~"$namespace", pipeline=~"$pipeline"'
    return Dashboard(
        "docpipe-autoscaler",
        "docpipe / Autoscaler",
        "What the operator sees and does per DocumentPipeline pool: queue backlog and its "
        "age, desired versus current replicas, scale events.",
        [
            Row(
                "Replicas",
                [
                    Panel(
                        "Replicas: desired, current, ready",
                        [
                            t(f"docpipe_operator_{which}_replicas{{{sel}}}", "{{pool}} " + which)
                            for which in ("desired", "current", "ready")
                        ],
                        "desired (the policy) above current for long: the pool is at maxReplicas "
                        "or scale-up is being stabilised; current above ready: pods not starting "
                        "(image pull, no GPU node, crash loop).",
                        width=24,
                    ),
                    Panel(
                        "Scale events",
                        [
                            t(
                                f"sum by (pool, direction, reason) (increase(docpipe_operator_scale_events_total{{{sel}}}[$__rate_interval]))",
                                "{{pool}} {{direction}} ({{reason}})",
                            )
                        ],
                        "Replica changes by the autoscaler. Frequent up/down pairs = flapping.",
                    ),
                ],
            ),
            Row(
                "Queues",
                [
                    Panel(
                        "Backlog per queue",
                        [
                            t(
                                f"docpipe_operator_queue_backlog_tasks{{{sel}}}",
                                "{{pool}} ({{queue}})",
                            )
                        ],
                        "Approximate tasks waiting (Temporal DescribeTaskQueue; refreshed by the "
                        "server about every 6 s).",
                    ),
                    Panel(
                        "Backlog age per queue",
                        [
                            t(
                                f"docpipe_operator_queue_backlog_age_seconds{{{sel}}}",
                                "{{pool}} ({{queue}})",
                            )
                        ],
                        "Age of the oldest waiting task: how far behind the pool is.",
                        unit="s",
                    ),
                    Panel(
                        "Temporal query latency (p95)",
                        [
                            t(
                                q(
                                    0.95,
                                    "docpipe_operator_temporal_query_duration_seconds",
                                    "pipeline",
                                    sel,
                                ),
                                "{{pipeline}}",
                            )
                        ],
                        "Time to read a pipeline's queue statistics from Temporal.",
                        unit="s",
                    ),
                    Panel(
                        "Temporal errors",
                        [
                            t(
                                f"sum by (pipeline) (increase(docpipe_operator_temporal_errors_total{{{sel}}}[$__rate_interval]))",
                                "{{pipeline}}",
                            )
                        ],
                        "Backlog readings that failed. While Temporal is unreachable the operator "
                        "holds the current replicas.",
                    ),
                ],
            ),
        ],
        [
            datasource_var(),
            namespace_var("docpipe_operator_desired_replicas"),
            query_var(
                "pipeline",
                'label_values(docpipe_operator_desired_replicas{namespace=~"$namespace"}, pipeline)',
            ),
        ],
    )


def temporal_sdk() -> Dashboard:
    ns = NS
    tq = f'task_queue=~"$task_queue", {NS}'
    return Dashboard(
        "docpipe-temporal-sdk",
        "docpipe / Temporal SDK",
        "The Temporal SDK's own metrics from every worker (Runtime Prometheus exporter; "
        "histograms in milliseconds): RPCs, workflow and activity tasks, slots, pollers, "
        "sticky cache.",
        [
            Row(
                "Requests",
                [
                    Panel(
                        "RPC requests per operation",
                        [t(rate("temporal_request", ns, "operation"), "{{operation}}")],
                        "Calls to the Temporal frontend.",
                        unit="reqps",
                    ),
                    Panel(
                        "RPC failures per operation",
                        [t(rate("temporal_request_failure", ns, "operation"), "{{operation}}")],
                        "Failed calls to the frontend (the server down, overloaded or refusing).",
                        unit="reqps",
                    ),
                    Panel(
                        "RPC latency (p95)",
                        [t(q(0.95, "temporal_request_latency", "operation", ns), "{{operation}}")],
                        "Frontend call latency.",
                        unit="ms",
                    ),
                    Panel(
                        "Long-poll latency (p95)",
                        [
                            t(
                                q(0.95, "temporal_long_request_latency", "operation", ns),
                                "{{operation}}",
                            )
                        ],
                        "Task polls: long when queues are empty (normal), short under load.",
                        unit="ms",
                    ),
                ],
            ),
            Row(
                "Workflows",
                [
                    Panel(
                        "Workflow completions",
                        [
                            t(
                                rate("temporal_workflow_completed", ns, "workflow_type"),
                                "{{workflow_type}}",
                            )
                        ],
                        "Batch workflows (and CSV ingests) completed per second.",
                        unit="ops",
                    ),
                    Panel(
                        "Workflow end-to-end latency (p95)",
                        [
                            t(
                                q(0.95, "temporal_workflow_endtoend_latency", "workflow_type", ns),
                                "{{workflow_type}}",
                            )
                        ],
                        "From workflow start to completion: one batch through every step.",
                        unit="ms",
                    ),
                    Panel(
                        "Workflow task schedule-to-start (p95)",
                        [
                            t(
                                q(
                                    0.95,
                                    "temporal_workflow_task_schedule_to_start_latency",
                                    "task_queue",
                                    tq,
                                ),
                                "{{task_queue}}",
                            )
                        ],
                        "Workflow tasks waiting for the workflow worker. High: the workflow "
                        "worker is overloaded (it should be near zero).",
                        unit="ms",
                    ),
                    Panel(
                        "Workflow task execution latency (p95)",
                        [
                            t(
                                q(
                                    0.95,
                                    "temporal_workflow_task_execution_latency",
                                    "workflow_type",
                                    ns,
                                ),
                                "{{workflow_type}}",
                            )
                        ],
                        "Time to run workflow code for one task (deterministic code only).",
                        unit="ms",
                    ),
                ],
            ),
            Row(
                "Activities",
                [
                    Panel(
                        "Activity throughput",
                        [
                            t(
                                rate("temporal_activity_execution_latency_count", tq, "task_queue"),
                                "{{task_queue}}",
                            )
                        ],
                        "Activity executions per second per queue.",
                        unit="ops",
                    ),
                    Panel(
                        "Activity execution latency (p95)",
                        [
                            t(
                                q(0.95, "temporal_activity_execution_latency", "activity_type", tq),
                                "{{activity_type}}",
                            )
                        ],
                        "Time an activity ran in the worker.",
                        unit="ms",
                    ),
                    Panel(
                        "Activity schedule-to-start (p95)",
                        [
                            t(
                                q(
                                    0.95,
                                    "temporal_activity_schedule_to_start_latency",
                                    "task_queue",
                                    tq,
                                ),
                                "{{task_queue}}",
                            )
                        ],
                        "Queueing before a worker picked the task up. The scaling signal.",
                        unit="ms",
                    ),
                    Panel(
                        "Activity failures",
                        [
                            t(
                                rate("temporal_activity_execution_failed", tq, "activity_type"),
                                "{{activity_type}}",
                            )
                        ],
                        "Activity attempts that raised (retried or final). Bad documents do not "
                        "count: they are per-document results, not failures.",
                        unit="ops",
                    ),
                ],
            ),
            Row(
                "Slots and pollers",
                [
                    Panel(
                        "Slots available",
                        [
                            t(
                                f"sum by (worker_type, task_queue) (temporal_worker_task_slots_available{{{tq}}})",
                                "{{task_queue}} {{worker_type}}",
                            )
                        ],
                        "Free task slots per worker type and queue; 0 = saturated.",
                    ),
                    Panel(
                        "Slots used",
                        [
                            t(
                                f"sum by (worker_type, task_queue) (temporal_worker_task_slots_used{{{tq}}})",
                                "{{task_queue}} {{worker_type}}",
                            )
                        ],
                        "Task slots in use per worker type and queue.",
                    ),
                    Panel(
                        "Pollers",
                        [
                            t(
                                f"sum by (poller_type, task_queue) (temporal_num_pollers{{{tq}}})",
                                "{{task_queue}} {{poller_type}}",
                            )
                        ],
                        "Open polls per queue. 0 on a queue with a backlog: no worker is running.",
                    ),
                    Panel(
                        "Sticky cache",
                        [
                            t(f"sum(temporal_sticky_cache_size{{{ns}}})", "cached workflows"),
                            t(rate("temporal_sticky_cache_hit", ns), "hits per second"),
                        ],
                        "Workflows kept in the workflow worker's cache (MAX_CONCURRENT_WORKFLOWS) "
                        "and cache hits; misses mean replaying history.",
                    ),
                ],
            ),
        ],
        [
            datasource_var(),
            namespace_var("temporal_num_pollers"),
            query_var(
                "task_queue", "label_values(temporal_num_pollers, task_queue)", label="task queue"
            ),
        ],
    )


DASHBOARDS = {
    "pipeline-overview.json": pipeline_overview,
    "cpu-worker.json": cpu_worker,
    "gpu-worker.json": gpu_worker,
    "io-worker.json": io_worker,
    "autoscaler.json": autoscaler,
    "temporal-sdk.json": temporal_sdk,
}


# -------------------------------------------------------------------- render


def _target(target: Target, ref: str, instant: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "datasource": DS,
        "editorMode": "code",
        "expr": target.expr,
        "legendFormat": target.legend or "__auto",
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if target.heatmap:
        out["format"] = "heatmap"
    return out


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    instant = panel.kind in ("stat", "gauge")
    defaults: dict[str, Any] = {"unit": panel.unit, "color": {"mode": "palette-classic"}}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    options: dict[str, Any]
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
        }
        options = {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif panel.kind in ("stat", "gauge"):
        defaults["color"] = {"mode": "thresholds"}
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None}]}
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto",
        }
        if panel.kind == "stat":
            options |= {"colorMode": "value", "graphMode": "none", "textMode": "auto"}
    else:  # heatmap
        defaults = {"unit": panel.unit}
        options = {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "yAxis": {"axisPlacement": "left"},
            "legend": {"show": True},
            "tooltip": {"mode": "single", "yHistogram": True},
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            _target(target, chr(ord("A") + i), instant) for i, target in enumerate(panel.targets)
        ],
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row in dashboard.rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id, y = next_id + 1, y + 1
        x, row_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["docpipe"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "docpipe dashboards",
                "type": "dashboards",
                "tags": ["docpipe"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": dashboard.variables},
        "panels": panels,
    }


def dump(dashboard: Dashboard) -> str:
    return json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        text = dump(build())
        for path in (folder / name for folder in OUTPUT_DIRS):
            if args.check:
                if not path.exists() or path.read_text(encoding="utf-8") != text:
                    stale.append(str(path.relative_to(HERE.parents[1])))
            else:
                path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date (run {Path(__file__).name}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
