"""CPU time and memory of a worker process and of its children (the CPU worker's pool).

prometheus-client's own ``process_*`` metrics see the main process only, but
the CPU worker does its work in pool processes. This collector reads the
process tree with psutil at scrape time:

* ``docpipe_process_cpu_seconds_total{process="main"|"children"}``: a counter;
  ``rate()`` of it is the number of cores in use. Children that exit (a pool
  process replaced after a crash) keep their CPU time in the total, so the
  counter never goes down.
* ``docpipe_process_resident_memory_bytes{process=...}``: RSS, children summed.
* ``docpipe_process_cpu_cores``: the cores this process may use (CPU affinity,
  lowered by a cgroup v2 CPU quota, as in a container with a CPU limit): the
  denominator of a utilisation ratio.

Without psutil (it comes with the cpu extra) nothing is registered: the
series are absent rather than wrong.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from docpipe.metrics import worker_kind

log = logging.getLogger(__name__)

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores(cpu_max: Path = _CGROUP_CPU_MAX) -> float:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 quota."""
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = float(os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cores


class ProcessTreeCollector(Collector):
    """Scrape-time CPU and memory of this process and its descendants."""

    def __init__(self, pid: int | None = None) -> None:
        import psutil

        self._psutil = psutil
        self._main = psutil.Process(pid)
        self._children: dict[int, Any] = {}
        self._last_cpu: dict[int, float] = {}
        self._exited_cpu = 0.0
        self._lock = threading.Lock()
        self._cores = available_cores()

    def _child_usage(self) -> tuple[float, int]:
        """(CPU seconds of every child ever seen, RSS of the live ones)."""
        psutil = self._psutil
        try:
            live = self._main.children(recursive=True)
        except psutil.Error:
            live = []
        seen: set[int] = set()
        rss = 0
        for proc in live:
            # Keep one Process per pid: psutil checks it is still the same process.
            proc = self._children.setdefault(proc.pid, proc)
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    memory = proc.memory_info().rss
            except psutil.Error:
                continue
            seen.add(proc.pid)
            self._last_cpu[proc.pid] = times.user + times.system
            rss += memory
        for pid in list(self._children):
            if pid not in seen:  # exited: its last reading stays in the total
                self._exited_cpu += self._last_cpu.pop(pid, 0.0)
                del self._children[pid]
        return self._exited_cpu + sum(self._last_cpu.values()), rss

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        worker = worker_kind()
        cpu = CounterMetricFamily(
            "docpipe_process_cpu_seconds",
            "CPU time (user + system) of the worker's main process and of its children.",
            labels=["worker", "process"],
        )
        rss = GaugeMetricFamily(
            "docpipe_process_resident_memory_bytes",
            "Resident memory of the worker's main process and of its live children (summed).",
            labels=["worker", "process"],
        )
        with self._lock:
            try:
                with self._main.oneshot():
                    times = self._main.cpu_times()
                    main_rss = self._main.memory_info().rss
            except self._psutil.Error:  # pragma: no cover - our own process
                return
            children_cpu, children_rss = self._child_usage()
        cpu.add_metric([worker, "main"], times.user + times.system)
        cpu.add_metric([worker, "children"], children_cpu)
        rss.add_metric([worker, "main"], main_rss)
        rss.add_metric([worker, "children"], children_rss)
        yield cpu
        yield rss
        cores = GaugeMetricFamily(
            "docpipe_process_cpu_cores",
            "Cores the worker may use (CPU affinity, capped by a cgroup CPU quota).",
            labels=["worker"],
        )
        cores.add_metric([worker], self._cores)
        yield cores


_registered: ProcessTreeCollector | None = None


def register_process_collector(registry: CollectorRegistry = REGISTRY) -> bool:
    """Register the collector once per process; False if psutil is not installed."""
    global _registered
    if _registered is not None:
        return True
    try:
        collector = ProcessTreeCollector()
    except ImportError:
        log.info("psutil is not installed: no docpipe_process_* metrics")
        return False
    registry.register(collector)
    _registered = collector
    return True
