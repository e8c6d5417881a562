"""Hypothesis strategies for Temporal's queue statistics, shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from docpipe_operator.scaling import QueueSignal


def queue_signals(
    max_backlog: int, max_age_s: float, max_rate: float
) -> st.SearchStrategy[QueueSignal]:
    """Any DescribeTaskQueue reading within the bounds (rates in tasks per second)."""
    return st.builds(
        QueueSignal,
        backlog_count=st.integers(0, max_backlog),
        backlog_age_s=st.floats(0, max_age_s),
        add_rate=st.floats(0, max_rate),
        dispatch_rate=st.floats(0, max_rate),
    )
