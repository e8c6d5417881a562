"""A client-only install that runs a command needing an extra is told which, in a line."""

from __future__ import annotations

import pytest

from docpipe.client.extras import MissingExtra, missing_extra, require


def test_a_missing_library_names_the_extra_that_brings_it() -> None:
    error = missing_extra("torch.nn", "hybrid search")
    assert str(error) == (
        "hybrid search needs torch, which this install lacks: pip install 'docpipe[gpu]'"
    )
    assert missing_extra("some_unrelated_module") is None


def test_require_lists_every_absent_module_and_each_extra_once() -> None:
    with pytest.raises(MissingExtra) as caught:
        require(["json", "no_such_module_a", "no_such_module_b"], "this", "or not")
    message = str(caught.value)
    assert "no_such_module_a, no_such_module_b" in message and message.endswith("(or not)")
    require(["json", "asyncio"], "nothing missing")  # present: no error
