"""What every worker process does the same way: settings, client, metrics, shutdown.

Each worker runs until SIGTERM or SIGINT, then stops polling at once and lets
in-flight activities finish for up to WORKER_SHUTDOWN_GRACE_S (Kubernetes sends
SIGTERM and waits terminationGracePeriodSeconds before SIGKILL; the operator renders
the worker's grace a little below the pod's); activities still running after that
are cancelled and handed back to the server, which retries them elsewhere.

With WORKER_POD_ANNOTATIONS_FILE (a downward API volume) a worker also obeys its
pod's drain annotation (:mod:`docpipe.workers.drain_switch`): cordoned, it shuts
its Temporal Worker down the same graceful way but keeps the process, reports
``docpipe_worker_draining`` 1 once nothing is in flight, and builds a new Worker
from the same factory when the annotation goes away. The process's heavy
resources (process pool, models, store clients) outlive every Worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from functools import partial
from typing import Any

from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker, WorkerDeploymentConfig

from docpipe.config import ConfigError, Settings, load_settings
from docpipe.metrics import set_worker_kind
from docpipe.metrics.process import register_process_collector
from docpipe.metrics.worker import set_draining
from docpipe.process_exit import exit_without_finalizing
from docpipe.workers.drain_switch import DRAIN_ANNOTATION, DrainSwitch

log = logging.getLogger("docpipe.worker")


def shutdown_grace(settings: Settings) -> timedelta:
    """How long in-flight activities may run on after SIGTERM (the Worker's
    graceful_shutdown_timeout): WORKER_SHUTDOWN_GRACE_S."""
    return timedelta(seconds=settings.worker_shutdown_grace_s)


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr at LOG_LEVEL; chatty libraries stay at WARNING unless it is DEBUG.

    Secrets never reach a log at any level: settings hold them as SecretStr, and
    nothing logs a connection string or a request's headers (a test greps).
    """
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "DEBUG":
        for noisy in ("httpx", "botocore", "aiobotocore", "chromadb", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def make_runtime(settings: Settings) -> Runtime | None:
    """One Runtime per process; it exports the SDK's own metrics (ms histograms)."""
    if not settings.sdk_metrics_port:
        return None
    telemetry = TelemetryConfig(
        metrics=PrometheusConfig(bind_address=f"0.0.0.0:{settings.sdk_metrics_port}")
    )
    return Runtime(telemetry=telemetry)


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """The Temporal client of ``settings`` (TLS, mTLS, API key): TemporalConnection.connect."""
    return await settings.temporal_connection().connect(runtime)


def deployment_config(
    settings: Settings,
    kind: str,
    behavior: VersioningBehavior = VersioningBehavior.UNSPECIFIED,
) -> WorkerDeploymentConfig | None:
    """The Worker Deployment Version this worker polls as, or None to poll unversioned.

    With a Build ID (WORKER_BUILD_ID or DOCPIPE_IMAGE_TAG) the worker joins the
    deployment ``settings.deployment_name(kind)`` as version ``<name>.<build id>``;
    Temporal then routes new workflows to whichever version is Current (or
    Ramping), and a pinned workflow's tasks only to the version it started on,
    so a new image never replays an open workflow's history with changed code.
    Without one, nothing changes: a versioned worker gets no tasks until someone
    makes its version Current, which only an operator (or a person) should do.

    ``behavior`` is the workflows' versioning behaviour (the workflow worker's
    :func:`docpipe.workflows.versioning_behavior`); activity workers need none.
    """
    build_id = settings.build_id
    if build_id is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=settings.deployment_name(kind), build_id=build_id
        ),
        use_worker_versioning=True,
        default_versioning_behavior=behavior,
    )


def start_metrics(settings: Settings, kind: str) -> None:
    """Serve /metrics on METRICS_PORT: docpipe_* (labelled ``worker=kind``) and process metrics."""
    set_worker_kind(kind)
    register_process_collector()
    if settings.metrics_port:
        start_http_server(settings.metrics_port)


def drain_switch(settings: Settings) -> DrainSwitch | None:
    """The pod's drain switch (WORKER_POD_ANNOTATIONS_FILE), or None: drains are ignored."""
    path = settings.worker_pod_annotations_file
    return DrainSwitch(path) if path is not None else None


async def poll(
    settings: Settings,
    client: Client,
    kind: str,
    *,
    behavior: VersioningBehavior = VersioningBehavior.UNSPECIFIED,
    **worker_options: Any,
) -> None:
    """Poll ``kind``'s task queue until stopped (:func:`run_until_stopped`, obeying
    the pod's drain switch), with the settings' shutdown grace and Worker Deployment
    Version and ``worker_options`` (workflows or activities, limits).

    A new Worker is built each time a drain is lifted; what the caller built for
    the process (process pool, models, store clients) serves every one of them.
    """
    make_worker = partial(
        Worker,
        client,
        task_queue=settings.task_queue(kind),
        graceful_shutdown_timeout=shutdown_grace(settings),
        deployment_config=deployment_config(settings, kind, behavior),
        **worker_options,
    )
    await run_until_stopped(make_worker, drain_switch(settings))


async def run_until_stopped(
    make_worker: Callable[[], Worker],
    drain: DrainSwitch | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Poll with a Worker from ``make_worker`` until SIGTERM/SIGINT, then shut down
    gracefully (the Worker's context exit).

    With a ``drain`` switch, a drain request shuts the Worker down the same way
    (no new tasks at once, in-flight activities get its graceful_shutdown_timeout);
    the process then waits, drained, and polls again with a new Worker from
    ``make_worker`` when the drain is lifted. A pod that starts cordoned does not
    poll at all until then. ``stop`` replaces the signals (tests): set, it ends
    everything as SIGTERM does.
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        if drain is not None:
            await stack.enter_async_context(drain)
            set_draining(False)
        while not stop.is_set():
            if drain is not None and drain.draining:
                set_draining(True)
                log.info("drained (pod annotation %s): not polling until it goes", DRAIN_ANNOTATION)
                await _first(stop.wait(), drain.wait_serving())
                set_draining(False)
                if stop.is_set():
                    break
                log.info("drain lifted: polling again")
            await _poll_until(make_worker(), stop, drain)


async def _poll_until(worker: Worker, stop: asyncio.Event, drain: DrainSwitch | None) -> None:
    """Run ``worker`` until ``stop`` is set or a drain is requested; return when it
    has shut down (nothing polls, every activity it took has finished)."""
    async with worker:
        version = worker.config().get("deployment_config")
        log.info(
            "polling task queue %s%s",
            worker.task_queue,
            f" as {version.version.deployment_name}.{version.version.build_id}" if version else "",
        )
        if drain is None:
            await stop.wait()
        else:
            await _first(stop.wait(), drain.wait_draining())
        grace = worker.config().get("graceful_shutdown_timeout") or timedelta()
        log.info(
            "%s: no new tasks; in-flight activities get %g s to finish",
            "stop signal received" if stop.is_set() else "drain requested",
            grace.total_seconds(),
        )


async def _first(*waits: Awaitable[object]) -> None:
    """Return when the first of ``waits`` completes; the others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def run_worker(kind: str, main: Callable[[Settings], Awaitable[None]]) -> None:
    """Process entry point shared by all worker types."""
    try:
        settings = load_settings()
    except ConfigError as err:
        print(f"docpipe {kind} worker: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    start_metrics(settings, kind)
    try:
        asyncio.run(main(settings))
    except ConfigError as err:  # found when connecting, e.g. a refused VECTOR_DB_TOKEN
        print(f"docpipe {kind} worker: {err}", file=sys.stderr)
        exit_without_finalizing(2)
    log.info("%s worker stopped", kind)
    exit_without_finalizing(0)
