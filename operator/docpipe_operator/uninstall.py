"""Delete the DocumentPipelines the operator serves, and wait until they are gone:
the chart's pre-delete hook (``helm uninstall``).

kopf puts a finalizer on every DocumentPipeline (its autoscaling timer needs one),
and only the running operator removes it. ``helm uninstall`` deletes the operator
together with everything else, so a pipeline deleted after it (the chart's own,
or one a namespace owner deletes later) would stay Terminating forever. This hook
runs before Helm deletes anything: it deletes every pipeline in the watched
namespaces (every namespace, cluster-wide) while the operator still runs, and
succeeds only once all are gone; the uninstall then proceeds. If they do not go
in time (the operator is not running), the Job fails and so does the uninstall,
with the pipelines named: nothing is left half-removed behind the user's back.

Run as ``python -m docpipe_operator.uninstall [--timeout S] NAMESPACE...`` (no
namespace: every namespace). The logic, :func:`delete_and_wait`, talks to a small
:class:`Pipelines` interface, so it is tested against a fake.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from docpipe_operator import GROUP, PLURAL, VERSION
from docpipe_operator.kube_login import load_configuration

log = logging.getLogger(__name__)

Ref = tuple[str, str]
"""(namespace, name) of one DocumentPipeline."""


class Pipelines(Protocol):
    async def list(self, namespace: str | None) -> list[Ref]:
        """The pipelines in ``namespace`` (None: every namespace), being deleted or not."""
        ...

    async def delete(self, namespace: str, name: str) -> None:
        """Ask for deletion (gone already is fine)."""
        ...


async def delete_and_wait(
    api: Pipelines,
    namespaces: Sequence[str] | None,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[Ref]:
    """Delete every pipeline in ``namespaces`` (None: all), then wait until none is
    left; returns those deleted. :class:`TimeoutError` names the ones still there."""
    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    deadline = clock() + timeout_s
    found = await _list(api, scopes)
    for namespace, name in found:
        await api.delete(namespace, name)
        log.info("deleting DocumentPipeline %s/%s", namespace, name)
    while remaining := await _list(api, scopes):
        if clock() >= deadline:
            names = ", ".join(f"{ns}/{name}" for ns, name in remaining)
            raise TimeoutError(
                f"still there after {timeout_s:g} s: {names}. Is the operator running? It "
                "removes their finalizer (docs/operator.md, Uninstall)"
            )
        await sleep(poll_s)
    log.info("%d DocumentPipeline(s) deleted", len(found))
    return found


async def _list(api: Pipelines, scopes: Sequence[str | None]) -> list[Ref]:
    found: list[Ref] = []
    for scope in scopes:
        found += await api.list(scope)
    return sorted(found)


class KubePipelines:
    """:class:`Pipelines` over the Kubernetes API (CustomObjectsApi)."""

    def __init__(self, objects: client.CustomObjectsApi) -> None:
        self.objects = objects

    async def list(self, namespace: str | None) -> list[Ref]:
        try:
            if namespace is None:
                found = await self.objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            else:
                found = await self.objects.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL
                )
        except ApiException as exc:
            if exc.status == 404:  # no CRD (never installed, or removed): nothing to delete
                return []
            raise
        return [
            (item["metadata"]["namespace"], item["metadata"]["name"])
            for item in found.get("items") or []
        ]

    async def delete(self, namespace: str, name: str) -> None:
        try:
            await self.objects.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


async def run(namespaces: Sequence[str], timeout_s: float) -> None:
    async with client.ApiClient(await load_configuration()) as api:
        await delete_and_wait(
            KubePipelines(client.CustomObjectsApi(api)), namespaces, timeout_s=timeout_s
        )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``[--timeout S] NAMESPACE...``: the arguments the chart's hook Job passes."""
    parser = argparse.ArgumentParser(prog="python -m docpipe_operator.uninstall")
    parser.add_argument("namespaces", nargs="*", help="watched namespaces (none: all)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait")
    return parser.parse_args(list(argv))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        asyncio.run(run(args.namespaces, args.timeout))
    except TimeoutError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
