"""The command line every bench script starts from."""

from __future__ import annotations

import argparse


def bench_parser(doc: str | None, **numbers: int) -> argparse.ArgumentParser:
    """A parser whose ``--help`` is the script's docstring, with one ``--name N``
    integer option per keyword (``batch_size=10``: ``--batch-size``, default 10).
    Options with a help text or of another type the script adds itself."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, default in numbers.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    return parser
