"""Durations as Kubernetes and people write them: "90s", "5m", "1h30m", "7d".

One grammar for the operator's CRD fields (Go-style: ms, s, m, h) and the CLI's
options (s, m, h, d): one or more number-unit parts, or "0".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def pattern(units: Sequence[str]) -> str:
    """The grammar as one anchored regular expression (also a JSON-schema pattern).
    List a unit before any unit it starts with ("ms" before "m")."""
    return rf"^(0|([0-9]+(\.[0-9]+)?({'|'.join(units)}))+)$"


def duration_seconds(text: str, units: Sequence[str]) -> float | None:
    """The seconds ``text`` names in ``units``, or None if it is no such duration."""
    text = text.strip()
    if not re.match(pattern(units), text):
        return None
    parts = re.findall(rf"([0-9]+(?:\.[0-9]+)?)({'|'.join(units)})", text)
    return sum(float(number) * UNIT_SECONDS[unit] for number, unit in parts)
