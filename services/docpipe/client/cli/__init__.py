"""The `docpipe` command.

docpipe start --csv-file F   run a CSV through a running pipeline (workers elsewhere)
docpipe run F                the embedded default: start everything locally, run F, stop
docpipe worker KIND          run one worker (workflow, cpu, gpu, io)
docpipe status               backlog, age, rates and live pollers of every queue
docpipe search QUERY         the stored chunks that best answer QUERY (vector, text, hybrid)
docpipe show ID-OR-SOURCE    everything recorded about one document
docpipe serve                the same read path as an HTTP API
docpipe codec-server         decrypt payloads for the Temporal UI and CLI (remote codec)
docpipe failures / redrive   the dead letter: list failed documents, run them again
docpipe ingest / watch       run a CSV server-side (IngestCsvWorkflow), follow it
docpipe gc                   delete batch bundles no document record points to

While documents run, nothing waits in silence: `docpipe run` restarts a local
worker that dies (and stops the run, naming the worker and its log, if it
keeps crashing); `docpipe start` and `docpipe redrive`, whose workers run
elsewhere, warn when a queue has work waiting and no worker polling it.

The root group and shared options are in ``root``; each command group is a
module (``running``, ``status``, ``read``, ``servers``, ``ingest``, ``storage``),
and the loop below registers the commands in the order ``docpipe --help`` lists
them.
"""

from __future__ import annotations

from docpipe.client.cli import ingest, read, running, servers, status, storage
from docpipe.client.cli.root import app, err_console
from docpipe.config import ConfigError
from docpipe.process_exit import run_then_exit

# Each command is named after its function (``codec_server`` is ``codec-server``).
for _command in (
    running.start, running.run, status.failures, status.redrive, read.search, read.show,
    read.serve, servers.worker, status.status, servers.codec_server, ingest.ingest, ingest.watch,
    storage.gc,
):  # fmt: skip
    app.command()(_command)


def main() -> None:  # pragma: no cover - console script entry
    """``docpipe``: the CLI, ended without the Temporal client's crash at exit."""
    run_then_exit(_app_reporting_unreachable)


def _app_reporting_unreachable() -> None:
    """The app; a backend that is down is one line on stderr and exit status 3, a
    configuration error found late (when connecting) one line and status 2."""
    from docpipe.client.extras import MissingExtra, missing_extra
    from docpipe.client.reachability import EXIT_UNREACHABLE, ServiceUnreachable

    try:
        app(prog_name="docpipe")
    except ServiceUnreachable as err:
        err_console.print(f"[red]docpipe: {err}[/red]", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_UNREACHABLE) from None
    except (MissingExtra, ModuleNotFoundError) as err:
        # A client-only install ran a command that needs an extra: say which.
        missing = err if isinstance(err, MissingExtra) else missing_extra(err.name)
        if missing is None:
            raise
        err_console.print(
            f"docpipe: {missing}", style="red", markup=False, highlight=False, soft_wrap=True
        )
        raise SystemExit(2) from None
    except ConfigError as err:  # e.g. a Temporal profile named but not found
        err_console.print(f"[red]docpipe: {err}[/red]", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


__all__ = ["app", "main"]
