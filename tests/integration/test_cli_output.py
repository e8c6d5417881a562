"""``-o json`` prints the same data as the table, parseable, and nothing else on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def docpipe(devstack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docpipe", *args],
        env={**os.environ, **devstack.env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_as_json_lists_every_queue_with_its_figures(devstack, settings) -> None:
    result = docpipe(devstack, "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    queues = {row["queue"] for row in rows}
    assert {settings.cpu_task_queue, settings.gpu_task_queue, settings.io_task_queue} <= queues
    assert {"backlog_count", "backlog_age_s", "live_pollers"} <= set(rows[0])
    table = docpipe(devstack, "status")
    for queue in queues:
        assert queue in table.stdout


def test_status_takes_the_address_and_namespace_as_flags(devstack, settings) -> None:
    env_free = {k: v for k, v in devstack.env.items() if k != "TEMPORAL_HOST"}
    result = subprocess.run(
        [sys.executable, "-m", "docpipe", "status", "--address", settings.temporal_host,
         "--namespace", settings.temporal_namespace, "-o", "json"],
        env={**os.environ, **env_free, "TEMPORAL_HOST": "127.0.0.1:1"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)


def test_failures_and_a_redrive_dry_run_as_json(devstack) -> None:
    failures = docpipe(devstack, "failures", "--limit", "5", "-o", "json")
    assert failures.returncode == 0, failures.stderr
    rows = json.loads(failures.stdout)
    assert isinstance(rows, list) and len(rows) <= 5
    plan = docpipe(devstack, "redrive", "--dry-run", "--limit", "5", "-o", "json")
    assert plan.returncode == 0, plan.stderr
    body = json.loads(plan.stdout)
    assert set(body) == {"would_redrive", "not_redrivable"}
    assert len(body["would_redrive"]) + len(body["not_redrivable"]) == len(rows)


def test_a_temporal_cli_profile_is_enough_to_connect(devstack, settings, tmp_path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(
        f'[profile.local]\naddress = "{settings.temporal_host}"\n'
        f'namespace = "{settings.temporal_namespace}"\n'
    )
    env = {k: v for k, v in devstack.env.items() if k != "TEMPORAL_HOST"}
    result = subprocess.run(
        [sys.executable, "-m", "docpipe", "status", "-o", "json"],
        env={**os.environ, **env, "TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "local"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)
