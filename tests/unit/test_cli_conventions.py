"""The CLI behaves like the tools its users already know (temporal, kubectl, helm).

Every command's help fits 80 columns; every command that prints data offers
``-o table|json``; every command that talks to Temporal takes ``--address`` and
``--namespace``; ``--version`` and shell completion exist. Checked on the real
click command tree, so a new command cannot forget them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from docpipe.client.cli import app

COMMAND = typer.main.get_command(app)
NAMES = sorted(COMMAND.commands)  # type: ignore[attr-defined]

PRINTS_DATA = {
    "start",
    "run",
    "status",
    "failures",
    "redrive",
    "search",
    "show",
    "ingest",
    "watch",
    "gc",
}
TALKS_TO_TEMPORAL = {"start", "status", "redrive", "ingest", "watch"}


def options_of(name: str) -> set[str]:
    return {opt for param in COMMAND.commands[name].params for opt in param.opts}  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["", *NAMES])
def test_help_fits_80_columns(name: str) -> None:
    args = [name, "--help"] if name else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    too_long = [line for line in result.output.splitlines() if len(line) > 80]
    assert not too_long, too_long


def test_the_command_list_has_a_one_line_summary_for_each_command() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=80)
    listed = result.output.split("Commands:")[1]
    for name in NAMES:
        line = next(line for line in listed.splitlines() if line.strip().startswith(name))
        assert not line.rstrip().endswith("..."), f"{name}: summary is cut: {line!r}"


@pytest.mark.parametrize("name", sorted(PRINTS_DATA))
def test_commands_that_print_data_offer_json(name: str) -> None:
    assert {"-o", "--output"} <= options_of(name)


@pytest.mark.parametrize("name", sorted(TALKS_TO_TEMPORAL))
def test_commands_that_talk_to_temporal_take_address_and_namespace(name: str) -> None:
    assert {"--address", "--namespace"} <= options_of(name)


def test_redrive_has_a_dry_run() -> None:
    assert "--dry-run" in options_of("redrive")


def test_version_and_completion() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"docpipe {version('docpipe')}"
    assert {"--install-completion", "--show-completion"} <= {
        opt for param in COMMAND.params for opt in param.opts
    }


def test_the_exit_codes_are_documented_in_the_help() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=80)
    assert "3 a service" in " ".join(result.output.split())


def test_a_bad_search_is_a_usage_error_before_any_connection() -> None:
    # No server is running for this test: exit 2 proves nothing was contacted.
    result = subprocess.run(
        [sys.executable, "-m", "docpipe", "search", "   "],
        capture_output=True,
        text=True,
        env={**os.environ, "METADATA_DB_PORT": "1"},
        timeout=60,
    )
    assert result.returncode == 2 and "the query is empty" in result.stderr
