"""The DocumentPipeline CRD: valid for the API server, in sync with the code,
and strict about the specs it admits (defaults, openAPI and CEL, offline)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from crd_admission import admit, apply_defaults, crd_schema, structural_problems

from docpipe_operator import crd as crd_module
from docpipe_operator.spec import SpecError, parse, problems

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "deploy" / "crds" / "documentpipelines.docpipe.io.yaml"
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.yaml"))
K8S_VERSION = "1.37.0"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_FILE.read_text())


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_the_checked_in_crd_is_what_the_code_generates() -> None:
    assert CRD_FILE.read_text() == crd_module.render(), (
        "regenerate it: python -m docpipe_operator.crd"
    )
    assert crd_module.main(["--check"]) == 0, "regenerate them: python -m docpipe_operator.crd"


def test_the_crd_is_a_valid_kubernetes_object(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, K8S_VERSION, strict=True)


def test_the_crd_schema_is_structural(crd: dict[str, Any]) -> None:
    assert structural_problems(crd_schema(crd)) == []


def test_the_crd_names_status_subresource_and_columns(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "documentpipelines.docpipe.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["dp"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Phase",
        "Workflow",
        "CPU",
        "GPU",
        "IO",
        "Backlog",
        "Current",
        "Target",
        "Age",
    ]
    # Versioned pools: the workflow pool's Current Build ID (Target with -o wide).
    assert columns["Current"] == ".status.pools.workflow.currentBuildId"
    status = crd_schema(crd)["properties"]["status"]["properties"]
    for path in columns.values():
        parts = path.strip(".").split(".")
        if parts[0] != "status":
            continue
        node = status
        for part in parts[1:]:
            assert part in node, f"printer column {path} points outside the status schema"
            node = node[part].get("properties", node[part])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_admitted(crd: dict[str, Any], example: Path) -> None:
    stored, errors = admit(crd, load(example))
    assert errors == []
    assert stored["apiVersion"] == "docpipe.io/v1alpha1"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_operator_reads_an_example_the_same_with_or_without_server_defaults(
    crd: dict[str, Any], example: Path
) -> None:
    raw = load(example)
    defaulted = apply_defaults(crd_schema(crd), raw)
    name = raw["metadata"]["name"]
    assert parse(raw["spec"], name) == parse(defaulted["spec"], name)


def test_the_minimal_example_gets_every_default(crd: dict[str, Any]) -> None:
    stored, _ = admit(crd, load(REPO / "deploy" / "examples" / "minimal.yaml"))
    spec = stored["spec"]
    assert spec["temporal"]["namespace"] == "default"
    assert spec["queues"] == {
        "workflow": "document-pipeline-queue",
        "cpu": "cpu-bound-queue",
        "gpu": "gpu-bound-queue",
        "io": "io-bound-queue",
    }
    gpu = spec["pools"]["gpu"]
    assert gpu["gpusPerPod"] == 1
    assert gpu["scaling"]["scaleToZero"] is True
    assert spec["pools"]["cpu"]["scaling"]["scaleToZero"] is False
    # The GPU pool's batches run longest: so does its shutdown.
    assert (
        gpu["terminationGracePeriodSeconds"] > spec["pools"]["cpu"]["terminationGracePeriodSeconds"]
    )


def test_the_upstream_fraction_is_a_pool_setting(crd: dict[str, Any]) -> None:
    """Pre-scaling's weight per pool (docs/scaling.md): 1 by default, 0 turns it off."""
    stored, errors = admit(crd, _with("spec.pools.gpu.scaling.upstreamFraction", 0.25))
    assert errors == []
    spec = parse(stored["spec"], "docs")
    assert spec.pools["gpu"].knobs.upstream_fraction == 0.25
    assert spec.pools["cpu"].knobs.upstream_fraction == 1.0


def test_the_vector_db_token_secret_key_defaults_to_token(crd: dict[str, Any]) -> None:
    """Like the other stores' credentials: the API server and the operator both fill in
    the key name, and the header is one of the two Chroma reads."""
    obj = _with(
        "spec.vectorDb", {"url": "http://chroma:8000", "credentialsSecretRef": {"name": "c"}}
    )
    stored, errors = admit(crd, obj)
    assert errors == []
    assert stored["spec"]["vectorDb"]["credentialsSecretRef"] == {"name": "c", "tokenKey": "token"}
    for spec in (obj["spec"], stored["spec"]):
        assert parse(spec, "docs").vector_db["credentialsSecretRef"]["tokenKey"] == "token"
    _, errors = admit(crd, _with("spec.vectorDb.authHeader", "Cookie"))
    assert any("authHeader" in error for error in errors), errors
    _, errors = admit(crd, _with("spec.vectorDb.credentialsSecretRef", {"tokenKey": "t"}))
    assert any("name" in error for error in errors), errors


def _minimal() -> dict[str, Any]:
    return load(REPO / "deploy" / "examples" / "minimal.yaml")


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = _minimal()
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return obj


_DELETE = object()

INVALID = {
    "min above max": ("spec.pools.cpu.minReplicas", 30, "minReplicas must not exceed maxReplicas"),
    "max below the default min": ("spec.pools.io.maxReplicas", 0, "maxReplicas"),
    "negative min": ("spec.pools.cpu.minReplicas", -1, "minReplicas"),
    "zero concurrency": ("spec.pools.io.concurrency", 0, "concurrency"),
    "no image": ("spec.pools.gpu.image", _DELETE, "image"),
    "missing pool": ("spec.pools.io", _DELETE, "io"),
    "address without port": ("spec.temporal.address", "temporal", "address"),
    "grace too short to shut a worker down": (
        "spec.pools.cpu.terminationGracePeriodSeconds",
        10,
        "terminationGracePeriodSeconds",
    ),
    "zero backlog target": (
        "spec.pools.cpu.scaling.targetBacklogPerReplica",
        0,
        "targetBacklogPerReplica",
    ),
    "zero scale-down step": ("spec.pools.cpu.scaling.maxScaleDownStep", 0, "maxScaleDownStep"),
    "negative upstream fraction": (
        "spec.pools.gpu.scaling.upstreamFraction",
        -0.5,
        "upstreamFraction",
    ),
    "negative gpus": ("spec.pools.gpu.gpusPerPod", -1, "gpusPerPod"),
    "name too long for its Services": ("metadata.name", "d" * 47, "name"),
    "name not a DNS label": ("metadata.name", "Docs.Prod", "name"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_specs_are_rejected_by_the_crd_and_by_the_operator(
    crd: dict[str, Any], case: str
) -> None:
    path, value, mentioned = INVALID[case]
    obj = _with(path, value)
    _, errors = admit(crd, obj)
    assert errors, f"the CRD admitted: {case}"
    assert any(mentioned in error for error in errors), errors
    # The operator repeats the checks (for objects stored before the CRD had them).
    found = problems(obj["spec"], obj["metadata"]["name"])
    assert any(mentioned in problem for problem in found), found
    with pytest.raises(SpecError):
        parse(obj["spec"], obj["metadata"]["name"])


def test_unknown_fields_are_rejected(crd: dict[str, Any]) -> None:
    obj = _with("spec.pools.cpu.replicas", 3)
    _, errors = admit(crd, obj)
    assert any("replicas" in error for error in errors)


def test_min_equal_to_max_is_fine(crd: dict[str, Any]) -> None:
    obj = copy.deepcopy(_minimal())
    obj["spec"]["pools"]["cpu"] |= {"minReplicas": 3, "maxReplicas": 3}
    assert admit(crd, obj)[1] == []
    assert parse(obj["spec"]).pools["cpu"].knobs.min_replicas == 3
