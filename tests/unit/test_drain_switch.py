"""A worker reads its pod's drain annotation from a downward API file.

Specification:
* the file is what the kubelet writes for ``metadata.annotations``: one
  ``key="value"`` per line, the value quoted as Go's ``%q`` quotes it; the parser
  gives back every annotation's exact value (escapes, non-ASCII, ``=`` in values);
* a blank or garbled line is skipped, never an error, and never hides the others;
* ``docpipe.io/drain: "true"`` requests a drain; any other value, or no such
  annotation, does not;
* the switch reads the file when it starts (a pod that starts cordoned never
  polls) and again every interval: a file that appears, changes (also by the
  kubelet's symlink swap) or disappears moves it between draining and serving;
* a missing or unreadable file means "not draining", logged once per spell,
  and the switch keeps watching.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from docpipe.workers.drain_switch import (
    DRAIN_ANNOTATION,
    DrainSwitch,
    drain_requested,
    parse_annotations,
    unquote_go,
)

INTERVAL_S = 0.01
"""The switch's re-read interval in these tests; every wait is bounded by WAIT_S."""
WAIT_S = 5.0

KUBELET_FILE = (
    'docpipe.io/drain="true"\n'
    'kubectl.kubernetes.io/last-applied-configuration="{\\"apiVersion\\":\\"v1\\",'
    '\\"kind\\":\\"Pod\\"}\\n"\n'
    'kubernetes.io/config.seen="2026-05-09T07:35:25.123456789Z"\n'
    'note="caf\u00e9 = \\"bar\\" \\\\ tab\\there"'
)
"""As the kubelet writes it: keys sorted, values %q-quoted, no newline at the end."""


# --- the parser ------------------------------------------------------------------


def test_reads_every_annotation_of_a_kubelet_file() -> None:
    assert parse_annotations(KUBELET_FILE) == {
        "docpipe.io/drain": "true",
        "kubectl.kubernetes.io/last-applied-configuration": ('{"apiVersion":"v1","kind":"Pod"}\n'),
        "kubernetes.io/config.seen": "2026-05-09T07:35:25.123456789Z",
        "note": 'caf\u00e9 = "bar" \\ tab\there',
    }


@pytest.mark.parametrize(
    ("quoted", "value"),
    [
        ('""', ""),
        ('"true"', "true"),
        ('"a\\"b"', 'a"b'),
        ('"back\\\\slash"', "back\\slash"),
        ('"\\a\\b\\f\\n\\r\\t\\v"', "\a\b\f\n\r\t\v"),
        ('"\\x00\\x7f"', "\x00\x7f"),
        ('"\\u00e9\\u2028"', "\u00e9\u2028"),
        ('"\\U0001F600"', "\U0001f600"),
        ('"\\303\\251"', "\u00e9"),  # octal bytes of UTF-8 é
        ('"\\xc3\\xa9"', "\u00e9"),  # hex bytes of UTF-8 é
        ('"\\xff"', "\ufffd"),  # Go quotes a byte that is not UTF-8 so; Python reads U+FFFD
        ('"k=v"', "k=v"),
        ('"日本"', "日本"),
    ],
)
def test_go_quoted_values(quoted: str, value: str) -> None:
    assert unquote_go(quoted) == value


@pytest.mark.parametrize(
    "quoted",
    [
        "true",  # not quoted at all
        '"true',  # not terminated
        'true"',
        '"',
        '"a"b"',  # an unescaped quote inside
        '"bad \\q escape"',
        '"\\\'"',  # Go allows \' only between single quotes
        '"trailing backslash\\"',
        '"\\x4"',
        '"\\xzz"',
        '"\\u12"',
        '"\\ud800"',  # a surrogate is no code point
        '"\\U00110000"',  # past Unicode
        '"\\400"',  # octal past a byte
        '"\\12"',
    ],
)
def test_not_go_quoted(quoted: str) -> None:
    assert unquote_go(quoted) is None


def test_garbled_and_blank_lines_are_skipped_and_hide_nothing() -> None:
    text = "\n".join(
        [
            "",
            "   ",
            "no equals sign here",
            '="no key"',
            "unquoted=true",
            'broken="unterminated',
            'escape="\\q"',
            "\x00\x01\xff binary junk",
            'docpipe.io/drain="true"',
            'after="still read"',
            "",
        ]
    )
    assert parse_annotations(text) == {"docpipe.io/drain": "true", "after": "still read"}


def test_spaces_around_key_and_value_are_tolerated() -> None:
    assert parse_annotations(' docpipe.io/drain = "true" \r') == {"docpipe.io/drain": "true"}


def test_a_key_given_twice_keeps_its_last_value() -> None:
    assert parse_annotations('a="1"\na="2"') == {"a": "2"}


def test_empty_file() -> None:
    assert parse_annotations("") == {}


def go_quote(text: str) -> str:
    """Go's strconv.Quote, near enough: printable characters as they are, the rest
    escaped the ways Go escapes them."""
    named = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in named:
            out.append("\\" + named[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


annotation_keys = st.from_regex(r"\A([a-z0-9.-]{1,20}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
annotation_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@given(st.dictionaries(annotation_keys, annotation_values, max_size=6))
@example({DRAIN_ANNOTATION: "true", "x": 'a\n"b"=c\\'})
def test_every_quoted_file_reads_back_exactly(annotations: dict[str, str]) -> None:
    text = "\n".join(f"{key}={go_quote(value)}" for key, value in sorted(annotations.items()))
    assert parse_annotations(text) == annotations


@pytest.mark.parametrize(
    ("annotations", "drain"),
    [
        ({DRAIN_ANNOTATION: "true"}, True),
        ({DRAIN_ANNOTATION: "True"}, True),
        ({DRAIN_ANNOTATION: "false"}, False),
        ({DRAIN_ANNOTATION: ""}, False),
        ({DRAIN_ANNOTATION: "yes"}, False),
        ({"other.io/drain": "true"}, False),
        ({}, False),
    ],
)
def test_only_drain_true_requests_a_drain(annotations: dict[str, str], drain: bool) -> None:
    assert drain_requested(annotations) is drain


# --- the switch ------------------------------------------------------------------


def write_annotations(path: Path, annotations: dict[str, str]) -> None:
    """Replace the file atomically, as the kubelet does (never a half-written file)."""
    staged = path.with_name(path.name + ".tmp")
    staged.write_text("\n".join(f"{key}={go_quote(value)}" for key, value in annotations.items()))
    os.replace(staged, path)


async def becomes(check, timeout: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"not true after {timeout:g} s"
        await asyncio.sleep(INTERVAL_S / 2)


async def test_a_pod_that_starts_cordoned_is_draining_at_once(tmp_path: Path) -> None:
    path = tmp_path / "annotations"
    write_annotations(path, {DRAIN_ANNOTATION: "true", "other": "x"})
    switch = DrainSwitch(path, interval_s=60)  # no re-read needed: the first read is at start
    async with switch:
        assert switch.draining
        await asyncio.wait_for(switch.wait_draining(), WAIT_S)


async def test_drain_set_then_lifted_then_set_again(tmp_path: Path) -> None:
    path = tmp_path / "annotations"
    write_annotations(path, {"other": "x"})
    async with DrainSwitch(path, interval_s=INTERVAL_S) as switch:
        assert not switch.draining
        await asyncio.wait_for(switch.wait_serving(), WAIT_S)

        write_annotations(path, {DRAIN_ANNOTATION: "true", "other": "x"})
        await asyncio.wait_for(switch.wait_draining(), WAIT_S)
        assert switch.draining

        write_annotations(path, {DRAIN_ANNOTATION: "false", "other": "x"})
        await asyncio.wait_for(switch.wait_serving(), WAIT_S)
        assert not switch.draining

        write_annotations(path, {DRAIN_ANNOTATION: "true"})
        await asyncio.wait_for(switch.wait_draining(), WAIT_S)


async def test_follows_the_kubelets_symlink_swap(tmp_path: Path) -> None:
    """The kubelet's AtomicWriter: <volume>/annotations -> ..data/annotations, and
    ..data -> a timestamped directory that a change replaces."""
    volume = tmp_path / "podinfo"
    volume.mkdir()

    def project(version: int, annotations: dict[str, str]) -> None:
        directory = volume / f"..2026_05_09_07_35_{version:02d}.000"
        directory.mkdir()
        write_annotations(directory / "annotations", annotations)
        link = volume / "..data_tmp"
        link.symlink_to(directory.name)
        os.replace(link, volume / "..data")

    project(1, {"other": "x"})
    (volume / "annotations").symlink_to("..data/annotations")
    async with DrainSwitch(volume / "annotations", interval_s=INTERVAL_S) as switch:
        assert not switch.draining
        project(2, {DRAIN_ANNOTATION: "true", "other": "x"})
        await asyncio.wait_for(switch.wait_draining(), WAIT_S)
        project(3, {"other": "x"})
        await asyncio.wait_for(switch.wait_serving(), WAIT_S)


async def test_a_missing_file_is_not_draining_and_is_watched_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "annotations"
    caplog.set_level(logging.INFO, logger="docpipe.worker.drain")
    async with DrainSwitch(path, interval_s=INTERVAL_S) as switch:
        assert not switch.draining
        await asyncio.sleep(INTERVAL_S * 5)  # several reads of a missing file
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, "a missing file is logged once, not on every read"
        assert str(path) in warnings[0].getMessage()

        write_annotations(path, {DRAIN_ANNOTATION: "true"})  # the file appears
        await asyncio.wait_for(switch.wait_draining(), WAIT_S)
        assert any("readable again" in r.getMessage() for r in caplog.records)

        path.unlink()  # and disappears: not draining, logged once more
        await asyncio.wait_for(switch.wait_serving(), WAIT_S)
        await becomes(lambda: len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2)


async def test_an_unreadable_file_is_not_draining(tmp_path: Path) -> None:
    path = tmp_path / "annotations"
    path.mkdir()  # reading a directory fails even for root, unlike a chmod
    async with DrainSwitch(path, interval_s=INTERVAL_S) as switch:
        assert not switch.draining
        path.rmdir()
        write_annotations(path, {DRAIN_ANNOTATION: "true"})
        await asyncio.wait_for(switch.wait_draining(), WAIT_S)


async def test_a_file_that_is_not_utf8_is_read_as_far_as_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "annotations"
    path.write_bytes(b'junk="\xff\xfe"\n\xc3\x28=\n' + b'docpipe.io/drain="true"')
    async with DrainSwitch(path, interval_s=INTERVAL_S) as switch:
        assert switch.draining


async def test_the_watch_stops_with_the_block(tmp_path: Path) -> None:
    path = tmp_path / "annotations"
    switch = DrainSwitch(path, interval_s=INTERVAL_S)
    async with switch:
        pass
    write_annotations(path, {DRAIN_ANNOTATION: "true"})
    await asyncio.sleep(INTERVAL_S * 5)
    assert not switch.draining
