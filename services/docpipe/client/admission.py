"""How many batches the starter keeps in flight: as many as the workers drain.

Starting every batch of a large CSV at once fills the task queues: documents
then spend most of their life waiting, memory grows with the CSV, and a
worker added later inherits a queue hours long. The starter instead admits a
new batch only while the activity queues it feeds have little waiting work
(a few tasks per queue: enough that no worker idles between tasks), with
``max_in_flight`` as a hard ceiling and ``min_in_flight`` as a floor that
keeps the pipeline moving even when a queue is busy.

The queues' backlog comes from Temporal's ``DescribeTaskQueue`` statistics,
which the server refreshes every few seconds: the policy ramps by a few
batches per decision rather than jumping, so a stale reading cannot overshoot
by much. Pure functions here; the starter does the polling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionPolicy:
    max_in_flight: int = 50
    """Never more batches than this running at once, whatever the queues say."""
    min_in_flight: int = 2
    """Always at least this many (if there is work): a busy queue slows, never stops, a run."""
    target_backlog: int = 4
    """Tasks that may wait in any one activity queue before admission pauses."""
    ramp: int = 2
    """At most this many new batches per decision (statistics lag by seconds)."""
    initial: int = 4
    """Batches started before any statistics have been read."""


def batches_to_admit(
    policy: AdmissionPolicy,
    in_flight: int,
    waiting: int,
    backlog: Mapping[str, int] | None,
) -> int:
    """How many more batches to start now.

    ``backlog`` is the approximate backlog per activity queue, or None when it
    could not be read (then only the floor/initial window and the ceiling apply).
    """
    if waiting <= 0:
        return 0
    ceiling = max(policy.max_in_flight, 1)
    floor = min(max(policy.min_in_flight, 1), ceiling)
    if backlog is None:
        target = max(floor, min(policy.initial, ceiling))
    elif any(count >= policy.target_backlog for count in backlog.values()):
        target = floor
    else:
        target = min(in_flight + max(policy.ramp, 1), ceiling)
    return max(0, min(target - in_flight, waiting))
