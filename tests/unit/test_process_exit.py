"""A docpipe process ends with its own status and all its output, never finalizing.

(Finalizing next to Temporal's Rust threads can abort a process whose work
succeeded: temporalio/sdk-python#300.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import logging, sys
from docpipe.process_exit import run_then_exit
logging.basicConfig(stream=sys.stderr, level=logging.INFO)

def entry():
    print("summary: 3 succeeded", end="")  # no newline: still flushed
    logging.getLogger("docpipe").info("a log line")
    {action}

run_then_exit(entry)
"""


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("pass", 0),
        ("raise SystemExit(3)", 3),
        ("raise SystemExit(None)", 0),
        ("raise RuntimeError('boom')", 1),
        ("raise KeyboardInterrupt", 130),
    ],
)
def test_the_exit_status_and_every_line_of_output_survive(action: str, code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(action=action)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code
    assert done.stdout == "summary: 3 succeeded"
    assert "a log line" in done.stderr


def test_a_message_exit_is_printed_and_fails() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(action="raise SystemExit('bad input')")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "bad input" in done.stderr
