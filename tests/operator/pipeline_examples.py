"""The example DocumentPipelines of deploy/examples/, which the operator tests start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO / "deploy" / "examples"


def example(name: str) -> dict[str, Any]:
    """``deploy/examples/<name>.yaml``, freshly loaded (callers may change it)."""
    return yaml.safe_load((EXAMPLES_DIR / f"{name}.yaml").read_text())
