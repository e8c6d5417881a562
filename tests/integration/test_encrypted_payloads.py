"""Encrypted payloads against a real Temporal dev server.

The real DocumentPipelineWorkflow runs one batch (stand-in activities, as in
test_pipeline_workflow.py) through a client built by docpipe's one connect
path with payload keys set. Temporal's stored history, read raw, must not
contain a title, a source or a failure reason; the real ``temporal`` CLI must
show them once pointed at ``docpipe codec-server`` with its token, and not
without it.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from cli_runs import docpipe_server
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from docpipe.config import Settings, TemporalConnection, load_settings
from docpipe.encryption.codec import EncryptionCodec
from docpipe.local.devstack import find_executable
from docpipe.models import DocumentRef, PipelineInput, PipelineResult, Status
from docpipe.workflows import DocumentPipelineWorkflow
from docpipe_operator.backlog import TemporalClients

from .test_pipeline_workflow import FakeSteps, one_queue_options

pytestmark = pytest.mark.integration

TITLE = "Zanzibar merger plan"
FAILED_TITLE = "Zanzibar layoffs list"
SOURCE = "good-https://intranet.example/zanzibar-board-minutes.pdf"
REASON = "refused to embed the Zanzibar appendix"
SECRETS = (TITLE, FAILED_TITLE, "zanzibar-board-minutes", REASON)
TOKEN = "only-for-auditors"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class EncryptedRun:
    settings: Settings
    env: dict[str, str]
    """What a process needs to reach this Temporal with these keys."""
    workflow_id: str
    pipeline_input: PipelineInput
    result: PipelineResult


@pytest.fixture(scope="module")
async def encrypted_run(devstack) -> EncryptedRun:
    """One batch run with keys k2 (current) and k1 (older): a success and two failures."""
    env = {
        "TEMPORAL_HOST": devstack.env["TEMPORAL_HOST"],
        "PAYLOAD_ENCRYPTION_KEYS": f"k2:{new_key()},k1:{new_key()}",
    }
    settings = load_settings(
        temporal_host=env["TEMPORAL_HOST"],
        payload_encryption_keys=env["PAYLOAD_ENCRYPTION_KEYS"],
    )
    client = await settings.temporal_connection().connect()
    queue = f"encrypted-{uuid.uuid4().hex[:8]}"
    fakes = FakeSteps()
    fakes.embed_raises = ApplicationError(REASON, non_retryable=True)
    pipeline_input = PipelineInput(
        run_id="encrypted",
        documents=[
            DocumentRef("doc-1", SOURCE, 2, title=TITLE, tags=["board"]),
            DocumentRef("doc-2", "bad-download-zanzibar-board-minutes", 3, title=FAILED_TITLE),
        ],
        options=one_queue_options(queue),
    )
    workflow_id = f"wf-{queue}"
    async with Worker(
        client, task_queue=queue, workflows=[DocumentPipelineWorkflow], activities=fakes.all()
    ):
        result = await client.execute_workflow(
            DocumentPipelineWorkflow.run,
            pipeline_input,
            id=workflow_id,
            task_queue=queue,
            execution_timeout=timedelta(seconds=60),
        )
    return EncryptedRun(settings, env, workflow_id, pipeline_input, result)


async def raw_history(client: Client, workflow_id: str) -> bytes:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return b"".join(event.SerializeToString() for event in history.events)


async def test_the_workflow_runs_and_its_client_reads_everything_back(
    encrypted_run: EncryptedRun,
) -> None:
    outcomes = {o.document_id: o for o in encrypted_run.result.outcomes}
    assert outcomes["doc-1"].status == Status.FAILED
    assert REASON in (outcomes["doc-1"].failure_reason or "")
    assert outcomes["doc-2"].title == FAILED_TITLE


async def test_temporal_history_holds_no_title_source_or_failure_reason(
    encrypted_run: EncryptedRun,
) -> None:
    client = await encrypted_run.settings.temporal_connection().connect()
    stored = await raw_history(client, encrypted_run.workflow_id)

    for secret in SECRETS:
        assert secret.encode() not in stored, f"{secret!r} is readable in Temporal's history"
        assert secret.lower().encode() not in stored.lower()
    assert b"binary/encrypted" in stored
    assert b"k2" in stored, "payloads name the key that sealed them"
    # The check can see plaintext: the same input, unencrypted, shows the title.
    (clear,) = await DataConverter.default.encode([encrypted_run.pipeline_input])
    assert TITLE.encode() in clear.SerializeToString()


async def test_the_operators_clients_decode_with_the_same_keys(
    encrypted_run: EncryptedRun,
) -> None:
    keyring = encrypted_run.settings.payload_keyring()
    clients = TemporalClients(timeout_s=20, payload_keys=keyring)
    client = await clients.get(TemporalConnection(encrypted_run.env["TEMPORAL_HOST"]))
    codec = client.data_converter.payload_codec
    assert isinstance(codec, EncryptionCodec) and codec.keyring == keyring
    handle = client.get_workflow_handle(encrypted_run.workflow_id, result_type=PipelineResult)
    assert await handle.result() == encrypted_run.result


@pytest.fixture(scope="module")
def codec_server(encrypted_run: EncryptedRun) -> Iterator[str]:
    """``docpipe codec-server`` as its own process, with the run's keys and a token."""
    with docpipe_server(encrypted_run.env | {"CODEC_SERVER_TOKEN": TOKEN}, "codec-server") as url:
        yield url


def temporal_show(run: EncryptedRun, *codec_flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(find_executable("temporal")),
            "workflow",
            "show",
            "--workflow-id",
            run.workflow_id,
            "--address",
            run.env["TEMPORAL_HOST"],
            "--detailed",  # every field of every event, payloads decoded as far as it can
            *codec_flags,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_temporal_cli_shows_titles_through_the_codec_server(
    encrypted_run: EncryptedRun, codec_server: str
) -> None:
    shown = temporal_show(
        encrypted_run, "--codec-endpoint", codec_server, "--codec-auth", f"Bearer {TOKEN}"
    )
    assert shown.returncode == 0, shown.stderr
    assert TITLE in shown.stdout
    # The event's section: from its "--- [n] ActivityTaskFailed ---" header to the next one.
    failed_activity = shown.stdout.split("ActivityTaskFailed", 1)[1].split("\n-----", 1)[0]
    assert REASON in failed_activity, "an activity's failure message decodes too"


def test_the_temporal_cli_without_the_codec_server_or_its_token_shows_no_title(
    encrypted_run: EncryptedRun, codec_server: str
) -> None:
    plain = temporal_show(encrypted_run)
    assert plain.returncode == 0, plain.stderr
    assert TITLE not in plain.stdout
    without_token = temporal_show(encrypted_run, "--codec-endpoint", codec_server)
    assert TITLE not in without_token.stdout + without_token.stderr
