"""How search results and document records look: a table for people, JSON for programs.

The JSON is the same data as the table, complete and unabridged (the table
shortens chunk text to fit a terminal), so ``-o json | jq`` never needs a
second query.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from docpipe.retrieval.searcher import SearchHit

SNIPPET_CHARS = 240


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses, datetimes and decimals made JSON-native."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def json_text(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False, indent=2)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def hits_table(query: str, mode: str, hits: list[SearchHit]) -> Table:
    table = Table(title=f"{len(hits)} results for {query!r} ({mode})", expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("document", overflow="fold", ratio=1)
    table.add_column("text", overflow="fold", ratio=3)
    for number, hit in enumerate(hits, start=1):
        document = Text(hit.title or "(untitled)", style="bold")
        document.append(f"\n{hit.source}\n{hit.document_id} #{hit.chunk_index}", style="dim")
        table.add_row(str(number), f"{hit.score:.4f}", document, snippet(hit.text))
    return table


def record_view(sections: list[tuple[str, list[tuple[str, Any]]]]) -> RenderableType:
    parts: list[RenderableType] = []
    for title, fields in sections:
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        for name, value in fields:
            shown = (
                value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False)
            )
            table.add_row(name, shown)
        parts.append(table)
    return Group(*parts)
