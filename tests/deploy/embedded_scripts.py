"""The Python one-liners our images and chart embed (a Dockerfile's HEALTHCHECK, the
``helm test`` pod), run here as their container runs them."""

from __future__ import annotations

import subprocess
import sys


def run_embedded(
    script: str, env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -c script`` with nothing but ``env`` in its environment, output captured."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
