"""Task-queue backlog from Temporal, for the pools that are due a decision.

The numbers come from ``docpipe.queue_stats.describe_queue`` (DescribeTaskQueue
with report_stats), the same call ``docpipe status`` makes. This module adds
what an operator needs around it: one cached client per Temporal endpoint
(many DocumentPipelines may share one), a deadline on every call so a dead
server costs a tick and not the operator, and an answer of ``None`` per
queue that could not be read, which the policy treats as "hold".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace

from temporalio.client import Client

from docpipe.config import TemporalConnection
from docpipe.encryption.keyring import Keyring
from docpipe.queue_stats import QueueStats, describe_queue
from docpipe_operator import scaling

DEFAULT_TIMEOUT_S = 5.0


Endpoint = TemporalConnection
"""Where and how to reach Temporal (address, namespace, TLS, API key); the client cache's key."""


@dataclass(frozen=True)
class QueueRef:
    """A task queue whose backlog is read."""

    name: str
    workflow: bool = False
    """True for the workflow queue: its workflow-task statistics, not activity ones."""


@dataclass(frozen=True)
class BacklogReading:
    stats: Mapping[str, QueueStats | None]
    """Per pool; ``None`` where the queue could not be read."""
    error: str | None
    seconds: float
    """How long the reading took (for the query latency metric)."""
    missing: Mapping[str, str] = field(default_factory=dict)
    """Per pool whose queue answered without statistics: why. Temporal is
    reachable, but a server that reports no stats must not read as idle."""

    @property
    def reachable(self) -> bool:
        return self.error is None


class TemporalClients:
    """Connected clients by endpoint, reconnecting after a failure.

    ``payload_keys`` (the operator's PAYLOAD_ENCRYPTION_KEYS) give every client
    the workers' encrypting data converter: the operator reads no payloads
    today, but any it ever reads then decodes, and it never writes one in clear.
    """

    def __init__(
        self, timeout_s: float = DEFAULT_TIMEOUT_S, payload_keys: Keyring | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self.payload_keys = payload_keys
        self._clients: dict[Endpoint, Client] = {}
        self._users: dict[Hashable, Endpoint] = {}
        """Which endpoint each pipeline last read through."""

    async def get(self, endpoint: Endpoint) -> Client:
        # No lock: two pipelines racing to connect to one endpoint just make
        # one client too many, while a lock would let one dead endpoint stall
        # every pipeline's tick for the whole timeout.
        found = self._clients.get(endpoint)
        if found is None:
            keyed = replace(endpoint, payload_keys=self.payload_keys)
            found = await asyncio.wait_for(keyed.connect(), self.timeout_s)
            self._clients[endpoint] = found
        return found

    def forget(self, endpoint: Endpoint) -> None:
        """Drop a client that failed, so the next reading connects afresh."""
        self._clients.pop(endpoint, None)

    def use(self, user: Hashable, endpoint: Endpoint) -> None:
        """``user`` (a pipeline) now reads through ``endpoint``. The endpoint it
        used before (an API key or certificate since rotated, an address changed)
        is released. The SDK's Client has no close(): dropping the last reference
        closes its connection."""
        previous = self._users.get(user)
        self._users[user] = endpoint
        if previous is not None and previous != endpoint:
            self._release_unused(previous)

    def endpoint_of(self, user: Hashable) -> Endpoint | None:
        """The endpoint ``user`` last read through (None before its first round): a wake
        check reuses it rather than reading the credential Secrets every few seconds."""
        return self._users.get(user)

    def release(self, user: Hashable) -> None:
        """``user`` is gone (a deleted pipeline): release its endpoint if unused."""
        if (previous := self._users.pop(user, None)) is not None:
            self._release_unused(previous)

    def _release_unused(self, endpoint: Endpoint) -> None:
        if endpoint not in self._users.values():
            self.forget(endpoint)

    async def read(
        self,
        endpoint: Endpoint,
        queues: Mapping[str, QueueRef],
        *,
        user: Hashable | None = None,
    ) -> BacklogReading:
        """Statistics of each queue (keyed like ``queues``), never raising.

        ``user`` (the pipeline) lets a client it no longer uses be released."""
        started = time.monotonic()
        if user is not None:
            self.use(user, endpoint)
        try:
            temporal = await self.get(endpoint)
        except Exception as exc:  # unreachable, refused, TLS, bad API key, timeout
            return BacklogReading(
                {pool: None for pool in queues},
                _explain("connect", endpoint, exc),
                time.monotonic() - started,
            )
        pools = list(queues)
        results = await asyncio.gather(
            *(self._describe(temporal, queues[pool]) for pool in pools), return_exceptions=True
        )
        stats: dict[str, QueueStats | None] = {}
        errors = []
        missing: dict[str, str] = {}
        for pool, result in zip(pools, results, strict=True):
            if isinstance(result, BaseException):
                stats[pool] = None
                errors.append(_explain(f"describe {queues[pool].name}", endpoint, result))
            elif not result.reported:
                # Zeros here would shrink every pool to its minimum: missing data holds.
                stats[pool] = None
                missing[pool] = (
                    f"{endpoint.address} ({endpoint.namespace}) returned no statistics for "
                    f"{queues[pool].name} (DescribeTaskQueue report_stats unsupported)"
                )
            else:
                stats[pool] = result
        if errors:
            self.forget(endpoint)
        return BacklogReading(stats, "; ".join(errors) or None, time.monotonic() - started, missing)

    async def _describe(self, temporal: Client, queue: QueueRef) -> QueueStats:
        return await asyncio.wait_for(
            describe_queue(temporal, queue.name, workflow=queue.workflow), self.timeout_s
        )


def _explain(what: str, endpoint: Endpoint, exc: BaseException) -> str:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        detail = "timed out"
    return f"{what} at {endpoint.address} ({endpoint.namespace}): {detail}"


def queue_signal(stats: QueueStats | None) -> scaling.QueueSignal | None:
    """The policy's view of one queue's statistics (``None``: could not be read)."""
    if stats is None:
        return None
    return scaling.QueueSignal(
        backlog_count=stats.backlog_count,
        backlog_age_s=stats.backlog_age_s,
        add_rate=stats.add_rate,
        dispatch_rate=stats.dispatch_rate,
    )
