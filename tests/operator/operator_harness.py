"""Helpers for the operator tests: the emulated cluster as kubectl sees it,
the real kopf operator in a thread, a Temporal dev server, and polling.

Importing this module imports the operator's handlers, which read their
settings at import: conftest.py sets those first.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import kopf
from kube_emulator import TEST_AGENT, ApiServer

from docpipe.local.devstack import DevStack, TemporalServer
from docpipe_operator import handlers  # noqa: F401  (registers the handlers)
from docpipe_operator.trust import ALLOW_LABEL

NAMESPACE = "docpipe-test"
ALLOWED = {ALLOW_LABEL: "true"}
"""The label by which a Secret's owner lets pipelines use it."""
EXAMPLE_SECRETS = ("docpipe-s3", "docpipe-postgres", "docpipe-chroma", "docpipe-webhook")
"""The store and webhook Secrets deploy/examples/full.yaml names."""
CR_PATH = f"/apis/docpipe.io/v1alpha1/namespaces/{NAMESPACE}/documentpipelines"
T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]], timeout: float = 30.0, interval: float = 0.1
) -> T:
    """Poll ``check`` until it returns something truthy (or raises no AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result  # type: ignore[return-value]
            failure: BaseException | None = None
        except (AssertionError, KeyError, ValueError) as exc:
            failure = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:g} s: {failure or check}")
        await asyncio.sleep(interval)


class Cluster:
    """The emulated API server, seen the way kubectl and a test see it."""

    def __init__(self, api: ApiServer, url: str) -> None:
        self.api = api
        self.url = url

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> Any:
        headers = {"User-Agent": TEST_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            payload = await response.json()
            assert response.status < 300, payload
            return payload

    async def create_pipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "metadata": {**body["metadata"], "namespace": NAMESPACE}}
        return await self.request("POST", CR_PATH, body)

    async def patch_pipeline(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.request(
            "PATCH", f"{CR_PATH}/{name}", patch, "application/merge-patch+json"
        )

    async def delete_pipeline(self, name: str) -> None:
        await self.request("DELETE", f"{CR_PATH}/{name}")

    def get(
        self, resource: str, name: str, namespace: str | None = NAMESPACE
    ) -> dict[str, Any] | None:
        """The stored object, or None (never created, or deleted)."""
        try:
            found = self.api.objects[resource, namespace, name]
        except KeyError:
            return None
        return None if found.deleted else found.raw

    def versions(self, resource: str, name: str) -> int:
        return len(self.api.objects[resource, NAMESPACE, name].history)

    def pipeline(self, name: str) -> dict[str, Any] | None:
        return self.get("docpipe.io/v1alpha1/documentpipelines", name)

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.get("apps/v1/deployments", name)

    def service(self, name: str) -> dict[str, Any] | None:
        return self.get("v1/services", name)

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        found = []
        for (resource, _, _), obj in self.api.objects.items():
            if resource.plural == "events" and not obj.deleted:
                if reason is None or obj.raw.get("reason") == reason:
                    found.append(obj.raw)
        return found

    def set_ready(self, deployment: str, ready: int) -> None:
        """Play the Deployment controller and kubelet: the current template's pods became ready."""
        self.set_deployment_status(deployment, ready=ready, updated=ready)

    def set_deployment_status(
        self,
        deployment: str,
        *,
        ready: int,
        updated: int,
        conditions: list[dict[str, Any]] | None = None,
    ) -> None:
        """Play the Deployment controller: it has seen the latest generation and
        reports its pods (``updated``: those of the current template)."""
        stored = self.api.objects["apps/v1/deployments", NAMESPACE, deployment]
        status: dict[str, Any] = {
            "observedGeneration": stored.raw["metadata"].get("generation", 1),
            "replicas": max(ready, updated),
            "readyReplicas": ready,
            "updatedReplicas": updated,
        }
        if conditions is not None:
            status["conditions"] = conditions
        stored.patch({"status": status})


def add_example_secrets(api: ApiServer) -> None:
    """The Secrets full.yaml names, labelled for docpipe as their owner would."""
    for name in EXAMPLE_SECRETS:
        api.objects["v1/secrets", NAMESPACE, name] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(ALLOWED)},
            "data": {},
        }


@contextlib.asynccontextmanager
async def running_operator(**kwargs: Any) -> AsyncIterator[None]:
    """The real kopf operator with our handlers, in a thread with its own loop.

    Not a task in the test's loop: on stop, kopf cancels every task created
    after it started, which would include the test's own teardown.
    """
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True  # kmock has no CRDs to scan; the namespace is explicit
    stop, ready = threading.Event(), threading.Event()
    options: dict[str, Any] = {"standalone": True, "namespaces": [NAMESPACE]} | kwargs
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    settings=settings, stop_flag=stop, ready_flag=ready, memo=kopf.Memo(), **options
                )
            )
        except BaseException as exc:  # shown by the test that started it
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 30), "the operator did not start within 30 s"
        if failures:
            raise failures[0]
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive(), "the operator did not stop within 30 s"
    if failures:
        raise failures[0]


def start_temporal(extra_args: tuple[str, ...] = ()) -> TemporalServer:
    """A Temporal dev server (docpipe's own DevStack helper), in memory; ``extra_args``
    go to ``temporal server start-dev`` (dynamic config, for instance)."""
    data_dir = Path(tempfile.mkdtemp(prefix="docpipe-operator-test-"))
    server = TemporalServer(DevStack(data_dir), None, extra_args)
    server.start()
    server.data_dir = data_dir  # type: ignore[attr-defined]
    return server


def stop_temporal(server: TemporalServer) -> None:
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)  # type: ignore[attr-defined]


def write_kubeconfig(path: Path, server_url: str) -> Path:
    """A kubeconfig that points kopf and kubernetes_asyncio at the emulated API server."""
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server_url}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
                "current-context": "kmock",
            }
        )
    )
    return path
