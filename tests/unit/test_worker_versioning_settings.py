"""Workers join a Worker Deployment only when they are given a Build ID.

Specification:
* no WORKER_BUILD_ID and no DOCPIPE_IMAGE_TAG: the worker polls unversioned,
  exactly as before (local runs, tests, deployments without the operator);
* a Build ID (WORKER_BUILD_ID, else the image tag) puts the worker in the
  deployment ``docpipe-<worker type>`` (or WORKER_DEPLOYMENT_NAME) as that
  version, with worker versioning on;
* every workflow docpipe registers has a declared versioning behaviour, which
  the workflow worker applies only when it runs versioned: a behaviour on
  @workflow.defn makes the server refuse every task of an unversioned worker.
"""

from __future__ import annotations

import pytest
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion

from docpipe.config import ConfigError, load_settings
from docpipe.workers.common import deployment_config
from docpipe.workflows import (
    VERSIONING_BEHAVIOR,
    WORKFLOWS,
    DocumentPipelineWorkflow,
    IngestCsvWorkflow,
    versioning_behavior,
)

VERSIONING_VARS = ("WORKER_BUILD_ID", "DOCPIPE_IMAGE_TAG", "WORKER_DEPLOYMENT_NAME")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VERSIONING_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("kind", ["workflow", "cpu", "gpu", "io"])
def test_without_a_build_id_workers_poll_unversioned(kind: str) -> None:
    assert deployment_config(load_settings(), kind) is None


@pytest.mark.parametrize(
    ("env", "kind", "expected"),
    [
        ({"WORKER_BUILD_ID": "abc123"}, "workflow", ("docpipe-workflow", "abc123")),
        ({"DOCPIPE_IMAGE_TAG": "1.4.0"}, "cpu", ("docpipe-cpu", "1.4.0")),
        (
            {"DOCPIPE_IMAGE_TAG": "1.4.0", "WORKER_BUILD_ID": "explicit"},
            "gpu",
            ("docpipe-gpu", "explicit"),
        ),
        (
            {"WORKER_BUILD_ID": "b7", "WORKER_DEPLOYMENT_NAME": "team-a-io"},
            "io",
            ("team-a-io", "b7"),
        ),
    ],
)
def test_a_build_id_makes_the_worker_a_deployment_version(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kind: str, expected: tuple[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = deployment_config(load_settings(), kind)
    assert config is not None
    assert config.version == WorkerDeploymentVersion(*expected)
    assert config.use_worker_versioning


def test_the_workflow_worker_pins_its_workflows_when_versioned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_BUILD_ID", "b1")
    config = deployment_config(load_settings(), "workflow", versioning_behavior())
    assert config is not None
    assert config.default_versioning_behavior == VersioningBehavior.PINNED


def test_blank_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_BUILD_ID", "  ")
    monkeypatch.setenv("DOCPIPE_IMAGE_TAG", "")
    assert deployment_config(load_settings(), "workflow") is None


def test_an_overlong_build_id_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_BUILD_ID", "x" * 256)
    with pytest.raises(ConfigError, match=r"(?i)worker_build_id"):
        load_settings()


def test_a_deployment_name_with_a_dot_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal refuses it (a version is named "<deployment>.<build id>")."""
    monkeypatch.setenv("WORKER_DEPLOYMENT_NAME", "team.a")
    with pytest.raises(ConfigError, match=r"(?i)worker_deployment_name"):
        load_settings()


def test_every_workflow_has_a_declared_versioning_behaviour() -> None:
    assert set(VERSIONING_BEHAVIOR) == set(WORKFLOWS)


def test_document_batches_and_ingestion_runs_are_pinned() -> None:
    """A batch never changes code mid-run; an ingestion upgrades at continue-as-new
    (ingest_csv._next_run_versioning)."""
    assert VERSIONING_BEHAVIOR[DocumentPipelineWorkflow] == VersioningBehavior.PINNED
    assert VERSIONING_BEHAVIOR[IngestCsvWorkflow] == VersioningBehavior.PINNED
    assert versioning_behavior() == VersioningBehavior.PINNED


def test_no_workflow_declares_a_behaviour_an_unversioned_worker_would_send() -> None:
    """The server refuses a behaviour from an unversioned worker, and the run hangs."""
    for workflow_class in WORKFLOWS:
        defn = workflow_class.__temporal_workflow_definition  # type: ignore[attr-defined]
        assert defn.versioning_behavior in (None, VersioningBehavior.UNSPECIFIED), defn.name
