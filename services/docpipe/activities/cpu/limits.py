"""What one document may cost a pool process, and why a process that died, died.

Caps inside the parsers (pages, part sizes, characters) stop the bombs we
know; these limits stop the ones we do not, whatever the format and whichever
library does the work. They are kernel limits on the pool process, so they
hold inside C and C++ code (PDFium inflating a stream, a tokenizer) where no
Python check runs:

* memory: ``RLIMIT_AS``, the process's address space. An allocation past it
  fails: Python raises :class:`MemoryError`, PDFium and Rust code abort the
  process. Address space rather than resident memory, because it is the only
  memory limit a process can set on itself that the kernel enforces at
  allocation time; it counts reserved as well as touched pages, so the limit
  is set from what a warm pool process reserves (see docs/reliability.md).
* CPU time: ``RLIMIT_CPU``, raised before every task to the CPU time used so
  far plus the budget, so it bounds each document, not the process's life.
  Past it the kernel sends SIGXCPU, which ends the process.

A process that died is replaced by the pool; :func:`death_reason` turns its
exit code into the document's failure reason.
"""

from __future__ import annotations

import math
import resource
import signal
from dataclasses import dataclass

__all__ = [
    "CPU_REASON",
    "MEMORY_REASON",
    "ProcessLimits",
    "apply_memory_limit",
    "death_reason",
    "memory_error_reason",
    "start_cpu_budget",
]

MEMORY_REASON = "exceeds memory limit while extracting"
CPU_REASON = "exceeds CPU time limit while extracting"

# How a process dies when an allocation fails under RLIMIT_AS: PDFium and Rust
# abort (SIGABRT, or a trap), C code that does not check dereferences NULL
# (SIGSEGV, SIGBUS); the kernel's OOM killer sends SIGKILL.
_OUT_OF_MEMORY_SIGNALS = frozenset(
    {signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGKILL, signal.SIGTRAP}
)


@dataclass(frozen=True)
class ProcessLimits:
    memory_mb: int = 1024
    """Address space of one pool process, in MiB; 0: unlimited."""
    cpu_seconds: int = 300
    """CPU time one document may use, in seconds; 0: unlimited."""


def apply_memory_limit(limits: ProcessLimits) -> None:
    """Cap this process's address space, and write no core file when it dies."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.memory_mb > 0:
        size = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))


def start_cpu_budget(limits: ProcessLimits) -> None:
    """Allow this process ``cpu_seconds`` more CPU time from now.

    Only the soft limit moves: an unprivileged process may raise it again for
    the next task, which it could not do with the hard limit.
    """
    if limits.cpu_seconds <= 0:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + limits.cpu_seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def death_reason(exitcode: int | None, limits: ProcessLimits) -> str:
    """Why the pool process working on a document ended, for the document's record.

    A negative exit code is the signal that ended it (multiprocessing's convention).
    """
    if exitcode is not None and exitcode < 0:
        try:
            sig = signal.Signals(-exitcode)
        except ValueError:
            return f"the process extracting it died (signal {-exitcode})"
        if sig == signal.SIGXCPU:
            return f"{CPU_REASON} ({limits.cpu_seconds} s of CPU time)"
        if sig in _OUT_OF_MEMORY_SIGNALS and limits.memory_mb > 0:
            return (
                f"{MEMORY_REASON} (the process extracting it was ended by {sig.name} "
                f"at its {limits.memory_mb} MB limit)"
            )
        return f"the process extracting it died ({sig.name})"
    return f"the process extracting it exited unexpectedly (exit code {exitcode})"


def memory_error_reason(limits: ProcessLimits) -> str:
    """The reason for a :class:`MemoryError` raised in Python code under the limit."""
    return f"{MEMORY_REASON} ({limits.memory_mb} MB)"
