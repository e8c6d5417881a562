"""One duration grammar: Go-style for the CRD (ms, s, m, h), with days for the CLI."""

from __future__ import annotations

import pytest

from docpipe.durations import duration_seconds, pattern

GO = ("ms", "s", "m", "h")
CLI = ("s", "m", "h", "d")


@pytest.mark.parametrize(
    ("text", "units", "seconds"),
    [
        ("90s", GO, 90.0),
        ("1h30m", GO, 5400.0),
        ("250ms", GO, 0.25),
        (" 5m ", GO, 300.0),
        ("0", GO, 0.0),
        ("7d", CLI, 604800.0),
        ("1.5h", CLI, 5400.0),
    ],
)
def test_durations_are_summed_part_by_part(
    text: str, units: tuple[str, ...], seconds: float
) -> None:
    assert duration_seconds(text, units) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "units"), [("7d", GO), ("250ms", CLI), ("90", GO), ("1h 30m", GO), ("", CLI)]
)
def test_anything_else_is_no_duration(text: str, units: tuple[str, ...]) -> None:
    assert duration_seconds(text, units) is None


def test_the_crd_pattern_is_the_go_grammar() -> None:
    assert pattern(GO) == r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"
