"""`docpipe gc`: delete the batch bundles no document record points to.

The policy is ``docpipe.storage.bundle_gc``; this module reads the options,
opens the stores and prints what was deleted and what was kept, and why.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.filesize import decimal
from rich.table import Table

from docpipe import durations
from docpipe.client.cli.root import (
    Output,
    OutputFormat,
    cli_settings,
    console,
    err_console,
    print_json,
)
from docpipe.config import Settings

if TYPE_CHECKING:
    from docpipe.storage.bundle_gc import Bundle, CollectionResult
    from docpipe.storage.objects import ObjectStore

_UNITS = ("s", "m", "h", "d")
_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def _duration_s(value: str | float) -> float:
    """``24h``, ``7d``, ``90m``, ``1h30m``; a plain number is seconds."""
    if isinstance(value, int | float):  # the default
        return float(value)
    text = value.strip().lower()
    if _SECONDS.fullmatch(text):
        return float(text)
    seconds = durations.duration_seconds(text, _UNITS)
    if seconds is None:
        raise typer.BadParameter(f"{text!r} is not a duration such as 24h, 7d, 90m or 0")
    return seconds


def _duration_text(seconds: float) -> str:
    """The inverse, for output: 86400 -> ``24h``, 604800 -> ``7d``, 5400 -> ``90m``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0 and (unit != "d" or seconds != size):
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


OlderThan = Annotated[
    float,
    typer.Option(
        "--older-than",
        parser=_duration_s,
        metavar="DURATION",
        show_default="24h",
        help="Only bundles whose newest object is at least this old (24h, 7d, 90m): a "
        "younger one may belong to a batch still running, whose rows come at its end",
    ),
]


def gc(
    older_than: OlderThan = 24 * 3600.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be deleted, delete nothing")
    ] = False,
    output: Output = OutputFormat.table,
) -> None:
    """Delete batch bundles no document record points to.

    Chunks and vectors travel in one bundle per batch (batches/<id>/ in the
    object store); a document that runs again moves to a new bundle. A bundle
    is kept while any document row points into it or any object in it is
    younger than --older-than. Nothing outside batches/ is touched."""
    result = asyncio.run(_collect(cli_settings(), older_than, dry_run))
    if output is OutputFormat.json:
        print_json(_as_json(result, older_than))
    else:
        _print_result(result, older_than)


async def _collect(settings: Settings, min_age_s: float, dry_run: bool) -> CollectionResult:
    from psycopg.errors import UndefinedTable

    from docpipe.client.reachability import open_metadata
    from docpipe.storage.bundle_gc import collect_garbage

    async with open_metadata(settings) as metadata, _object_store(settings) as store:
        try:
            return await collect_garbage(store, metadata, min_age_s=min_age_s, dry_run=dry_run)
        except UndefinedTable:
            # Not "no references, delete everything": a wrong METADATA_DB_NAME would be.
            err_console.print(
                f"[red]PostgreSQL database {settings.metadata_db_name!r} has no documents "
                "table: is it the pipeline's database? Nothing deleted.[/red]"
            )
            raise typer.Exit(2) from None


@asynccontextmanager
async def _object_store(settings: Settings) -> AsyncIterator[ObjectStore]:
    """The object store, its first call bounded: an unreachable store is exit status 3
    within seconds; a missing bucket or refused credentials, one line and status 2."""
    from docpipe.client.reachability import CONNECT_TIMEOUT_S, ServiceUnreachable
    from docpipe.storage.bundle_gc import BUNDLES
    from docpipe.storage.objects import open_object_store

    where = f"the object store at {settings.s3_endpoint} (bucket {settings.s3_bucket})"
    try:
        async with open_object_store(settings) as store:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await store.exists(BUNDLES)
            yield store
    except TimeoutError:
        raise ServiceUnreachable(
            f"cannot reach {where}: no answer within {CONNECT_TIMEOUT_S:g} s"
        ) from None
    except Exception as err:
        if not type(err).__module__.startswith("botocore"):
            raise
        if "Connect" in type(err).__name__:
            raise ServiceUnreachable(f"cannot reach {where}: {err}") from None
        err_console.print(f"[red]{where}: {err}[/red]", highlight=False)
        raise typer.Exit(2) from None


def _entry(bundle: Bundle) -> dict[str, Any]:
    return {
        "bundle": bundle.prefix,
        "objects": len(bundle.keys),
        "bytes": bundle.size_bytes,
        "last_modified": datetime.fromtimestamp(bundle.newest, UTC).isoformat(),
        "keys": list(bundle.keys),
    }


def _as_json(result: CollectionResult, older_than_s: float) -> dict[str, Any]:
    plan = result.plan
    return {
        "dry_run": result.dry_run,
        "older_than_s": older_than_s,
        "deleted": [_entry(b) for b in plan.delete],
        "deleted_objects": result.deleted_objects,
        "deleted_bytes": result.deleted_bytes,
        "kept_referenced": [_entry(b) for b in plan.referenced],
        "kept_young": [_entry(b) for b in plan.young],
    }


def _print_result(result: CollectionResult, older_than_s: float) -> None:
    plan = result.plan
    verb = "would delete" if result.dry_run else "deleted"
    title = (
        f"{verb} {len(plan.delete)} bundles, {result.deleted_objects} objects, "
        f"{decimal(result.deleted_bytes)}"
        + (" (dry run: nothing deleted)" if result.dry_run else "")
    )
    if plan.delete:
        table = Table(title=title)
        for column in ("bundle", "objects", "size", "last written"):
            table.add_column(
                column, overflow="fold", justify="left" if column == "bundle" else "right"
            )
        for b in plan.delete:
            written = datetime.fromtimestamp(b.newest, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            table.add_row(b.prefix, str(len(b.keys)), decimal(b.size_bytes), written)
        console.print(table)
    else:
        console.print(f"{verb} nothing")
    console.print(
        f"kept {len(plan.referenced)} bundles a document record points to, "
        f"{len(plan.young)} younger than {_duration_text(older_than_s)}"
    )
