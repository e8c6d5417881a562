"""The chart's pre-delete hook (docpipe_operator.uninstall): every pipeline in the
watched namespaces is deleted while the operator still runs, and the hook ends only
once they are gone, so `helm uninstall` never leaves one Terminating."""

from __future__ import annotations

import pytest

from docpipe_operator.uninstall import Ref, delete_and_wait


class FakeCluster:
    """Pipelines per namespace; a deleted one goes after ``finalize_after`` more lists
    (the operator removing its finalizer), or never (no operator)."""

    def __init__(self, pipelines: list[Ref], finalize_after: int | None = 1) -> None:
        self.pipelines = set(pipelines)
        self.terminating: dict[Ref, int] = {}
        self.finalize_after = finalize_after
        self.deleted: list[Ref] = []

    async def list(self, namespace: str | None) -> list[Ref]:
        for ref in list(self.terminating):
            self.terminating[ref] -= 1
            if self.finalize_after is not None and self.terminating[ref] < 0:
                del self.terminating[ref]
                self.pipelines.discard(ref)
        return [ref for ref in self.pipelines if namespace in (None, ref[0])]

    async def delete(self, namespace: str, name: str) -> None:
        self.deleted.append((namespace, name))
        self.terminating.setdefault((namespace, name), self.finalize_after or 0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_every_pipeline_of_the_watched_namespaces_is_deleted_and_awaited() -> None:
    cluster = FakeCluster([("a", "docs"), ("b", "scans"), ("other", "keep")], finalize_after=2)
    clock = Clock()
    deleted = await delete_and_wait(
        cluster, ["a", "b"], timeout_s=60, sleep=clock.sleep, clock=clock
    )
    assert deleted == [("a", "docs"), ("b", "scans")]
    assert cluster.pipelines == {("other", "keep")}  # not watched: not ours
    assert clock.now > 0  # it waited for the finalizers


async def test_without_namespaces_it_covers_every_namespace() -> None:
    cluster = FakeCluster([("a", "docs"), ("b", "scans")])
    clock = Clock()
    await delete_and_wait(cluster, [], timeout_s=60, sleep=clock.sleep, clock=clock)
    assert cluster.pipelines == set()


async def test_nothing_to_delete_ends_at_once() -> None:
    clock = Clock()
    assert await delete_and_wait(FakeCluster([]), ["a"], timeout_s=1, clock=clock) == []


async def test_pipelines_that_never_go_fail_the_hook_and_are_named() -> None:
    cluster = FakeCluster([("a", "docs")], finalize_after=None)  # no operator
    clock = Clock()
    with pytest.raises(TimeoutError, match=r"a/docs.*operator running"):
        await delete_and_wait(cluster, ["a"], timeout_s=10, sleep=clock.sleep, clock=clock)
    assert cluster.deleted == [("a", "docs")]  # asked once, not again and again
