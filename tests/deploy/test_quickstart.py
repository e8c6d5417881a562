"""docs/deployment.md's Kubernetes quickstart works as written.

The quickstart's shell blocks are parsed and replayed, in order, against a model of the
cluster: what each command creates (namespaces, Secrets with their keys and labels, the
objects of every applied file, the chart's objects rendered by Helm's SDK with the
quickstart's values, the Deployments and Services the operator makes for the pipeline).
Every object a command or manifest uses must exist by then: the namespaces, the Secrets
(with the keys read and, for the pipeline, the ``docpipe.io/allow-reference`` label the
operator requires), ConfigMaps, ServiceAccounts, the Services at the addresses the
pipeline and the load job name, and the images (built by ``deploy/build-images.sh``, and
allowed by the chart's operator). Every applied object validates offline (k8s_offline).
A command the replay does not understand fails the test, so the doc and the test change
together.
"""

from __future__ import annotations

import re
import runpy
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from k8s_offline import REPO, admit, is_pinned, load_documents, validation_problems
from test_chart import CHART, env_of, one
from test_chart import objects as chart_objects

from docpipe.csv_input import parse_documents_csv
from docpipe_operator import resources as operator_resources
from docpipe_operator.config import OperatorConfig
from docpipe_operator.spec import parse, problems
from docpipe_operator.trust import ALLOW_LABEL, secret_problems, secret_uses, workload_problems

DOC = REPO / "docs" / "deployment.md"
QUICKSTART = REPO / "deploy" / "quickstart"
VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
# deploy/build-images.sh without REGISTRY/TAG: <registry>/docpipe-<image>:<pyproject version>.
BUILT_IMAGES = {f"ghcr.io/example/docpipe-{image}:{VERSION}" for image in ("io", "cpu", "gpu")}

KINDS = {
    "dp": "DocumentPipeline",
    "documentpipeline": "DocumentPipeline",
    "documentpipelines": "DocumentPipeline",
    "deploy": "Deployment",
    "deployment": "Deployment",
    "deployments": "Deployment",
    "job": "Job",
    "jobs": "Job",
    "svc": "Service",
    "service": "Service",
    "secret": "Secret",
    "configmap": "ConfigMap",
    "pod": "Pod",
    "pods": "Pod",
    "events": "Event",
}
POD_TEMPLATES = {"Deployment", "Job", "StatefulSet", "DaemonSet"}


def quickstart() -> str:
    text = DOC.read_text()
    match = re.search(r"^## Kubernetes quickstart\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "docs/deployment.md has no '## Kubernetes quickstart' section"
    return match.group(1)


def commands(section: str) -> list[list[str]]:
    """The commands of the section's ```sh blocks, continuation lines joined, comments
    dropped (shlex, as a shell reads them)."""
    found = []
    for block in re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(words)
    return found


def options(words: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Positional words and options (``--x=v``, ``--x v``, ``-n v``, flags as ``[""]``)."""
    with_value = {"-n", "--namespace", "-f", "--values", "--filename", "-l", "--selector",
                  "--for", "--timeout", "--field-selector", "--sort-by", "-o", "--name",
                  "--from-literal", "--set"}  # fmt: skip
    positional: list[str] = []
    opts: dict[str, list[str]] = {}
    it = iter(words)
    for word in it:
        if word.startswith("-") and len(word) > 1:
            name, eq, value = word.partition("=")
            if not eq and name in with_value:
                value = next(it)
            opts.setdefault(name, []).append(value)
        else:
            positional.append(word)
    return positional, opts


def opt(opts: dict[str, list[str]], *names: str) -> list[str]:
    return [value for name in names for value in opts.get(name, [])]


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "Pod":
        return [obj["spec"]]
    if obj["kind"] in POD_TEMPLATES:
        return [obj["spec"]["template"]["spec"]]
    return []


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


@dataclass
class Cluster:
    """What exists after each command, and every problem found on the way."""

    namespaces: set[str] = field(default_factory=set)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    applied: list[Path] = field(default_factory=list)
    chart: list[dict[str, Any]] = field(default_factory=list)
    release: tuple[str, str] | None = None
    operator: OperatorConfig | None = None
    watched: list[str] = field(default_factory=list)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace", "")
        self.objects[(obj["kind"], namespace, obj["metadata"]["name"])] = obj
        if obj["kind"] == "Namespace":
            self.namespaces.add(obj["metadata"]["name"])

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        if kind == "Secret":
            return (namespace, name) in self.secrets
        if kind == "ServiceAccount" and name == "default":
            return namespace in self.namespaces
        return (kind, namespace, name) in self.objects

    # --- the checks made on every object as it is created --------------------------
    def check_object(self, obj: dict[str, Any], where: str) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        namespace = obj["metadata"].get("namespace")
        what = f"{where}: {kind} {namespace}/{name}"
        self.problems += [f"{what}: {p}" for p in validation_problems(obj)]
        if namespace is not None and namespace not in self.namespaces:
            self.problems.append(f"{what}: namespace {namespace} does not exist yet")
        for spec in pod_specs(obj):
            self.check_pod(spec, namespace or "", what)

    def check_pod(self, spec: dict[str, Any], namespace: str, what: str) -> None:
        account = spec.get("serviceAccountName") or "default"
        if not self.exists("ServiceAccount", namespace, account):
            self.problems.append(f"{what}: ServiceAccount {account} does not exist")
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                self.need("ConfigMap", namespace, volume["configMap"]["name"], what)
            if "secret" in volume:
                self.need_secret(namespace, volume["secret"]["secretName"], None, what)
        for container in containers(spec):
            image = container["image"]
            if not is_pinned(image):
                self.problems.append(f"{what}: image {image} is not pinned")
            if image.startswith("ghcr.io/example/docpipe-") and image not in self.images:
                self.problems.append(f"{what}: image {image} is not built by the quickstart")
            for item in container.get("env", []):
                source = item.get("valueFrom") or {}
                if ref := source.get("secretKeyRef"):
                    self.need_secret(namespace, ref["name"], ref["key"], what)
                if ref := source.get("configMapKeyRef"):
                    self.need("ConfigMap", namespace, ref["name"], what)
            for item in container.get("envFrom", []):
                if ref := item.get("secretRef"):
                    self.need_secret(namespace, ref["name"], None, what)
                if ref := item.get("configMapRef"):
                    self.need("ConfigMap", namespace, ref["name"], what)
            env = env_of(container)
            for variable in ("TEMPORAL_HOST", "TEMPORAL_ADDRESS", "S3_ENDPOINT", "VECTOR_DB_URL"):
                if env.get(variable):
                    self.need_address(env[variable], f"{what} {variable}")

    def need(self, kind: str, namespace: str, name: str, what: str) -> None:
        if not self.exists(kind, namespace, name):
            self.problems.append(f"{what}: {kind} {namespace}/{name} does not exist yet")

    def need_secret(self, namespace: str, name: str, key: str | None, what: str) -> None:
        secret = self.secrets.get((namespace, name))
        if secret is None:
            self.problems.append(f"{what}: Secret {namespace}/{name} does not exist yet")
        elif key is not None and key not in secret["keys"]:
            self.problems.append(f"{what}: Secret {namespace}/{name} has no key {key}")

    def need_address(self, address: str, what: str) -> None:
        """``host:port`` or a URL naming ``<service>.<namespace>.svc``: that Service
        exists and has the port."""
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        match = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?", host)
        if not match:
            return  # outside the cluster: the reader's own store
        service = self.objects.get(("Service", match.group(2), match.group(1)))
        if service is None:
            self.problems.append(f"{what}: {address}: Service {host} does not exist yet")
        elif port not in [p["port"] for p in service["spec"]["ports"]]:
            self.problems.append(f"{what}: {address}: Service {host} has no port {port}")

    def check_pipeline(self, pipeline: dict[str, Any], where: str) -> None:
        """What the operator checks before it renders anything, then its workloads."""
        namespace, name = pipeline["metadata"]["namespace"], pipeline["metadata"]["name"]
        what = f"{where}: DocumentPipeline {namespace}/{name}"
        crd = yaml.safe_load((REPO / "deploy/crds/documentpipelines.docpipe.io.yaml").read_text())
        stored, errors = admit(crd, pipeline)
        self.problems += [f"{what}: {e}" for e in errors]
        self.problems += [f"{what}: {p}" for p in problems(stored["spec"], name)]
        if self.operator is None:
            self.problems.append(f"{what}: applied before the chart installed the operator")
            return
        if namespace not in self.watched:
            self.problems.append(f"{what}: the operator watches {self.watched}, not {namespace}")
        spec = parse(stored["spec"])
        policy = self.operator.trust()
        uses = secret_uses(spec)
        labels = {
            use.name: (self.secrets[(namespace, use.name)]["labels"]
                       if (namespace, use.name) in self.secrets else None)
            for use in uses
        }  # fmt: skip
        self.problems += [f"{what}: {p}" for p in secret_problems(uses, labels, namespace, policy)]
        self.problems += [f"{what}: {p}" for p in workload_problems(spec, policy)]
        # The keys the workers read from the store Secrets (the CRD's defaults included).
        for section, keys in (("s3", ("accessKeyKey", "secretKeyKey")),
                              ("metadataDb", ("usernameKey", "passwordKey"))):  # fmt: skip
            if ref := stored["spec"].get(section, {}).get("credentialsSecretRef"):
                for key in keys:
                    self.need_secret(namespace, ref["name"], ref[key], what)
        temporal = stored["spec"]["temporal"]
        self.need_address(temporal["address"], f"{what} spec.temporal.address")
        if url := stored["spec"].get("s3", {}).get("endpoint"):
            self.need_address(url, f"{what} spec.s3.endpoint")
        if db := stored["spec"].get("metadataDb"):
            self.need_address(f"{db['host']}:{db.get('port', 5433)}", f"{what} spec.metadataDb")
        if url := stored["spec"].get("vectorDb", {}).get("url"):
            self.need_address(url, f"{what} spec.vectorDb.url")
        # What the operator then creates: valid, and using only what exists.
        body = {**stored, "metadata": {**stored["metadata"], "uid": "0000-quickstart"}}
        for manifest in operator_resources.manifests(body, spec):
            self.check_object(manifest, f"{what} (operator)")
            self.add(manifest)
        self.pipelines.append(stored)


def replay(cluster: Cluster, words: list[str]) -> None:
    line = shlex.join(words)
    tool, args = words[0], words[1:]
    positional, opts = options(args)
    namespace = (opt(opts, "-n", "--namespace") or [""])[-1]
    if tool == "deploy/build-images.sh":
        assert (REPO / tool).is_file(), line
        assert not args, f"{line}: the quickstart's images are build-images.sh's defaults"
        cluster.images |= BUILT_IMAGES
    elif tool == "kind" and positional[:2] == ["load", "docker-image"]:
        for image in positional[2:]:
            if image not in cluster.images:
                cluster.problems.append(f"{line}: {image} was not built")
    elif tool == "helm" and positional[:1] == ["upgrade"] and "--install" in opts:
        release, chart = positional[1:3]
        assert (REPO / chart).resolve() == CHART, f"{line}: not this repository's chart"
        if "--create-namespace" in opts:
            cluster.namespaces.add(namespace)
        values: dict[str, Any] = {}
        for path in opt(opts, "-f", "--values"):
            assert (REPO / path).is_file(), f"{line}: {path} does not exist"
            cluster.applied.append(REPO / path)
            values.update(yaml.safe_load((REPO / path).read_text()) or {})
        assert not opt(opts, "--set"), f"{line}: the test reads values from files only"
        found = chart_objects(values)
        operator = one(found, "Deployment")
        env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
        cluster.watched = env["DOCPIPE_OPERATOR_NAMESPACES"].split(",")
        cluster.operator = OperatorConfig(
            allowed_images=env["DOCPIPE_OPERATOR_ALLOWED_IMAGES"],  # type: ignore[arg-type]
            allowed_service_accounts=env["DOCPIPE_OPERATOR_ALLOWED_SERVICE_ACCOUNTS"],  # type: ignore[arg-type]
            own_namespace=namespace,
        )
        # Service accounts first (the operator Deployment names one), then the rest.
        for obj in sorted(found, key=lambda o: o["kind"] != "ServiceAccount"):
            if obj["kind"] == "Pod":  # the `helm test` pod: created by `helm test`
                continue
            if not obj["kind"].startswith("Cluster"):
                obj["metadata"].setdefault("namespace", namespace)
            cluster.check_object(obj, line)
            cluster.add(obj)
        cluster.chart = found
        cluster.release = (release, namespace)
    elif tool == "helm" and positional[:1] in (["test"], ["uninstall"]):
        if cluster.release != (positional[1], namespace):
            cluster.problems.append(f"{line}: no release {positional[1]} in {namespace}")
    elif tool == "kubectl":
        kubectl(cluster, line, positional, opts, namespace)
    else:
        pytest.fail(f"the quickstart test does not know the command: {line}")


def kubectl(
    cluster: Cluster, line: str, positional: list[str], opts: dict[str, list[str]], ns: str
) -> None:
    verb = positional[0]
    files = opt(opts, "-f", "--filename")
    if verb in ("apply", "delete") and files:
        for name in files:
            path = REPO / name
            assert path.is_file(), f"{line}: {name} does not exist"
            if verb == "delete":
                assert path in cluster.applied, f"{line}: {name} was never applied"
                continue
            cluster.applied.append(path)
            for obj in load_documents(path.read_text()):
                if ns:
                    obj["metadata"].setdefault("namespace", ns)
                cluster.check_object(obj, name)
                if obj["kind"] == "DocumentPipeline":
                    cluster.check_pipeline(obj, name)
                cluster.add(obj)
    elif positional[:3] == ["create", "secret", "generic"]:
        name = positional[3]
        if ns not in cluster.namespaces:
            cluster.problems.append(f"{line}: namespace {ns!r} does not exist yet")
        keys = {item.partition("=")[0] for item in opt(opts, "--from-literal")}
        cluster.secrets[(ns, name)] = {"keys": keys, "labels": {}}
    elif verb == "label" and positional[1] == "secret":
        names = [w for w in positional[2:] if "=" not in w]
        labels = dict(w.split("=", 1) for w in positional[2:] if "=" in w)
        for name in names:
            if (ns, name) not in cluster.secrets:
                cluster.problems.append(f"{line}: Secret {ns}/{name} does not exist yet")
            else:
                cluster.secrets[(ns, name)]["labels"].update(labels)
    elif verb in ("get", "describe", "wait", "logs", "port-forward", "rollout"):
        if verb == "logs" and opts.get("-f"):  # logs -f: follow, not a file
            positional = [*positional, *opts.pop("-f")]
        refs = positional[1:]
        if verb == "rollout":
            refs = refs[1:]  # rollout status|restart ...
        if verb == "port-forward":
            refs = refs[:1]  # then the ports
        kind, named = "", []
        if refs and "/" not in refs[0]:  # TYPE [NAME...]
            kind = KINDS.get(refs[0].lower(), "")
            assert kind, f"{line}: unknown resource type {refs[0]}"
            named = [(kind, name) for name in refs[1:]]
        else:  # TYPE/NAME...
            for ref in refs:
                kind_word, _, name = ref.partition("/")
                kind = KINDS.get(kind_word.lower(), "")
                assert kind, f"{line}: unknown resource type {kind_word}"
                named.append((kind, name))
        for kind_, name in named:
            if not cluster.exists(kind_, ns, name):
                cluster.problems.append(f"{line}: {kind_} {ns}/{name} does not exist")
        selectors = opt(opts, "-l", "--selector")
        for selector in selectors:
            check_selector(cluster, line, ns, kind, selector)
        if not named and not selectors and kind != "Event":
            if not any(k == kind and n == ns for k, n, _ in cluster.objects):
                cluster.problems.append(f"{line}: no {kind} in {ns}")
        for selector in opt(opts, "--field-selector"):
            fields = dict(part.split("=", 1) for part in selector.split(","))
            involved = (fields.get("involvedObject.kind"), fields.get("involvedObject.name"))
            if all(involved) and not cluster.exists(involved[0], ns, involved[1]):  # type: ignore[arg-type]
                cluster.problems.append(f"{line}: {involved[0]} {ns}/{involved[1]} does not exist")
    else:
        pytest.fail(f"the quickstart test does not know the command: {line}")


def check_selector(cluster: Cluster, line: str, ns: str, kind: str, selector: str) -> None:
    wanted = dict(part.split("=", 1) for part in selector.split(","))
    if kind == "Pod" and set(wanted) == {"job-name"}:
        # The Job controller labels its pods job-name=<job>.
        cluster.need("Job", ns, wanted["job-name"], line)
        return
    matching = [
        obj
        for (k, n, _), obj in cluster.objects.items()
        if k == kind and n == ns and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
    ]
    if not matching:
        cluster.problems.append(f"{line}: no {kind} in {ns} has the labels {selector}")


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    world = Cluster()
    for words in commands(quickstart()):
        replay(world, words)
    return world


def test_the_quickstart_has_every_step() -> None:
    """helm install, namespaces and labelled Secrets, a pipeline, a load, watching."""
    lines = [shlex.join(words) for words in commands(quickstart())]
    text = "\n".join(lines)
    assert "helm upgrade --install docpipe helm/docpipe" in text
    assert "kubectl -n docpipe create secret generic" in text
    assert f"label secret docpipe-s3 {ALLOW_LABEL}=true" in text
    for name in ("namespaces", "stores", "pipeline", "load-job"):
        assert f"kubectl apply -f deploy/quickstart/{name}.yaml" in text, name
    assert "kubectl -n docpipe get documentpipelines -w" in text
    assert "get events" in text and "describe dp docs" in text


def test_every_file_in_deploy_quickstart_is_used(cluster: Cluster) -> None:
    files = set(QUICKSTART.glob("*.yaml"))
    assert files and files <= set(cluster.applied), files - set(cluster.applied)


def test_every_object_the_quickstart_names_is_created_before_use(cluster: Cluster) -> None:
    assert cluster.problems == []


def test_the_pipeline_uses_the_stores_with_labelled_secrets(cluster: Cluster) -> None:
    (pipeline,) = cluster.pipelines
    assert pipeline["metadata"]["namespace"] in cluster.watched
    assert pipeline["metadata"]["namespace"] != cluster.release[1]  # type: ignore[index]
    spec = pipeline["spec"]
    used = {
        spec["s3"]["credentialsSecretRef"]["name"],
        spec["metadataDb"]["credentialsSecretRef"]["name"],
    }
    for name in used:
        assert cluster.secrets[("docpipe", name)]["labels"] == {ALLOW_LABEL: "true"}
    for pool in ("workflow", "cpu", "gpu", "io"):
        assert cluster.exists("Deployment", "docpipe", f"docs-{pool}"), pool


def test_without_the_label_the_operator_would_refuse_the_pipeline(cluster: Cluster) -> None:
    """The label step matters: the same replay without it finds the refusal."""
    world = Cluster()
    for words in commands(quickstart()):
        if words[:4] == ["kubectl", "-n", "docpipe", "label"]:
            continue
        replay(world, words)
    assert any("is not labelled docpipe.io/allow-reference" in p for p in world.problems)


def test_a_missing_secret_or_store_is_found() -> None:
    world = Cluster()
    for words in commands(quickstart()):
        if "secret" in words or "deploy/quickstart/stores.yaml" in words:
            continue
        replay(world, words)
    text = "\n".join(world.problems)
    assert "Secret docpipe/docpipe-s3 does not exist" in text
    assert "Service minio.docpipe.svc does not exist" in text
    assert "Service temporal-frontend.temporal.svc does not exist" in text


@pytest.fixture
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _load_job() -> tuple[dict[str, Any], dict[str, Any]]:
    found = load_documents((QUICKSTART / "load-job.yaml").read_text())
    return one(found, "ConfigMap", "docpipe-load"), one(found, "Job", "docpipe-load")


def test_the_load_jobs_script_writes_documents_docpipe_can_read(
    s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Job's script, run against a local S3: the documents are in the bucket and the
    CSV it hands to `docpipe start` parses into s3:// sources naming them."""
    import boto3

    configmap, job = _load_job()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "script")
    script = tmp_path / "make_load.py"
    script.write_text(configmap["data"]["make_load.py"])
    assert f"python {mount}/make_load.py" in container["command"][2]
    assert 'docpipe start --csv-file "$CSV_PATH"' in container["command"][2]
    csv_path = tmp_path / "documents.csv"
    for name, value in {**env, "DOCUMENTS": "12", "CSV_PATH": str(csv_path),
                        "S3_ENDPOINT": s3_server, "S3_ACCESS_KEY": "test",
                        "S3_SECRET_KEY": "test"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    runpy.run_path(str(script), run_name="__main__")
    runpy.run_path(str(script), run_name="__main__")  # a second run reuses the bucket
    documents = parse_documents_csv(csv_path.read_text())
    assert len(documents) == 12
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")  # fmt: skip
    for document in documents:
        bucket, _, key = document.source.removeprefix("s3://").partition("/")
        assert bucket == env["LOAD_BUCKET"]
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        assert len(body.split()) > 100
