"""The helm chart (helm/docpipe), rendered and linted offline.

helm-python-sdk binds Helm's own Go SDK (Helm v4) through a C library, so rendering,
`values.schema.json` validation and `helm lint` here are Helm's, without a helm binary or
a cluster. Every rendered object is then checked as the API server would
(k8s_offline.validation_problems). The value sets are the files in helm/docpipe/ci/ and
deploy/kind/values.yaml: the ones docs/deployment.md documents.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from embedded_scripts import run_embedded
from k8s_offline import KUBERNETES_VERSION, REPO, admit, load_documents, validation_problems

from docpipe_operator import crd as operator_crd
from docpipe_operator import crd_install, names, uninstall
from docpipe_operator import resources as operator_resources
from docpipe_operator.config import OperatorConfig
from docpipe_operator.spec import parse, problems
from docpipe_operator.trust import image_allowed, workload_problems

CHART = REPO / "helm" / "docpipe"
RELEASE = "docpipe"
NAMESPACE = "docpipe-system"
VALUE_FILES = [*sorted((CHART / "ci").glob("*-values.yaml")), REPO / "deploy/kind/values.yaml"]


def value_set_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml") if path.parent.name == "ci" else "kind"


VALUE_SETS = {value_set_id(path): yaml.safe_load(path.read_text()) or {} for path in VALUE_FILES}


def render(
    values: dict[str, Any] | None = None, chart: Path = CHART, namespace: str = NAMESPACE
) -> dict[str, str]:
    with helm.Chart.load(chart) as loaded:
        return loaded.render(
            values=values or {}, name=RELEASE, namespace=namespace, is_install=True
        )


LIFECYCLE_HOOKS = {"pre-install", "pre-upgrade", "pre-delete"}


def lifecycle_hook(obj: dict[str, Any]) -> bool:
    """Objects helm creates around an install, upgrade or uninstall (the CRD upgrade Job
    and its RBAC), not part of the running release."""
    hooks = (obj["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    return bool(LIFECYCLE_HOOKS & set(hooks.split(",")))


def objects(
    values: dict[str, Any] | None = None, chart: Path = CHART, *, hooks: bool = False
) -> list[dict[str, Any]]:
    """Every object the chart renders (the helm test pod included), in template order;
    the lifecycle hooks' objects only with ``hooks``."""
    found = []
    for template, text in sorted(render(values, chart).items()):
        if template.endswith(".yaml"):
            found += load_documents(text)
    return [obj for obj in found if hooks or not lifecycle_hook(obj)]


def one(found: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in found if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"{len(matches)} {kind} {name or ''} rendered"
    return matches[0]


def kinds(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in found if o["kind"] == kind]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_chart_metadata_matches_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (REPO / "pyproject.toml").read_text()
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "docpipe"
    assert f'version = "{chart["appVersion"]}"' in pyproject, "appVersion != pyproject version"
    with helm.Chart.load(CHART) as loaded:
        assert loaded.metadata["version"] == chart["version"]
        assert loaded.schema is not None, "values.schema.json missing"


def test_chart_crds_are_the_generated_ones() -> None:
    """crds/ equals deploy/crds (the operator's generated CRD + kopf's peering): both are
    written by ``python -m docpipe_operator.crd``."""
    source = {p.name: p.read_bytes() for p in (REPO / "deploy" / "crds").glob("*.yaml")}
    copied = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert copied == source, (
        "helm/docpipe/crds/ differs from deploy/crds/: run python -m docpipe_operator.crd"
    )
    with helm.Chart.load(CHART) as loaded:
        for crd_file in loaded.crds:
            for crd in load_documents(crd_file["data"]):
                kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_chart_dashboards_are_the_deploy_grafana_ones() -> None:
    """helm/docpipe/dashboards/ mirrors deploy/grafana/*.json, file for file: both are
    written by ``python deploy/grafana/generate.py``.

    Both sides are compared as they are: while deploy/grafana has no dashboards yet,
    the chart must ship none either.
    """
    source = {p.name: p.read_bytes() for p in (REPO / "deploy" / "grafana").glob("*.json")}
    copied = {p.name: p.read_bytes() for p in (CHART / "dashboards").glob("*.json")}
    assert copied == source, (
        "helm/docpipe/dashboards/ differs from deploy/grafana/: run generate.py"
    )
    for name, data in copied.items():
        assert isinstance(json.loads(data), dict), f"{name} is not a dashboard object"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_is_clean(value_set: str) -> None:
    """`helm lint --strict` with the value set: no error and no warning (info is fine)."""
    report = helm.lint(
        CHART,
        values=VALUE_SETS[value_set],
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBERNETES_VERSION}",
    )
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    assert not findings and not report["errors"], findings or report["errors"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_object_is_valid(value_set: str) -> None:
    found = objects(VALUE_SETS[value_set], hooks=True)
    assert found
    seen = set()
    for obj in found:
        assert validation_problems(obj) == [], (obj["kind"], obj["metadata"]["name"])
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"):
            assert obj["metadata"].get("namespace"), f"{key}: no namespace"


def _rules(path: str) -> dict[str, Any]:
    return {
        role["metadata"]["name"]: role["rules"]
        for role in load_documents((REPO / path).read_text())
    }


def test_rbac_is_the_least_privilege_of_deploy_rbac() -> None:
    """Same rules as deploy/rbac/ and deploy/cluster-wide/, which the operator tests check
    call by call."""
    found = objects()
    assert {r["metadata"]["name"]: r["rules"] for r in kinds(found, "Role")} == _rules(
        "deploy/rbac/role.yaml"
    )
    assert {r["metadata"]["name"]: r["rules"] for r in kinds(found, "ClusterRole")} == _rules(
        "deploy/rbac/clusterrole.yaml"
    )
    cluster_wide = objects(VALUE_SETS["cluster-wide"])
    assert not kinds(cluster_wide, "Role")
    assert {r["metadata"]["name"]: r["rules"] for r in kinds(cluster_wide, "ClusterRole")} == {
        **_rules("deploy/rbac/clusterrole.yaml"),
        **_rules("deploy/cluster-wide/clusterrole.yaml"),
    }


def _grants_secrets(rules: list[dict[str, Any]]) -> bool:
    return any("secrets" in rule["resources"] for rule in rules)


def test_by_default_the_operator_is_namespaced_in_the_release_namespace() -> None:
    """Its rights over Secrets and Deployments stop at the namespace it serves: no
    cluster-wide rule reads a Secret, and kopf watches only that namespace."""
    found = objects()
    account = one(found, "ServiceAccount")["metadata"]["name"]
    role = one(found, "Role", "docpipe-operator")
    assert role["metadata"]["namespace"] == NAMESPACE
    binding = one(found, "RoleBinding", "docpipe-operator")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "docpipe-operator",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    ]
    assert not any(_grants_secrets(r["rules"]) for r in kinds(found, "ClusterRole"))
    assert [b["roleRef"]["name"] for b in kinds(found, "ClusterRoleBinding")] == [
        "docpipe-operator-discovery"
    ]
    assert one(found, "KopfPeering")["metadata"]["namespace"] == NAMESPACE
    assert not kinds(found, "ClusterKopfPeering")
    container = one(found, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["DOCPIPE_OPERATOR_NAMESPACES"] == NAMESPACE
    assert env_of(container)["DOCPIPE_OPERATOR_CLUSTER_WIDE"] == "false"


def test_cluster_wide_only_when_asked_binds_both_roles_to_the_operator_account() -> None:
    found = objects(VALUE_SETS["cluster-wide"])
    deployment = one(found, "Deployment", "docpipe-operator")
    account = one(found, "ServiceAccount")["metadata"]["name"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account
    bindings = kinds(found, "ClusterRoleBinding")
    assert {b["roleRef"]["name"] for b in bindings} == {
        "docpipe-operator",
        "docpipe-operator-discovery",
    }
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
    assert not kinds(found, "RoleBinding")
    assert one(found, "ClusterKopfPeering")["metadata"]["name"] == "docpipe"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["DOCPIPE_OPERATOR_NAMESPACES"] == ""
    assert env_of(container)["DOCPIPE_OPERATOR_CLUSTER_WIDE"] == "true"


def test_cluster_wide_with_listed_namespaces_is_refused() -> None:
    values = {"operator": {"clusterWide": True, "watchNamespaces": ["docpipe"]}}
    with pytest.raises(helm.HelmRenderError, match=r"leave operator\.watchNamespaces empty"):
        render(values)


def test_namespaced_mode_binds_and_peers_in_each_watched_namespace() -> None:
    found = objects(VALUE_SETS["namespaced"])
    watched = ["docpipe", "search"]
    role_bindings = kinds(found, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in role_bindings) == watched
    assert {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in role_bindings} == {
        ("Role", "docpipe-operator")
    }
    assert sorted(r["metadata"]["namespace"] for r in kinds(found, "Role")) == watched
    cluster_bindings = kinds(found, "ClusterRoleBinding")
    assert [b["roleRef"]["name"] for b in cluster_bindings] == ["docpipe-operator-discovery"]
    assert sorted(p["metadata"]["namespace"] for p in kinds(found, "KopfPeering")) == watched
    assert not kinds(found, "ClusterKopfPeering")
    container = one(found, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["DOCPIPE_OPERATOR_NAMESPACES"] == "docpipe,search"
    pipeline = one(found, "DocumentPipeline")
    assert pipeline["metadata"]["namespace"] == "docpipe", "pipeline outside watched namespaces"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_operator_deployment_means_what_the_operator_reads(
    value_set: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every variable the chart sets is an OperatorConfig setting, parsed as intended, and
    the ports and probes point at what the operator serves."""
    values = VALUE_SETS[value_set]
    deployment = one(objects(values), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "docpipe_operator"]
    settings = set(OperatorConfig.model_fields)
    for item in container["env"]:
        name = item["name"]
        if name.startswith("DOCPIPE_OPERATOR_"):
            assert name.removeprefix("DOCPIPE_OPERATOR_").lower() in settings, name
            if "valueFrom" in item:  # the downward API, as the kubelet resolves it
                assert item["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
                monkeypatch.setenv(name, NAMESPACE)
            else:
                monkeypatch.setenv(name, item["value"])
    config = OperatorConfig()
    operator = values.get("operator", {})
    assert config.cluster_wide == operator.get("clusterWide", False)
    expected = [] if config.cluster_wide else operator.get("watchNamespaces") or [NAMESPACE]
    assert config.watched() == expected
    assert config.trust().operator_namespace == NAMESPACE
    # The chart's own images pass the operator's allowlist; nothing else is assumed.
    for kind in ("io", "cpu", "gpu"):
        image = values.get("images", {}).get(kind, {})
        repository = image.get("repository", f"ghcr.io/example/docpipe-{kind}")
        assert image_allowed(f"{repository}:1.2.3", config.trust()), (kind, repository)
    assert not image_allowed("docker.io/library/busybox:1.36", config.trust())
    assert config.standalone == operator.get("standalone", False)
    assert config.peering == operator.get("peering", "docpipe")
    assert deployment["spec"]["replicas"] == operator.get("replicas", 2)
    assert config.standalone or deployment["spec"]["replicas"] >= 1
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if config.metrics_port:
        assert ports["metrics"] == config.metrics_port
        assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    else:
        assert "metrics" not in ports and "readinessProbe" not in container
    if config.health_port:
        assert ports["health"] == config.health_port
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    else:
        assert "health" not in ports and "livenessProbe" not in container
    # The image's user; the root filesystem stays read-only and nothing escalates.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsUser"] == 65532  # USER of Dockerfile.io
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "docpipe-io" in container["image"]


def test_images_default_to_the_app_version_and_digests_win() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    container = one(objects(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/example/docpipe-io:{chart['appVersion']}"
    production = objects(VALUE_SETS["production"])
    container = one(production, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    digest = VALUE_SETS["production"]["images"]["io"]["digest"]
    assert container["image"] == f"registry.example.com/docpipe/docpipe-io@{digest}"
    assert container["imagePullPolicy"] == "Always"


@pytest.mark.parametrize("value_set", ["namespaced", "production"])
def test_the_pipeline_from_values_is_admitted_and_runs_the_chart_images(value_set: str) -> None:
    """The rendered DocumentPipeline passes the CRD (defaults, schema, CEL) and the
    operator's own checks, its pools get the chart's images, and the Deployments the
    operator would create from it are valid Kubernetes."""
    values = VALUE_SETS[value_set]
    pipeline = one(objects(values), "DocumentPipeline")
    crd = yaml.safe_load((REPO / "deploy/crds/documentpipelines.docpipe.io.yaml").read_text())
    stored, errors = admit(crd, pipeline)
    assert errors == []
    assert problems(stored["spec"], stored["metadata"]["name"]) == []
    spec_values = values["pipeline"]["spec"]["pools"]
    for kind, image in {"workflow": "io", "cpu": "cpu", "gpu": "gpu", "io": "io"}.items():
        pool = stored["spec"]["pools"][kind]
        if (spec_values.get(kind) or {}).get("image"):
            assert pool["image"] == spec_values[kind]["image"]
        else:
            assert f"docpipe-{image}" in pool["image"], (kind, pool["image"])
    # The operator the chart installs accepts the images and accounts it names.
    env = env_of(one(objects(values), "Deployment")["spec"]["template"]["spec"]["containers"][0])
    config = OperatorConfig(
        allowed_images=env["DOCPIPE_OPERATOR_ALLOWED_IMAGES"],  # type: ignore[arg-type]
        allowed_service_accounts=env["DOCPIPE_OPERATOR_ALLOWED_SERVICE_ACCOUNTS"],  # type: ignore[arg-type]
    )
    assert workload_problems(parse(stored["spec"]), config.trust()) == []
    body = {**stored, "metadata": {**stored["metadata"], "uid": "0000-test"}}
    for manifest in operator_resources.manifests(body, parse(stored["spec"])):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_a_pipeline_outside_the_watched_namespaces_is_refused() -> None:
    values = {
        "operator": {"watchNamespaces": ["docpipe"]},
        "pipeline": {"enabled": True, "namespace": "elsewhere"},
    }
    with pytest.raises(helm.HelmRenderError, match=r"not in operator\.watchNamespaces"):
        render(values)


def test_standalone_with_two_replicas_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"operator\.replicas to 1"):
        render({"operator": {"standalone": True, "replicas": 2}})


def test_operator_service_monitor_selects_the_operator_metrics_service() -> None:
    found = objects(VALUE_SETS["production"])
    service = one(found, "Service")
    monitor = one(found, "ServiceMonitor", "docpipe-operator")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    # The operator's series carry the pipeline's namespace: keep it over the target's.
    assert endpoint["honorLabels"] is True
    pods = one(found, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pods.items()


def _worker_objects() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """A pool's Deployment and metrics Service as the operator builds them."""
    body = {"metadata": {"name": "docs", "namespace": "docpipe", "uid": "u"}}
    spec = parse({"temporal": {"address": "t:7233"}, "pools": _pools()})
    deployment = operator_resources.deployment(body, spec, "cpu")
    service = operator_resources.service(body, spec, "cpu")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return deployment, service, [p["name"] for p in container["ports"]]


def _relabel(rules: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str]:
    """Prometheus's `replace` relabeling (the default action), enough for our rules."""
    labels = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace"
        value = rule.get("separator", ";").join(labels.get(n, "") for n in rule["sourceLabels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if match:
            # Prometheus writes $1 or ${1}; Python's expand() reads \g<1>.
            template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            labels[rule["targetLabel"]] = match.expand(template)
    return labels


@pytest.mark.parametrize(
    ("value_set", "kind", "endpoints"),
    [
        ("production", "ServiceMonitor", "endpoints"),
        ("namespaced", "PodMonitor", "podMetricsEndpoints"),
    ],
)
def test_worker_monitors_scrape_every_pool_under_the_dashboards_job_names(
    value_set: str, kind: str, endpoints: str
) -> None:
    """The workers' monitor selects the operator's worker objects (never the operator),
    scrapes both ports, and names the job <pipeline>-<pool>-metrics as the dashboards
    and the DocpipeWorkerDown alert expect."""
    found = objects(VALUE_SETS[value_set])
    monitor = one(found, kind, "docpipe-workers")
    selector = monitor["spec"]["selector"]["matchLabels"]
    deployment, service, ports = _worker_objects()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    if kind == "ServiceMonitor":
        assert selector.items() <= service["metadata"]["labels"].items()
        assert [p["name"] for p in service["spec"]["ports"]] == ports
    operator_pods = one(found, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= operator_pods.items()
    assert [e["port"] for e in monitor["spec"][endpoints]] == ports
    alert_jobs = re.compile(r"docpipe-(workflow|cpu|gpu|io)|.+-(workflow|cpu|gpu|io)-metrics")
    for endpoint in monitor["spec"][endpoints]:
        meta = {
            "job": "docpipe-system/docpipe-workers",
            "__meta_kubernetes_pod_label_docpipe_io_pipeline": pod_labels["docpipe.io/pipeline"],
            "__meta_kubernetes_pod_label_docpipe_io_pool": pod_labels["docpipe.io/pool"],
        }
        labels = _relabel(endpoint["relabelings"], meta)
        assert labels["job"] == names.service_name("docs", "cpu")
        assert alert_jobs.fullmatch(labels["job"])
        assert (labels["pipeline"], labels["pool"]) == ("docs", "cpu")
    watched = VALUE_SETS[value_set].get("operator", {}).get("watchNamespaces")
    expected = {"matchNames": watched} if watched else {"any": True}
    assert monitor["spec"]["namespaceSelector"] == expected


def test_workers_are_scraped_once() -> None:
    values = {"monitoring": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}
    with pytest.raises(helm.HelmRenderError, match="enable one"):
        render(values)
    values["monitoring"]["serviceMonitor"]["workers"] = False
    found = objects(values)
    assert [m["metadata"]["name"] for m in kinds(found, "ServiceMonitor")] == ["docpipe-operator"]
    assert len(kinds(found, "PodMonitor")) == 1


def _pools() -> dict[str, Any]:
    return {kind: {"image": f"docpipe-{kind}:test"} for kind in ("workflow", "cpu", "gpu", "io")}


@pytest.fixture
def chart_with_dashboards(tmp_path: Path) -> Path:
    """A copy of the chart with two dashboards in it (whatever deploy/grafana holds now)."""
    chart = tmp_path / "docpipe"
    shutil.copytree(CHART, chart)
    (chart / "dashboards" / "docpipe_overview.json").write_text(
        json.dumps({"title": "docpipe overview", "panels": [{"title": "a\nb", "expr": '"x"'}]})
    )
    (chart / "dashboards" / "docpipe-gpu.json").write_text('{"title": "GPU"}\n')
    return chart


def test_dashboards_become_configmaps_for_the_grafana_sidecar(chart_with_dashboards: Path) -> None:
    dashboards = sorted((chart_with_dashboards / "dashboards").glob("*.json"))
    values = {"dashboards": {"namespace": "monitoring", "folder": "Document pipeline"}}
    maps = kinds(objects(values, chart_with_dashboards), "ConfigMap")
    assert len(maps) == len(dashboards) >= 2
    by_file = {next(iter(m["data"])): m for m in maps}
    for path in dashboards:
        configmap = by_file[path.name]
        assert configmap["data"] == {path.name: path.read_text()}, "content changed on the way"
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["namespace"] == "monitoring"
        assert configmap["metadata"]["annotations"]["grafana_folder"] == "Document pipeline"
        assert validation_problems(configmap) == []
    off = objects({"dashboards": {"enabled": False}}, chart_with_dashboards)
    assert not kinds(off, "ConfigMap")


def test_helm_test_pod_checks_the_operators_real_metrics_endpoint() -> None:
    """The `helm test` pod's script, run here against a server exposing the operator's
    real metrics registry, passes; against a server without them it fails."""
    found = objects()
    pod = one(found, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    service = one(found, "Service")
    url = env_of(container)["METRICS_URL"]
    port = service["spec"]["ports"][0]["port"]
    assert url == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/metrics"
    assert container["command"][:2] == ["python", "-c"]
    script = container["command"][2]

    from prometheus_client import generate_latest

    import docpipe_operator.metrics  # noqa: F401  (registers the docpipe_operator_* metrics)

    with _serving(generate_latest()) as good, _serving(b"python_info 1\n") as bad:
        passed = run_embedded(script, {"METRICS_URL": good})
        assert passed.returncode == 0, passed.stderr
        failed = run_embedded(script, {"METRICS_URL": bad})
        assert failed.returncode != 0
        assert "without docpipe_operator_" in failed.stderr


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


class _serving:
    def __init__(self, body: bytes) -> None:
        handler = type("Handler", (_Handler,), {"body": body})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_no_helm_test_pod_without_metrics() -> None:
    assert not kinds(objects(VALUE_SETS["standalone"]), "Pod")
    assert not kinds(objects(VALUE_SETS["standalone"]), "Service")


def test_notes_say_how_to_check_the_install() -> None:
    notes = render(VALUE_SETS["production"])["docpipe/templates/NOTES.txt"]
    assert "helm test docpipe -n docpipe-system" in notes
    assert "kubectl -n docpipe get dp docs-prod -w" in notes
    assert "grafana_dashboard=1 in monitoring" in notes


GOOD_VALUES: list[dict[str, Any]] = [{}, *VALUE_SETS.values()]
BAD_VALUES: dict[str, dict[str, Any]] = {
    "unknown top-level key": {"operatr": {"replicas": 1}},
    "unknown operator key": {"operator": {"replica": 1}},
    "replicas not a number": {"operator": {"replicas": "two"}},
    "zero replicas": {"operator": {"replicas": 0}},
    "port out of range": {"operator": {"metricsPort": 70000}},
    "bad pull policy": {"images": {"pullPolicy": "Sometimes"}},
    "bad digest": {"images": {"gpu": {"repository": "r/gpu", "digest": "latest"}}},
    "image without repository": {"images": {"cpu": {"repository": ""}}},
    "tag in repository": {"images": {"io": {"repository": "r/io:1.0"}}},
    "bad namespace name": {"operator": {"watchNamespaces": ["Docpipe_NS"]}},
    "bad duration": {"monitoring": {"serviceMonitor": {"interval": "30 seconds"}}},
    "label value not a string": {"dashboards": {"labelValue": 1}},
    "pipeline name too long": {"pipeline": {"name": "p" * 47}},
    "temporal address without port": {"pipeline": {"spec": {"temporal": {"address": "t"}}}},
    "pipeline spec not an object": {"pipeline": {"spec": "docs"}},
    "unknown pool": {"pipeline": {"spec": {"temporal": {"address": "t:1"}, "pools": {"tpu": {}}}}},
    "resources with a typo": {"operator": {"resources": {"request": {"cpu": "1"}}}},
    "bad quantity": {"operator": {"resources": {"limits": {"memory": "lots"}}}},
    "env without name": {"operator": {"extraEnv": [{"value": "x"}]}},
    "cluster-wide not a boolean": {"operator": {"clusterWide": "yes"}},
    "two image patterns in one": {"operator": {"allowedImages": ["ghcr.io/a/*,docker.io/*"]}},
    "unknown networkPolicy key": {"networkPolicy": {"enable": True}},
    "cidr that is not one": {"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}},
    "peer with a typo": {"networkPolicy": {"temporal": {"to": [{"namespaceSelect": {}}]}}},
    "port out of range in a policy": {"networkPolicy": {"dns": {"ports": [{"port": 70000}]}}},
    "unknown protocol": {"networkPolicy": {"dns": {"ports": [{"port": 53, "protocol": "ICMP"}]}}},
}


@pytest.mark.parametrize("values", GOOD_VALUES, ids=["empty", *VALUE_SETS])
def test_schema_accepts_the_documented_values(values: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_rejects_a_bad_value(values: dict[str, Any]) -> None:
    """values.schema.json refuses it: `helm install`/`template` stop before rendering."""
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_every_value_is_documented_in_values_yaml() -> None:
    """values.yaml holds every key the schema knows (the schema closes every object)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = list(_schema_keys_missing(schema, schema, defaults, ""))
    assert missing == [], f"in values.schema.json but not in values.yaml: {missing}"


def _schema_keys_missing(
    root: dict[str, Any], schema: dict[str, Any], value: Any, path: str
) -> Iterator[str]:
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("additionalProperties") is False and isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key == "global":
                continue
            if key not in value:
                yield f"{path}{key}"
            else:
                yield from _schema_keys_missing(root, sub, value[key], f"{path}{key}.")


# ------------------------------------------------------------- CRD upgrades


def hook_objects(component: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The lifecycle hook objects of one hook (its ``app.kubernetes.io/component``)."""
    return [
        o
        for o in objects(values, hooks=True)
        if lifecycle_hook(o) and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]


def hook_job(hook: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A hook's Job, its pod spec and its one container, checked for what every hook Job
    of ours has: the operator's own image, the hook's own ServiceAccount, and a
    read-only root filesystem."""
    job = one(hook, "Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (
        container["image"]
        == one(objects(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    ), "the operator's own image"
    assert pod["serviceAccountName"] == one(hook, "ServiceAccount")["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    return job, pod, container


def crd_upgrade(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return hook_objects("crd-upgrade", values)


def test_an_upgrade_applies_the_crd_from_the_same_generated_file() -> None:
    """Helm never upgrades crds/: the hook's ConfigMap is that file, byte for byte, so
    what an upgrade applies is what an install would have."""
    hook = crd_upgrade()
    data = one(hook, "ConfigMap")["data"]
    generated = (REPO / "deploy" / "crds" / "documentpipelines.docpipe.io.yaml").read_text()
    assert data == {"documentpipelines.docpipe.io.yaml": generated}
    assert generated == operator_crd.render()
    _, pod, container = hook_job(hook)
    command = "python -m docpipe_operator.crd_install /crds/documentpipelines.docpipe.io.yaml"
    assert container["command"] == command.split()
    (volume,) = pod["volumes"]
    assert volume["configMap"]["name"] == one(hook, "ConfigMap")["metadata"]["name"]
    # The module reads the mounted file and finds exactly the CRD in it.
    (crd,) = crd_install.crds_in([data["documentpipelines.docpipe.io.yaml"]])
    assert crd["metadata"]["name"] == "documentpipelines.docpipe.io"


def test_the_hook_runs_before_install_and_upgrade_and_cleans_up() -> None:
    for obj in crd_upgrade():
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weights = {
        o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in crd_upgrade()
    }
    assert all(weights[kind] < weights["Job"] for kind in weights if kind != "Job")


def test_the_hooks_account_may_touch_this_crd_only() -> None:
    hook = crd_upgrade()
    role = one(hook, "ClusterRole")
    named = [r for r in role["rules"] if r.get("resourceNames")]
    unnamed = [r for r in role["rules"] if not r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["documentpipelines.docpipe.io"],
            "verbs": ["get", "patch", "update"],
        }
    ]
    # RBAC cannot limit create by name: create alone, which cannot change an existing CRD.
    assert unnamed == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["create"],
        }
    ]
    binding = one(hook, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = one(hook, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert account["metadata"]["name"] != one(objects(), "ServiceAccount")["metadata"]["name"]


def test_the_crd_upgrade_hook_can_be_turned_off() -> None:
    assert crd_upgrade({"crds": {"upgradeJob": {"enabled": False}}}) == []


# ----------------------------------------------------- uninstall: pipelines first


def pipeline_cleanup(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return hook_objects("pipeline-cleanup", values)


def cleanup_command(values: dict[str, Any] | None = None) -> list[str]:
    (container,) = one(pipeline_cleanup(values), "Job")["spec"]["template"]["spec"]["containers"]
    return container["command"]


def test_uninstall_first_deletes_the_watched_namespaces_pipelines_and_waits() -> None:
    """A pre-delete hook, so the operator still runs to release each pipeline's finalizer."""
    hook = pipeline_cleanup()
    for obj in hook:
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    weights = {o["kind"]: int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) for o in hook}
    assert all(weights[kind] < weights["Job"] for kind in weights if kind != "Job")
    job, _, container = hook_job(hook)
    assert container["command"] == [
        "python",
        "-m",
        "docpipe_operator.uninstall",
        "--timeout=240",
        NAMESPACE,
    ]
    assert job["spec"]["activeDeadlineSeconds"] > 240
    args = uninstall.parse_args(container["command"][3:])
    assert (args.namespaces, args.timeout) == ([NAMESPACE], 240)


def test_the_cleanup_account_may_list_and_delete_pipelines_only_where_they_are_watched() -> None:
    values = {"operator": {"watchNamespaces": ["docs-a", "docs-b"]}}
    hook = pipeline_cleanup(values)
    roles = [o for o in hook if o["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["docs-a", "docs-b"]
    for role in roles:
        assert role["rules"] == [
            {
                "apiGroups": ["docpipe.io"],
                "resources": ["documentpipelines"],
                "verbs": ["list", "delete"],
            }
        ]
    account = one(hook, "ServiceAccount")["metadata"]["name"]
    for binding in (o for o in hook if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
    assert not [o for o in hook if o["kind"].startswith("Cluster")]
    assert cleanup_command(values)[4:] == ["docs-a", "docs-b"]
    for obj in hook:
        assert validation_problems(obj) == [], (obj["kind"], obj["metadata"]["name"])


def test_cluster_wide_the_cleanup_covers_every_namespace() -> None:
    values = {"operator": {"clusterWide": True}}
    hook = pipeline_cleanup(values)
    assert one(hook, "ClusterRole")["rules"][0]["verbs"] == ["list", "delete"]
    assert one(hook, "ClusterRoleBinding")["roleRef"]["kind"] == "ClusterRole"
    assert not [o for o in hook if o["kind"] in ("Role", "RoleBinding")]
    assert uninstall.parse_args(cleanup_command(values)[3:]).namespaces == []


def test_the_pipeline_cleanup_hook_can_be_turned_off() -> None:
    assert pipeline_cleanup({"uninstall": {"deletePipelines": {"enabled": False}}}) == []
