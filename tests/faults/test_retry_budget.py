"""Every step's retry policy outlasts a server outage.

What reaches Temporal's retry is infrastructure trouble (bad input is
returned as a per-document failure), and CPU and GPU steps read and write
the object store like the IO steps do. So no step may give up inside an
outage that the IO steps survive: a restart of S3, PostgreSQL or Chroma.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.common import RetryPolicy

from docpipe import steps


@pytest.mark.parametrize("name", ["IO_RETRY", "CPU_RETRY", "GPU_RETRY"])
def test_each_step_outlasts_a_server_outage(name: str) -> None:
    policy: RetryPolicy = getattr(steps, name)
    assert steps.retry_window_s(policy) >= steps.OUTAGE_TOLERANCE_S
    assert set(steps.NON_RETRYABLE) <= set(policy.non_retryable_error_types or [])


def test_the_retry_window_adds_the_capped_backoff_intervals() -> None:
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=5),
        maximum_attempts=5,
    )
    assert steps.retry_window_s(policy) == 1 + 2 + 4 + 5
