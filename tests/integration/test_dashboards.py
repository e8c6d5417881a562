"""Every Grafana panel's query, evaluated by a real Prometheus scraping real workers.

Grafana itself cannot be installed here, so this is what "the dashboards work"
means: the four workers (and the operator, against an emulated Kubernetes API)
run two small rounds of documents of every kind against the devstack; Debian's
``prometheus`` scrapes their ``/metrics`` and Temporal SDK endpoints every
second with deploy/prometheus/prometheus.yml's jobs and loads
deploy/prometheus/alerts.yaml; then every target of every panel in
deploy/grafana/*.json goes through ``/api/v1/query`` with Grafana's variables
filled in, and must be valid PromQL that returns at least one finite value.

The panels allowed to come back empty are listed in ``MAY_BE_EMPTY`` with the
reason; GPU device panels are among them only on a machine without a GPU, and
there their series must be absent (not zeros).

``prometheus`` and ``promtool`` come from the Debian package that .ci/run
installs; without them this module fails with that instruction, never skips.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
import yaml
from http_serving import serving, wait_until_answering

from docpipe.client.starter import run_documents
from docpipe.config import load_settings
from docpipe.csv_input import parse_documents_csv
from docpipe.local.workers import LocalWorkers, free_port, wait_for_pollers
from docpipe.models import DocumentRef, Stage, Status
from docpipe.workers.common import connect

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DOCS = ROOT / "testdata" / "docs"
WORKER_KINDS = ("workflow", "cpu", "gpu", "io")
DB_SCHEMA = "docpipe_dashboards_test"
DASHBOARD_FILES = sorted(p.name for p in GRAFANA.glob("*.json"))

NO_GPU = "no GPU here: NVML device series are absent by design (test_gpu_series_are_absent...)"
MAY_BE_EMPTY: dict[tuple[str, str], str] = {
    ("docpipe-gpu-worker", "GPU memory used / total"): NO_GPU,
    ("docpipe-gpu-worker", "GPU memory used"): NO_GPU,
    ("docpipe-gpu-worker", "GPU utilisation"): NO_GPU,
    ("docpipe-gpu-worker", "GPU temperature"): NO_GPU,
    ("docpipe-temporal-sdk", "RPC failures per operation"): (
        "no call to a healthy dev server fails (the counter appears on the first failure)"
    ),
    ("docpipe-autoscaler", "Temporal errors"): (
        "Temporal stays reachable (the counter appears on the first failed reading)"
    ),
    ("docpipe-autoscaler", "Scale events"): (
        "the emulated Deployments start at minReplicas and a short burst may not move the "
        "policy (the counter appears on the first scale)"
    ),
}


def has_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def may_be_empty(uid: str, title: str) -> str | None:
    reason = MAY_BE_EMPTY.get((uid, title))
    if reason == NO_GPU and has_gpu():
        return None
    return reason


@pytest.fixture(scope="module")
def binaries() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install Debian's Prometheus "
            "(`apt-get install -y prometheus`, as .ci/run does) to verify the dashboards",
            pytrace=False,
        )
    return {name: str(path) for name, path in found.items()}


# ------------------------------------------------------------- static checks


def test_dashboards_are_generated_from_generate_py() -> None:
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(DASHBOARD_FILES) == 6


def test_alert_rules_and_config_pass_promtool(binaries: dict[str, str]) -> None:
    promtool = binaries["promtool"]
    for args in (
        ["check", "rules", "alerts.yaml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts_test.yaml"],
    ):
        result = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yaml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert {
        "DocpipeScheduleToStartHigh",
        "DocpipeBacklogAgeHigh",
        "DocpipeWorkerDown",
        "DocpipeGpuMemoryNearFull",
        "DocpipeDocumentFailureRatioHigh",
    } <= alerts


# ------------------------------------------------------------------ helpers


class _Web(BaseHTTPRequestHandler):
    """testdata/docs over HTTP (the http download backend) and a webhook that says 400."""

    def do_GET(self) -> None:
        path = (DOCS / self.path.lstrip("/")).resolve()
        if not path.is_relative_to(DOCS) or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_error(400)  # non-retryable: call_external_api fails, the documents do not

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def operator_process(temporal_address: str, log_path: Path) -> Iterator[int]:
    """The real kopf operator against kmock (as tests/operator run it), in a
    subprocess of its own, serving its metrics on the returned port."""
    port = free_port()
    # This file is the script: it imports tests/support as it does under pytest.
    path = os.pathsep.join(filter(None, [str(ROOT / "tests" / "support"), os.getenv("PYTHONPATH")]))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, "operator", temporal_address, str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": path},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def prometheus_config(targets: dict[str, list[str]], rules: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with this run's ports and a 1 s interval."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(rules)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(targets), "prometheus.yml's jobs changed: update this test"
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": targets[name]}]
    return config


@contextmanager
def prometheus(binary: str, config: dict[str, Any], workdir: Path) -> Iterator[str]:
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/-/ready", process, 30, log_path.read_text)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def api(url: str, path: str, **params: str) -> dict[str, Any]:
    query = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:  # a bad query answers 400 with a JSON error
        return json.loads(err.read())


async def wait_until(check, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not true after {timeout_s:g} s")
        await asyncio.sleep(0.5)
    return result


def substitute(expr: str, variables: dict[str, str], window_s: int) -> str:
    """Fill in what Grafana would: its interval variables and the dashboard's variables."""
    expr = expr.replace("$__rate_interval", f"{window_s}s").replace("$__range", f"{window_s}s")
    expr = expr.replace("$__interval", "1s")

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise AssertionError(f"unknown variable ${name} in {expr}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable's default as Grafana interpolates it in a regex matcher."""
    values = {}
    for var in dashboard["templating"]["list"]:
        current = var.get("current", {}).get("value")
        if var["type"] == "datasource":
            continue
        if current in ("$__all", ["$__all"]):
            values[var["name"]] = var.get("allValue") or ".*"
        elif isinstance(current, list):
            values[var["name"]] = "(" + "|".join(current) + ")"
        else:
            values[var["name"]] = str(current)
    return values


# --------------------------------------------------------------- the run


@dataclass
class Observed:
    prometheus: str
    window_s: int
    """Seconds since Prometheus started: ``$__rate_interval`` and ``$__range``."""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def observed(
    devstack, binaries: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Observed]:
    env = {
        **devstack.env,
        "S3_BUCKET": "metrics-documents",
        "VECTOR_COLLECTION": "metrics_chunks",
        "WEBHOOK_SECRET": "metrics-webhook-secret",
        # testdata/docs are served from 127.0.0.1, which downloads refuse by default.
        "DOWNLOAD_ALLOWED_NETWORKS": "127.0.0.0/8",
        # Rows in a schema of our own: the end-to-end tests count the rows and write
        # attempts of these same documents in the shared database.
        "PGOPTIONS": f"-c search_path={DB_SCHEMA}",
    }
    settings = load_settings(**{k.lower(): v for k, v in env.items()})
    with psycopg.connect(settings.metadata_db_conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {DB_SCHEMA}")
    logs = tmp_path_factory.mktemp("dashboards")
    prometheus_dir = Path(tempfile.mkdtemp(prefix="docpipe-prometheus-"))
    try:
        with (
            LocalWorkers(logs, env) as workers,
            serving(_Web) as web,
            operator_process(devstack.temporal.address, logs / "operator.log") as operator_port,
        ):
            workers.start(extra_env={"WORKER_CPU_THREADS": "2"})
            targets = {
                f"docpipe-{kind}": [
                    f"127.0.0.1:{workers.processes[kind].metrics_port}",
                    f"127.0.0.1:{workers.processes[kind].sdk_metrics_port}",
                ]
                for kind in WORKER_KINDS
            }
            targets["docpipe-operator"] = [f"127.0.0.1:{operator_port}"]
            config = prometheus_config(targets, PROMETHEUS_DIR / "alerts.yaml")
            with prometheus(binaries["prometheus"], config, prometheus_dir) as url:
                started = time.monotonic()
                client = await connect(settings)
                await wait_for_pollers(
                    client,
                    {
                        settings.workflow_task_queue: True,
                        settings.cpu_task_queue: False,
                        settings.gpu_task_queue: False,
                        settings.io_task_queue: False,
                    },
                    workers,
                )

                def down() -> list[str]:
                    result = api(url, "/api/v1/query", query="up")["data"]["result"]
                    up = {
                        (r["metric"]["job"], r["metric"]["instance"])
                        for r in result
                        if r["value"][1] == "1"
                    }
                    return [
                        f"{job} {t}"
                        for job, ts in targets.items()
                        for t in ts
                        if (job, t) not in up
                    ]

                try:
                    await wait_until(lambda: not down(), 60, "every target scraped")
                except AssertionError:
                    raise AssertionError(
                        f"targets down: {down()}\noperator.log:\n"
                        + (logs / "operator.log").read_text(errors="replace")[-3000:]
                    ) from None

                # Two rounds: series that a round creates (label values seen for the first
                # time) only show in rate() once a later round moves them.
                for phase in (1, 2):
                    summary = await run_documents(
                        client,
                        settings,
                        workload(web, phase),
                        batch_size=3,
                        timeout_s=120,
                        webhook_url=f"{web}/hook",
                    )
                    failed = sorted(
                        (o.source.rsplit("/", 1)[-1], o.failure_stage) for o in summary.failed
                    )
                    assert failed == EXPECTED_FAILURES[phase], failed

                # The last scrapes after the workload, and the operator's reading of it.
                def operator_read_backlog() -> bool:
                    found = api(url, "/api/v1/query", query="docpipe_operator_queue_backlog_tasks")
                    return bool(found["data"]["result"])

                await wait_until(operator_read_backlog, 30, "operator backlog series scraped")
                await asyncio.sleep(3)
                yield Observed(url, math.ceil(time.monotonic() - started) + 2)
    finally:
        shutil.rmtree(prometheus_dir, ignore_errors=True)


def workload(web: str, phase: int) -> list[DocumentRef]:
    """Documents of every kind in each round: text, markdown, HTML, PDF, images (OCR),
    files served over HTTP, and failures (a missing file, a 404, an empty file)."""
    rows = {
        1: [
            "docs/en_durable_workflows.txt",
            "docs/invoice_scan.png",
            f"{web}/de_fahrrad_stadt.txt",
            "docs/missing-file.txt",
        ],
        2: [
            "docs/guide_backups.md",
            "docs/article_search_engines.html",
            "docs/text_layer_lighthouses.pdf",
            "docs/invoice_photo.jpg",
            f"{web}/fr_boulangerie.txt",
            f"{web}/not-there.txt",
            "docs/empty.txt",
        ],
    }[phase]
    return parse_documents_csv(
        "url\n" + "\n".join(rows) + "\n", base_dir=DOCS.parent, origin=f"dashboards-{phase}"
    )


EXPECTED_FAILURES = {
    1: [("missing-file.txt", Stage.DOWNLOAD)],
    2: [("empty.txt", Stage.VALIDATE), ("not-there.txt", Stage.DOWNLOAD)],
}


# ------------------------------------------------------------------ the tests


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_panel_query_returns_data(observed: Observed, name: str) -> None:
    dashboard = json.loads((GRAFANA / name).read_text())
    variables = variable_values(dashboard)
    uid = dashboard["uid"]
    problems: list[str] = []
    checked = 0
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']} has no query"
        allowed_empty = may_be_empty(uid, panel["title"])
        for target in panel["targets"]:
            expr = substitute(target["expr"], variables, observed.window_s)
            answer = api(observed.prometheus, "/api/v1/query", query=expr)
            checked += 1
            if answer.get("status") != "success":
                problems.append(f"{panel['title']}: invalid query {expr}: {answer.get('error')}")
                continue
            values = [float(item["value"][1]) for item in answer["data"]["result"]]
            if any(math.isfinite(v) for v in values) or allowed_empty:
                continue
            problems.append(f"{panel['title']}: no data for {expr} (got {values})")
    assert not problems, "\n".join(problems)
    assert checked >= 5


def test_every_excluded_panel_exists(observed: Observed) -> None:
    """MAY_BE_EMPTY names real panels (a renamed panel must not silently escape)."""
    titles = set()
    for name in DASHBOARD_FILES:
        dashboard = json.loads((GRAFANA / name).read_text())
        titles |= {(dashboard["uid"], p["title"]) for p in dashboard["panels"]}
    assert set(MAY_BE_EMPTY) <= titles, set(MAY_BE_EMPTY) - titles


def test_gpu_series_are_absent_without_a_gpu_not_zero(observed: Observed) -> None:
    metrics = (
        "docpipe_gpu_memory_used_bytes",
        "docpipe_gpu_memory_total_bytes",
        "docpipe_gpu_temperature_celsius",
        "docpipe_gpu_utilization_ratio",
    )
    for metric in metrics:
        result = api(observed.prometheus, "/api/v1/query", query=metric)["data"]["result"]
        if has_gpu():
            assert result, f"{metric} is missing on a machine with a GPU"
        else:
            assert result == [], f"{metric} must be absent without a GPU, got {result}"


def test_alert_rules_load_and_evaluate_in_prometheus(observed: Observed) -> None:
    groups = api(observed.prometheus, "/api/v1/rules")["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    expected = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yaml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert set(rules) == expected
    for name, rule in rules.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))
    # A healthy run: every worker target answers, so no worker is reported down.
    firing = api(
        observed.prometheus, "/api/v1/query", query='ALERTS{alertname="DocpipeWorkerDown"}'
    )
    assert firing["data"]["result"] == []


def test_pipeline_outcomes_and_latency_are_recorded(observed: Observed) -> None:
    def value(expr: str) -> float:
        result = api(observed.prometheus, "/api/v1/query", query=expr)["data"]["result"]
        assert result, expr
        return float(result[0]["value"][1])

    assert value("sum(docpipe_pipeline_documents_completed_total)") == 8
    assert value('sum(docpipe_pipeline_documents_failed_total{stage="download"})') == 2
    assert value('sum(docpipe_pipeline_documents_failed_total{stage="validate"})') == 1
    assert (
        value(
            f'sum(docpipe_pipeline_document_duration_seconds_count{{status="{Status.SUCCEEDED}"}})'
        )
        == 8
    )
    assert value('sum(docpipe_io_bytes_total{backend="http", direction="in"})') > 0
    assert value('sum(docpipe_gpu_inference_items_total{task="ocr"})') >= 1
    assert value('sum(docpipe_process_cpu_seconds_total{worker="cpu", process="children"})') > 0


# ------------------------------------------------ the operator's subprocess


async def _serve_operator(temporal_address: str, metrics_port: int) -> None:
    """kmock + the kopf operator (tests/operator's harness) + one DocumentPipeline
    on this test's queues, until SIGTERM; metrics on ``metrics_port``."""
    os.environ.setdefault("DOCPIPE_OPERATOR_TICK_SECONDS", "0.5")
    os.environ.setdefault("DOCPIPE_OPERATOR_TEMPORAL_TIMEOUT_SECONDS", "2")
    # The example's images, as tests/operator/conftest.py allows them: an operator with
    # no allowlist refuses every image, and a refused pipeline reads no backlog.
    os.environ.setdefault("DOCPIPE_OPERATOR_ALLOWED_IMAGES", "ghcr.io/example/docpipe-*")
    sys.path.insert(0, str(ROOT / "tests" / "operator"))
    from kmock import Server
    from kube_emulator import ApiServer
    from operator_harness import NAMESPACE, Cluster, running_operator, write_kubeconfig
    from prometheus_client import start_http_server

    body = yaml.safe_load((ROOT / "deploy" / "examples" / "minimal.yaml").read_text())
    body["spec"]["temporal"] = {"address": temporal_address}
    body["spec"]["queues"] = {
        "workflow": "document-pipeline-queue",
        "cpu": "cpu-bound-queue",
        "gpu": "gpu-bound-queue",
        "io": "io-bound-queue",
    }
    for pool in body["spec"]["pools"].values():
        pool["scaling"] = {"pollIntervalSeconds": 1}

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    with tempfile.TemporaryDirectory(prefix="docpipe-kmock-") as tmp:
        async with ApiServer() as kube, Server(kube):
            url = str(kube.url).rstrip("/")
            kube.add_namespace(NAMESPACE)
            kubeconfig = write_kubeconfig(Path(tmp) / "kubeconfig", url)
            os.environ["KUBECONFIG"] = str(kubeconfig)
            os.environ.pop("KUBERNETES_SERVICE_HOST", None)
            start_http_server(metrics_port, addr="127.0.0.1")
            async with running_operator():
                await Cluster(kube, url).create_pipeline(body)
                print("operator running", flush=True)
                await stop.wait()


if __name__ == "__main__" and sys.argv[1:2] == ["operator"]:
    asyncio.run(_serve_operator(sys.argv[2], int(sys.argv[3])))
