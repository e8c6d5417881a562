"""`docpipe run`: the embedded default a new user runs first (README's first command).

It must start everything itself from the installed packages (Temporal dev
server, PostgreSQL, Chroma, a local object store, four workers), process the
CSV, print the summary and where the results are, and stop cleanly; data
persists in the data directory, so a second run finds the first one's data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from docpipe.local.devstack import DevStack

pytestmark = pytest.mark.integration

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"


def docpipe_run(csv: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "docpipe", "run", str(csv), "--data-dir", str(data_dir), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )


def test_docpipe_run_processes_a_csv_on_the_embedded_stack_and_stops(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The harbour office publishes tide tables every morning. " * 20)
    (docs / "b.html").write_text(
        "<html><head><title>Bakery</title><style>p{}</style></head>"
        "<body><h1>Bakery</h1><p>Fresh bread is baked before sunrise every day.</p></body></html>"
    )
    csv = tmp_path / "docs.csv"
    # /etc/passwd: a row is data -- the workers read local files only in the CSV's folder.
    csv.write_text(
        "url,title\ndocs/a.txt,Tides\ndocs/b.html,\ndocs/missing.txt,Gone\n/etc/passwd,Users\n"
    )
    data_dir = tmp_path / "data"
    try:
        run_twice(csv, data_dir)
    finally:
        DevStack(
            data_dir, persistent=True
        ).remove_data()  # as root, PostgreSQL's data lives outside tmp_path


def run_twice(csv: Path, data_dir: Path) -> None:
    result = docpipe_run(csv, data_dir)

    output = result.stdout + result.stderr
    assert result.returncode == 1, "documents failed, and run is strict by default\n" + output
    assert "succeeded" in result.stdout and "missing.txt" in result.stdout
    assert "/etc/passwd" in result.stdout and "outside the allowed root" in result.stdout, output
    assert "results" in result.stdout
    assert (data_dir / "postgres").is_dir() and (data_dir / "chroma").is_dir()
    assert list((data_dir / "objects").rglob("vectors.npz")), (
        "vectors were written to the object store"
    )
    leftover = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "every server and worker was stopped"

    again = docpipe_run(csv, data_dir, "--no-strict")
    assert again.returncode == 0, again.stdout + again.stderr
