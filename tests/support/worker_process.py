"""A worker script of the tests run as a process of its own, as a pod runs a worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path


@asynccontextmanager
async def worker_process(
    script: Path, *args: str, env: Mapping[str, str], log_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python SCRIPT ARGS`` with ``env`` over this process's environment and its
    metrics on free ports, writing its output to ``log_path``; killed on the way out if
    it is still running."""
    with log_path.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            *args,
            env={**os.environ, **env, "METRICS_PORT": "0", "SDK_METRICS_PORT": "0"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
