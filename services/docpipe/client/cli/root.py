"""The `docpipe` root group and what its commands share.

The app and its callback (``--version``, the exit statuses), the consoles,
the options several commands take (``-o``, ``--address``/``--namespace``, the
batch options), settings from the environment and flags, and reading a CSV.
The commands themselves live in the modules next to this one; ``__init__``
registers them in the order ``docpipe --help`` lists them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from docpipe.config import ConfigError, Settings, load_settings
from docpipe.csv_input import CsvFormatError, parse_documents_csv
from docpipe.models import DocumentRef

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
console = Console()
err_console = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


Output = Annotated[
    OutputFormat,
    typer.Option(
        "--output", "-o", help="table for people, json for programs (same data, on stdout)"
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Temporal frontend host:port [default: TEMPORAL_ADDRESS, else localhost:7233]",
        show_default=False,
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Temporal namespace [default: TEMPORAL_NAMESPACE, else default]",
        show_default=False,
    ),
]

# -- the options of the commands that start batches (start, run, redrive, ingest) --

CsvArg = Annotated[
    Path, typer.Option("--csv-file", "-f", help="CSV of documents (see testdata/README.md)")
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=1000,
        help="Documents per workflow and per activity call [default: from the CSV's size, "
        "10 to 50]",
        show_default=False,
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        min=1,
        help="Seconds one step of a batch may run before it counts as stuck and is retried "
        "(plus an allowance per chunk, page and MB); time waiting in a queue never counts",
    ),
]
Deadline = Annotated[
    float | None,
    typer.Option(
        min=1,
        help="Optional: seconds a batch may take end to end, queue waits included, before "
        "its unfinished documents fail with stage 'timeout' (off by default)",
    ),
]
MaxInFlight = Annotated[
    int,
    typer.Option(
        min=1, help="At most this many batches at once (fewer while the workers' queues are busy)"
    ),
]
Strict = Annotated[bool, typer.Option(help="Exit non-zero if any document failed")]
Summarize = Annotated[bool, typer.Option(help="Also write a summary of each document")]
WebhookUrl = Annotated[
    str, typer.Option(help="POST each document's result here (signed with WEBHOOK_SECRET)")
]


@dataclass(frozen=True)
class BatchOptions:
    """How a command's batches run (--batch-size, --timeout, --deadline,
    --max-in-flight, --webhook-url, --summarize), and whether a failed document
    fails the command (--strict)."""

    batch_size: int | None
    timeout: float
    max_in_flight: int
    deadline: float | None = None
    webhook_url: str = ""
    summarize: bool = False
    strict: bool = True


def batch_options(
    *,
    timeout: float = 120.0,
    max_in_flight: int = 50,
    max_in_flight_option: Any = MaxInFlight,
    webhook: bool = True,
    summarize: bool = True,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the batch options where its ``batch: BatchOptions`` parameter
    stands: --batch-size, --timeout, --deadline, --max-in-flight and --strict, then
    --webhook-url and --summarize unless left out; the command is called with them
    gathered in one :class:`BatchOptions`. The defaults are the command's own."""
    group = [
        ("batch_size", BatchSize, None),
        ("timeout", Timeout, timeout),
        ("deadline", Deadline, None),
        ("max_in_flight", max_in_flight_option, max_in_flight),
        ("strict", Strict, True),
    ]
    if webhook:
        group.append(("webhook_url", WebhookUrl, ""))
    if summarize:
        group.append(("summarize", Summarize, False))
    names = [name for name, _, _ in group]
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
        for name, kind, default in group
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        params = list(signature.parameters.values())
        at = [p.name for p in params].index("batch")
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
        parameters = keyword[:at] + options + keyword[at + 1 :]

        @functools.wraps(command)
        def with_batch_options(**kwargs: Any) -> None:
            batch = BatchOptions(**{name: kwargs.pop(name) for name in names})
            command(batch=batch, **kwargs)

        with_batch_options.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        with_batch_options.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_batch_options

    return decorate


StalledAfter = Annotated[
    float,
    typer.Option(
        min=0,
        help="Warn when a task queue has had work waiting and no live worker polling it for "
        "this many seconds (is a worker type not running?); 0: don't watch",
    ),
]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"docpipe {version('docpipe')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """docpipe: a document pipeline on Temporal, split by the resource each step needs.

    Exit status: 0 done; 1 some documents failed (or nothing found); 2 bad usage or
    configuration; 3 a service (Temporal, PostgreSQL, Chroma) could not be reached.
    """


def cli_settings(address: str | None = None, namespace: str | None = None) -> Settings:
    """Settings from the environment, ``--address``/``--namespace`` on top; a bad
    setting is one red line and exit status 2."""
    overrides: dict[str, object] = {}
    if address:
        overrides["temporal_host"] = address
    if namespace:
        overrides["temporal_namespace"] = namespace
    try:
        settings = load_settings(**overrides)
    except ConfigError as err:
        err_console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    if "log_level" in settings.model_fields_set:
        # The CLI's own output is its progress and summary: logs only when LOG_LEVEL asks.
        from docpipe.workers.common import configure_logging

        configure_logging(settings.log_level)
    return settings


def read_csv(path: Path) -> list[DocumentRef]:
    """The CSV's documents; an unreadable or malformed file is exit status 2."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        return parse_documents_csv(text, base_dir=path.resolve().parent, origin=str(path.resolve()))
    except OSError as err:
        err_console.print(f"[red]cannot read {path}: {err.strerror}[/red]")
        raise typer.Exit(2) from None
    except CsvFormatError as err:
        err_console.print(f"[red]{path}: {err}[/red]")
        raise typer.Exit(2) from None


def screen_for(output: OutputFormat) -> Console:
    """Where progress and notes go: stderr when stdout carries JSON."""
    return err_console if output is OutputFormat.json else console


def print_json(value: object) -> None:
    """JSON on stdout, nothing else there: progress and warnings go to stderr."""
    from docpipe.retrieval.render import json_text

    print(json_text(value), flush=True)


def warn(line: str) -> None:
    """A supervisor or queue-watch line, in yellow (above the progress bar while
    one is live); printed as is: a log tail may hold text that looks like markup."""
    console.print(line, style="yellow", markup=False, highlight=False)
