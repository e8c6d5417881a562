"""Ending a process that used the Temporal client, without the crash at exit.

Temporal's Rust core runs tokio threads that can still touch the GIL while
CPython finalizes; the process then aborts with "Fatal Python error:
PyGILState_Release: thread state ... must be current when releasing"
(temporalio/sdk-python#300, open) -- after its work succeeded, turning exit
code 0 into 134. Short-lived clients (the CLI) and stopped workers therefore
flush what they owe the world (logs, stdout, stderr) and leave with
``os._exit``, skipping a finalization that has nothing left to do.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn


def exit_without_finalizing(code: int) -> NoReturn:
    """Flush logs and standard streams, then end the process with ``code``."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to say
            pass
    os._exit(code)


def run_then_exit(entry: Callable[[], object]) -> NoReturn:
    """Run a console entry point and exit with its status (SystemExit included)."""
    try:
        entry()
    except SystemExit as stop:
        code = stop.code
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    else:
        code = 0
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    exit_without_finalizing(code)
