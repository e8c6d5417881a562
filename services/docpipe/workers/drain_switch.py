"""The pod's drain annotation, as the worker sees it: "stop polling" and "poll again".

To shrink a pool without cutting any task short, the operator *cordons* the pods
it wants to remove: it sets the annotation ``docpipe.io/drain: "true"`` on each,
waits until their workers report that they stopped polling and finished what
they held (``docpipe_worker_draining`` 1), and only then lowers the replicas, so
the ReplicaSet deletes exactly those idle pods. If load comes back first it
removes the annotation and the pods poll again.

A pod learns its own annotations from a Kubernetes downward API volume
(``metadata.annotations`` projected into a file, WORKER_POD_ANNOTATIONS_FILE).
The kubelet writes it as one ``key="value"`` line per annotation, the value
quoted the way Go's ``%q`` quotes (``\\"``, ``\\\\``, ``\\n``, ``\\u00e9``...), and
replaces the whole file atomically (a symlink swap) within about a minute of a
change. :func:`parse_annotations` reads that format; :class:`DrainSwitch`
re-reads the file every couple of seconds and turns the one annotation into two
asyncio events. A missing or unreadable file means "not draining": a worker
without the volume polls as it always did.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

log = logging.getLogger("docpipe.worker.drain")

DRAIN_ANNOTATION = "docpipe.io/drain"
"""The pod annotation the operator sets to cordon a pod; the value ``"true"`` drains."""
DEFAULT_INTERVAL_S = 2.0
"""How often the file is read again: a tiny file on a tmpfs, so cheap; the kubelet
itself takes up to a minute to project a change, so faster buys nothing."""

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}
_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")


def unquote_go(quoted: str) -> str | None:
    """The string a Go double-quoted literal stands for, or None if it is not one.

    Accepts what Go's ``strconv.Unquote`` accepts for ``"..."``: the escapes
    ``\\a \\b \\f \\n \\r \\t \\v \\\\ \\"``, ``\\xHH`` and ``\\OOO`` (bytes),
    ``\\uHHHH`` and ``\\UHHHHHHHH`` (code points). Bytes that do not form UTF-8
    become U+FFFD, as Python decodes them.
    """
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        return None
    body = quoted[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"' or char == "\n":
            return None  # an unescaped quote ends a Go string early
        if char != "\\":
            out += char.encode("utf-8", "replace")
            i += 1
            continue
        if i + 1 >= len(body):
            return None
        code = body[i + 1]
        if code in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[code].encode()
            i += 2
        elif code in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[code]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX:
                return None
            value = int(digits, 16)
            if code == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                return None  # not a code point UTF-8 can carry: Go refuses it too
            else:
                out += chr(value).encode("utf-8")
            i += 2 + width
        elif code in _OCTAL:
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not set(digits) <= _OCTAL or int(digits, 8) > 0xFF:
                return None
            out.append(int(digits, 8))
            i += 4
        else:
            return None
    return out.decode("utf-8", "replace")


def parse_annotations(text: str) -> dict[str, str]:
    """The annotations of a downward API file: one ``key="value"`` per line.

    Lines that are blank or cannot be read (no ``=``, an empty key, a value that
    is not a well-formed Go-quoted string) are skipped, never an error: one bad
    line must not hide the others. A key given twice keeps its last value.
    """
    annotations = {}
    for line in text.split("\n"):
        key, sep, quoted = line.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        value = unquote_go(quoted.strip())
        if value is not None:
            annotations[key] = value
    return annotations


def drain_requested(annotations: dict[str, str]) -> bool:
    """Whether the annotations cordon this pod: ``docpipe.io/drain`` is ``"true"``."""
    return annotations.get(DRAIN_ANNOTATION, "").strip().lower() == "true"


class DrainSwitch:
    """Watches a downward API annotations file for the drain annotation.

    ``async with DrainSwitch(path):`` reads the file once at once (so a pod that
    starts cordoned never polls), then every ``interval_s`` in a background task,
    until the block ends. :attr:`draining` is the current state;
    :meth:`wait_draining` and :meth:`wait_serving` return when it is (or becomes)
    that. A file that is missing or cannot be read counts as "not draining"; that
    is logged once per spell, and nothing here ever raises out of the loop.
    """

    def __init__(self, path: Path, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self._draining = asyncio.Event()
        self._serving = asyncio.Event()
        self._serving.set()
        self._unreadable = False
        self._task: asyncio.Task[None] | None = None

    @property
    def draining(self) -> bool:
        """Whether the pod is cordoned, as of the last read of the file."""
        return self._draining.is_set()

    async def wait_draining(self) -> None:
        """Return once a drain is requested (at once if it is now)."""
        await self._draining.wait()

    async def wait_serving(self) -> None:
        """Return once no drain is requested (at once if none is now)."""
        await self._serving.wait()

    def read(self) -> bool:
        """Read the file now, update the events, and return whether to drain."""
        self._set(self._read_file())
        return self.draining

    def _read_file(self) -> bool:
        try:
            text = self.path.read_bytes().decode("utf-8", "replace")
        except OSError as err:
            if not self._unreadable:
                self._unreadable = True
                log.warning(
                    "cannot read pod annotations file %s (%s): not draining",
                    self.path,
                    err.strerror or type(err).__name__,
                )
            return False
        if self._unreadable:
            self._unreadable = False
            log.info("pod annotations file %s is readable again", self.path)
        return drain_requested(parse_annotations(text))

    def _set(self, draining: bool) -> None:
        if draining == self.draining:
            return
        if draining:
            self._serving.clear()
            self._draining.set()
        else:
            self._draining.clear()
            self._serving.set()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.read()
            except Exception:  # never let the watch die: the worker would miss a drain
                log.exception("reading pod annotations file %s failed", self.path)

    async def __aenter__(self) -> DrainSwitch:
        self.read()
        self._task = asyncio.create_task(self._watch(), name=f"drain-switch {self.path}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled, not just the watch
