"""One reader of the task queues per run: admission reads its backlog, the
stalled-queue warnings listen to the same rounds, and a failed read ends nothing."""

from __future__ import annotations

import asyncio

import pytest

import docpipe.client.queue_readings as queue_readings
from docpipe.client.queue_health import health_listener
from docpipe.client.queue_readings import QueueReadings
from docpipe.config import load_settings
from docpipe.queue_stats import QueueStats

SETTINGS = load_settings()


def stats(queue: str, backlog: int, pollers: int = 1) -> QueueStats:
    kind = "workflow" if queue == SETTINGS.workflow_task_queue else "activity"
    return QueueStats(queue, kind, backlog, 40.0 if backlog else 0.0, 0.0, 0.0, pollers)


class Server:
    """DescribeTaskQueue as the reader sees it: one answer per round, counted."""

    def __init__(self, rounds: list[list[QueueStats] | Exception]) -> None:
        self.rounds, self.reads = rounds, 0

    async def describe(
        self, client: object, workflow: str, activity: list[str]
    ) -> list[QueueStats]:
        answer = self.rounds[min(self.reads, len(self.rounds) - 1)]
        self.reads += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Server:
    queues = [
        SETTINGS.workflow_task_queue,
        SETTINGS.cpu_task_queue,
        SETTINGS.gpu_task_queue,
        SETTINGS.io_task_queue,
    ]
    backlogs = [7, 0, 12, 3]
    found = Server(
        [
            [stats(q, n) for q, n in zip(queues, backlogs, strict=True)],
            ConnectionError("connection refused"),
            ConnectionError("connection refused"),
            [stats(q, n) for q, n in zip(queues, backlogs, strict=True)],
        ]
    )
    monkeypatch.setattr(queue_readings, "describe_queues", found.describe)
    return found


async def test_admission_sees_the_activity_queues_backlog_only(server: Server) -> None:
    readings = QueueReadings(object(), SETTINGS)  # type: ignore[arg-type]
    assert readings.backlog is None  # not read yet: admission keeps its floor
    await readings.read_once()
    assert readings.backlog == {
        SETTINGS.cpu_task_queue: 0,
        SETTINGS.gpu_task_queue: 12,
        SETTINGS.io_task_queue: 3,
    }
    assert readings.changed.is_set()


async def test_a_failed_read_is_no_backlog_and_is_said_once(server: Server) -> None:
    lines: list[str] = []
    readings = QueueReadings(object(), SETTINGS)  # type: ignore[arg-type]
    readings.listeners.append(health_listener(SETTINGS, lines.append, grace_s=0.0))
    for _ in range(3):
        await readings.read_once()
    assert readings.backlog is None
    assert lines == ["cannot read the task queues' stats (connection refused); will keep trying"]


async def test_every_listener_gets_the_same_round(server: Server) -> None:
    seen: list[tuple[str, object]] = []
    stop = asyncio.Event()
    readings = QueueReadings(object(), SETTINGS, every_s=0.01)  # type: ignore[arg-type]
    readings.listeners.append(lambda found, error: seen.append(("admission", found)))
    readings.listeners.append(lambda found, error: seen.append(("health", found)))
    readings.listeners.append(lambda found, error: server.reads >= 4 and stop.set())
    await asyncio.wait_for(readings.run(stop), 5)
    assert server.reads == len(seen) // 2  # one read per round, not one per listener
    assert [who for who, _ in seen[:2]] == ["admission", "health"]
    assert seen[0][1] is seen[1][1]
