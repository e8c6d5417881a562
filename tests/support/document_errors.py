"""The check most extraction tests make: this input fails, at this stage, saying why."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from docpipe.errors import DocumentError
from docpipe.models import Stage


@contextmanager
def fails_at(stage: Stage, reason_start: str) -> Iterator[None]:
    """The block raises a DocumentError at ``stage`` whose reason starts with ``reason_start``."""
    with pytest.raises(DocumentError) as err:
        yield
    assert err.value.stage == stage
    assert err.value.reason.startswith(reason_start), err.value.reason
