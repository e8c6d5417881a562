"""Secrets reach docpipe only through the environment, and never leave it in a log.

Real worker processes and the real CLI run at LOG_LEVEL=DEBUG (which also
turns on the HTTP, S3 and database libraries' own debug logs) with a
distinctive value for every secret docpipe knows: the S3 secret key, the
PostgreSQL password (the stack's role is created with it), the Temporal API
key (sent over mTLS to a TLS proxy in front of the dev server), the webhook
HMAC key and the LLM API key, plus the client certificate's private key and the
key every process encrypts Temporal payloads with.
They process documents and post a signed webhook; then every byte the
processes wrote (stdout, stderr, worker logs) is searched for each secret,
raw and base64-encoded. The operator's side is tests/operator/test_operator_secrets.py.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from http_serving import serving
from local_sources import TEST_SOURCE_ROOTS
from tls_kit import mtls_temporal, tls_env

from docpipe.local.devstack import DevStack
from docpipe.local.workers import LocalWorkers, all_task_queues, wait_for_pollers
from docpipe.workers.common import connect

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SECRETS = {
    "S3_SECRET_KEY": "s3-secret-Zq81vKp3TESTONLY",
    "METADATA_DB_PASSWORD": "pg-pass-Wm42xRt7TESTONLY",
    "TEMPORAL_API_KEY": "temporal-key-Hb93nLs5TESTONLY",
    "WEBHOOK_SECRET": "webhook-hmac-Jc27pDf1TESTONLY",
    "LLM_API_KEY": "llm-key-Tg64yUe9TESTONLY",
}
PAYLOAD_KEY = base64.b64encode(b"payload-key-Ny38TESTONLY-32bytes").decode()
"""Every process encrypts Temporal payloads with it (PAYLOAD_ENCRYPTION_KEYS)."""


def forms(secret: str) -> set[str]:
    """How a secret could show up: as itself, or base64-encoded (HTTP basic auth, k8s data)."""
    encoded = base64.b64encode(secret.encode()).decode()
    return {secret, encoded, encoded.rstrip("=")}


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[Hook]]]:
    handler = type("Handler", (Hook,), {"received": []})
    with serving(handler) as base_url:
        yield f"{base_url}/hook", handler


@pytest.fixture
def secret_stack(stack_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DevStack]:
    """A stack of its own whose PostgreSQL role has our distinctive password."""
    monkeypatch.setenv("METADATA_DB_PASSWORD", SECRETS["METADATA_DB_PASSWORD"])
    with DevStack(stack_dir, object_store="s3", local_source_roots=TEST_SOURCE_ROOTS) as stack:
        yield stack


def small_csv(directory: Path) -> Path:
    """Two plain-text documents: enough to cross every worker once."""
    directory.mkdir(parents=True, exist_ok=True)
    names = ["en_durable_workflows.txt", "fr_boulangerie.txt"]
    for name in names:
        shutil.copy(ROOT / "testdata" / "docs" / name, directory / name)
    rows = ["url,title,content_type,tags", *(f"{name},{name},,secrets" for name in names)]
    path = directory / "documents.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


async def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> tuple[int, str]:
    """``python -m docpipe ...`` without blocking the loop (the TLS proxy lives on it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docpipe",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_no_secret_appears_in_any_worker_or_cli_output_at_debug_level(
    secret_stack: DevStack, tmp_path: Path, webhook: tuple[str, type[Hook]]
) -> None:
    hook_url, hook = webhook
    async with mtls_temporal(tmp_path / "pki", secret_stack.temporal.address) as (certs, proxy):
        private_key = certs.client_key.read_text().splitlines()[1]  # a line of key material
        env = {
            **secret_stack.env,
            **tls_env(certs, proxy.address),
            **SECRETS,
            "PAYLOAD_ENCRYPTION_KEYS": f"test-key:{PAYLOAD_KEY}",
            "LOG_LEVEL": "DEBUG",
            "S3_BUCKET": "secrets-test",
            "VECTOR_COLLECTION": "secrets_test",
        }
        assert env["METADATA_DB_PASSWORD"] == SECRETS["METADATA_DB_PASSWORD"]
        outputs: dict[str, str] = {}
        with LocalWorkers(tmp_path / "logs", env) as workers:
            workers.start(extra_env={"WORKER_CPU_THREADS": "1"})
            from docpipe.config import load_settings

            settings = load_settings(**{k.lower(): v for k, v in env.items() if v})
            client = await connect(settings)
            await wait_for_pollers(client, all_task_queues(settings), workers, timeout_s=240)

            cli_env = {**os.environ, **env, "METRICS_PORT": "0", "SDK_METRICS_PORT": "0"}
            code, outputs["docpipe start"] = await run_cli(
                cli_env,
                "start",
                "--csv-file",
                str(small_csv(tmp_path / "docs")),
                "--webhook-url",
                hook_url,
            )
            assert code == 0, outputs["docpipe start"]
            assert "succeeded" in outputs["docpipe start"]
            code, outputs["docpipe status"] = await run_cli(cli_env, "status")
            assert code == 0, outputs["docpipe status"]
            # The run went through Temporal encrypted (and still succeeded, above).
            started = [wf async for wf in client.list_workflows()]
            history = await client.get_workflow_handle(started[0].id).fetch_history()
            assert b"binary/encrypted" in history.events[0].SerializeToString()
            workers.check_alive()
        for kind in ("workflow", "cpu", "gpu", "io"):
            outputs[f"{kind} worker"] = (tmp_path / "logs" / f"{kind}-worker.log").read_text(
                errors="replace"
            )
        assert proxy.accepted >= 5  # every process really went through mTLS

    assert len(hook.received) == 2  # the webhook key was used (signed deliveries)
    assert "DEBUG" in outputs["io worker"] and "DEBUG" in outputs["docpipe start"]
    # A positive control: the search sees what the libraries log about credentials
    # (botocore prints the access key id, which is not a secret, in each signature).
    assert f"Credential={secret_stack.env['S3_ACCESS_KEY']}/" in outputs["io worker"]
    leaks = [
        f"{name} in {where}"
        for name, secret in {
            **SECRETS,
            "TLS private key": private_key,
            "payload key": PAYLOAD_KEY,
        }.items()
        for where, text in outputs.items()
        if any(form in text for form in forms(secret))
    ]
    assert leaks == []
