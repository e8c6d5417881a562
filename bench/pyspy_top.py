"""Summarise a ``py-spy record --format raw`` profile: where the CPU samples went.

py-spy samples only threads that are running (not waiting), so the counts are
on-CPU time. Printed, each as a share of all samples:

- threads          samples per thread (``--threads`` recordings name them)
- self             leaf frames: the functions the CPU was actually in
- package          each sample charged to the nearest frame outside the
                   standard library (``temporalio``, ``torch``, ``docpipe.x``...):
                   who asked for the work, when the leaf is stdlib (json, asyncio)
- inclusive        non-stdlib frames anywhere on the stack (a function and
                   everything it called), e.g. docpipe's activities

Usage: python bench/pyspy_top.py PROFILE.txt [--top 15]
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from bench_args import bench_parser

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_SITE = re.compile(r".*/(?:site|dist)-packages/")
_STDLIB = re.compile(r".*/lib/python3\.\d+/")


def _short(path: str) -> str:
    """``.../site-packages/temporalio/worker/_activity.py`` -> ``temporalio/worker/_activity.py``."""
    path = _SITE.sub("", path)
    path = re.sub(r".*/services/", "", path)
    return _STDLIB.sub("", path)


def _is_stdlib(path: str) -> bool:
    """py-spy writes paths relative to sys.path: ``asyncio/events.py``, ``json/encoder.py``."""
    if path.startswith("<") or _STDLIB.match(path):
        return True
    if _SITE.match(path) or "/services/" in path:
        return False
    top = path.split("/", 1)[0].removesuffix(".py")
    return top in sys.stdlib_module_names


def _package(path: str) -> str:
    short = _short(path)
    parts = short.split("/")
    if parts[0] == "docpipe" and len(parts) > 2:
        return "/".join(parts[:3]).removesuffix(".py")  # docpipe/activities/gpu
    return parts[0].removesuffix(".py")


_PROCESSES = re.compile(r'^((?:process \d+:"[^"]*";)+)')


def parse(path: Path) -> list[tuple[str, list[tuple[str, str]], int]]:
    """(thread, frames root-first as (function, file), samples) per line.

    ``--subprocesses`` recordings start each line with the process chain
    (``process N:"cmdline";`` per level; cmdlines may hold ``;``): a line two
    levels deep is a child process, e.g. the CPU worker's pool.
    """
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        body, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        child = ""
        chain = _PROCESSES.match(body)
        if chain:
            body = body[chain.end() :]
            if chain.group(1).count("process ") > 1:
                child = "child process: "
        parts = body.split(";")
        thread = ""
        if parts and parts[0].startswith("thread "):
            thread = parts.pop(0)
        frames = []
        for part in parts:
            match = _FRAME.match(part)
            frames.append((match["func"], match["file"]) if match else (part, ""))
        stacks.append((child + thread, frames, int(count)))
    return stacks


def summarise(path: Path, top: int = 15) -> str:
    stacks = parse(path)
    total = sum(count for _, _, count in stacks)
    if not total:
        return f"{path}: no samples"
    threads: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for thread, frames, count in stacks:
        threads[re.sub(r"thread \((?:0x[0-9a-f]+|\d+)\):?", "thread", thread).strip() or "?"] += (
            count
        )
        if not frames:
            continue
        func, file = frames[-1]
        self_time[f"{_short(file)}:{func}"] += count
        owner = next((f for _, f in reversed(frames) if f and not _is_stdlib(f)), file)
        package[_package(owner) if owner else "?"] += count
        for name in {f"{_short(f)}:{fn}" for fn, f in frames if f and not _is_stdlib(f)}:
            inclusive[name] += count

    def block(title: str, counter: Counter[str]) -> list[str]:
        lines = [f"  {title}"]
        for name, count in counter.most_common(top):
            lines.append(f"    {100 * count / total:5.1f}%  {name}")
        return lines

    out = [f"{path.name}: {total} on-CPU samples"]
    out += block("threads", threads)
    out += block("self (leaf function)", self_time)
    out += block("package (nearest non-stdlib frame)", package)
    out += block("inclusive (on the stack)", inclusive)
    return "\n".join(out)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("profiles", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for profile in args.profiles:
        print(summarise(profile, args.top))


if __name__ == "__main__":
    main()
