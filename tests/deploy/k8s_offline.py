"""Kubernetes objects checked offline, the way an API server would check them.

There is no cluster here, so every rendered or hand-written object goes through:

* built-in kinds: ``kubernetes-validate`` against the Kubernetes 1.37 OpenAPI schemas,
  strict (an unknown field is an error, as with ``kubectl apply --validate=strict``);
* our custom resources (``docpipe.io``, ``kopf.dev``): the CRDs in ``deploy/crds/``,
  through ``tests/operator/crd_admission.py`` (structural defaults, the openAPI schema
  closed against unknown fields, then the CEL rules);
* Prometheus Operator objects (``monitoring.coreos.com/v1`` ServiceMonitor, PodMonitor,
  PrometheusRule):
  their CRDs are not available offline, so :data:`MONITORING_SCHEMAS` is a schema of our
  own for the fields the chart uses, closed against unknown fields (field names, types and
  the Duration pattern follow the prometheus-operator API);
* every object: a DNS-valid name and namespace.

YAML is read with a loader that rejects duplicate keys: a template that emits one label
twice is a bug even where the API server would silently keep the last.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.37.0"

# crd_admission lives with the operator tests; both suites use the same admission model.
sys.path.insert(0, str(REPO / "tests" / "operator"))
from crd_admission import admit  # noqa: E402

BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "policy",
    "networking.k8s.io",
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A label key ([prefix/]name) and value, as the API server checks them.
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# A full version (major.minor.patch, optionally suffixed), MinIO's release stamp, or a
# digest: "python:3.11-slim" or "latest" float and are refused.
PINNED = re.compile(
    r"^[a-z0-9][a-z0-9./_-]*"
    r"(:v?[0-9]+\.[0-9]+\.[0-9]+[-+.A-Za-z0-9_]*|:RELEASE\.[0-9TZ-]+)?"
    r"(@sha256:[a-f0-9]{64})?$"
)


# Images whose exact releases have two numbers (PostgreSQL 17.6 is a patch release).
TWO_PART_VERSIONS = re.compile(r"^postgres:[0-9]+\.[0-9]+(-[a-z0-9]+)?$")


def is_pinned(image: str) -> bool:
    if TWO_PART_VERSIONS.match(image):
        return True
    return bool(PINNED.match(image)) and (":" in image.split("/")[-1] or "@sha256:" in image)


class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``text``; duplicate keys are an error."""
    return [doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc]


def _crds() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
        for crd in load_documents(path.read_text()):
            found[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = crd
    return found


CRDS = _crds()

# --- Prometheus Operator (monitoring.coreos.com/v1): the fields the chart uses ----------
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": {"type": "object"}},
    },
}
_NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}
_RELABELINGS = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "sourceLabels": {
                "type": "array",
                "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"},
            },
            "separator": {"type": "string"},
            "targetLabel": {"type": "string"},
            "regex": {"type": "string"},
            "replacement": {"type": "string"},
            "action": {"type": "string"},
        },
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "path": {"type": "string"},
        "scheme": {"enum": ["http", "https"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "relabelings": _RELABELINGS,
        "metricRelabelings": _RELABELINGS,
    },
}
_METADATA = {"type": "object", "required": ["name", "namespace"]}


def _monitoring_object(
    kind: str, required: list[str], properties: dict[str, Any]
) -> dict[str, Any]:
    """A monitoring.coreos.com/v1 ``kind``: the envelope all of them share, and a spec of
    exactly ``properties`` (``required`` among them)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": required,
                "properties": properties,
            },
        },
    }


_MONITOR_TARGETS = {
    "selector": _LABEL_SELECTOR,
    "namespaceSelector": _NAMESPACE_SELECTOR,
    "jobLabel": {"type": "string"},
}
"""What a ServiceMonitor and a PodMonitor select, and how they name the job."""
_ENDPOINTS = {"type": "array", "minItems": 1, "items": _ENDPOINT}
MONITORING_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _monitoring_object(
        "ServiceMonitor", ["selector", "endpoints"], {**_MONITOR_TARGETS, "endpoints": _ENDPOINTS}
    ),
    "PodMonitor": _monitoring_object(
        "PodMonitor",
        ["selector", "podMetricsEndpoints"],
        {
            **_MONITOR_TARGETS,
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "podMetricsEndpoints": _ENDPOINTS,
        },
    ),
}


# PrometheusRule (monitoring.coreos.com/v1): the rule-group fields of the prometheus-operator
# API (RuleGroup, Rule); a rule is an alert or a recording rule, never both.
_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "properties": {
        "alert": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"},
        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
        "expr": {"type": "string", "minLength": 1},
        "for": _DURATION,
        "keep_firing_for": _DURATION,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
MONITORING_SCHEMAS["PrometheusRule"] = _monitoring_object(
    "PrometheusRule",
    ["groups"],
    {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "rules"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": _DURATION,
                    "limit": {"type": "integer", "minimum": 0},
                    "partial_response_strategy": {"type": "string"},
                    "rules": {"type": "array", "items": _RULE},
                },
            },
        },
    },
)


def _with_object_meta(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD with apiVersion, kind and metadata allowed at the root, as the API server
    always allows them (kopf's peering CRDs declare only ``status``)."""
    crd = copy.deepcopy(crd)
    for version in crd["spec"]["versions"]:
        properties = version["schema"]["openAPIV3Schema"].setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    return crd


def _metadata_problems(obj: dict[str, Any]) -> list[str]:
    problems = []
    metadata = obj.get("metadata") or {}
    name = metadata.get("name", "")
    if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
        problems.append(f"metadata.name {name!r} is not a DNS subdomain")
    namespace = metadata.get("namespace")
    if namespace is not None and (not DNS_LABEL.match(namespace) or len(namespace) > 63):
        problems.append(f"metadata.namespace {namespace!r} is not a DNS label")
    for key, value in (metadata.get("labels") or {}).items():
        if not LABEL_KEY.match(key) or not isinstance(value, str) or len(value) > 63:
            problems.append(f"label {key}={value!r} is invalid")
        elif not LABEL_VALUE.match(value):
            problems.append(f"label value {key}={value!r} is invalid")
    return problems


def validation_problems(obj: dict[str, Any]) -> list[str]:
    """Why the API server would refuse ``obj`` (empty: it would accept it)."""
    api_version = obj.get("apiVersion", "")
    group = api_version.rpartition("/")[0]
    kind = obj.get("kind", "")
    problems = _metadata_problems(obj)
    if group in BUILTIN_GROUPS:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{kind}: {err.message} at {list(err.path)}")
    elif (group, kind) in CRDS:
        crd = CRDS[(group, kind)]
        served = [v["name"] for v in crd["spec"]["versions"] if v["served"]]
        if api_version.rpartition("/")[2] not in served:
            problems.append(f"{kind}: version {api_version} is not served by its CRD")
        problems += [f"{kind}: {error}" for error in admit(_with_object_meta(crd), obj)[1]]
    elif group == "monitoring.coreos.com" and kind in MONITORING_SCHEMAS:
        validator = jsonschema.Draft7Validator(MONITORING_SCHEMAS[kind])
        problems += [
            f"{kind}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    else:
        problems.append(f"no schema for {api_version} {kind}")
    return problems
