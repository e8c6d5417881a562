"""Sampling something from a thread while a test's work runs."""

from __future__ import annotations

import threading
from typing import Self


class PeriodicSampler:
    """Calls ``sample()`` every ``interval_s`` from a thread inside its ``with`` block."""

    interval_s = 0.1

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> object:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
