"""The chart's optional NetworkPolicies (networkPolicy.enabled), read as a CNI would.

Each worker pool and the operator get an egress policy. Rather than compare YAML, these
tests evaluate the rendered policies the way Kubernetes does (a pod selected by an Egress
policy may reach only what some rule of those policies admits) and ask, per pool,
which destinations are reachable: the answer must be exactly what the pool needs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import helm_python as helm
import pytest
from k8s_offline import validation_problems
from test_chart import NAMESPACE, VALUE_SETS, kinds, objects, one

from docpipe_operator import POOLS
from docpipe_operator import resources as operator_resources
from docpipe_operator.spec import parse

API_SERVER = "172.18.0.2/32"
ENABLED: dict[str, Any] = {
    "networkPolicy": {
        "enabled": True,
        "apiServer": {"cidrs": [API_SERVER]},
        "objectStore": {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "storage"}
                    },
                    "podSelector": {"matchLabels": {"app": "minio"}},
                }
            ],
            "ports": [{"port": 9000, "protocol": "TCP"}],
        },
        "postgres": {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "databases"}
                    },
                    "podSelector": {"matchLabels": {"app": "postgresql"}},
                }
            ]
        },
        "vectorDb": {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "databases"}
                    },
                    "podSelector": {"matchLabels": {"app": "chroma"}},
                }
            ]
        },
    }
}


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class Destination:
    """An in-cluster pod (namespace + labels) or an address, and a port."""

    port: int
    protocol: str = "TCP"
    ip: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False)


DESTINATIONS = {
    "dns": Destination(53, "UDP", namespace="kube-system", labels={"k8s-app": "kube-dns"}),
    "temporal": Destination(7233, namespace="temporal", labels={"app": "temporal"}),
    "object store": Destination(9000, namespace="storage", labels={"app": "minio"}),
    "postgres": Destination(5432, namespace="databases", labels={"app": "postgresql"}),
    "chroma": Destination(8000, namespace="databases", labels={"app": "chroma"}),
    "internet": Destination(443, ip="93.184.216.34"),
    "internet v6": Destination(443, ip="2606:4700::1111"),
    "cloud metadata": Destination(80, ip="169.254.169.254"),
    "metadata v6": Destination(80, ip="fd00:ec2::254"),
    "api server": Destination(6443, ip="172.18.0.2"),
    "another pod": Destination(8080, ip="10.244.1.7"),
    "a service IP": Destination(443, ip="10.96.0.1"),
    "an unrelated pod": Destination(5432, namespace="payments", labels={"app": "postgresql"}),
}


def _worker_metrics(port: int) -> Destination:
    """A worker pod of the watched namespace, as the operator labels it, on ``port``."""
    return Destination(port, namespace=NAMESPACE, labels=worker_pod("cpu").labels)


NEEDS = {
    "workflow": {"dns", "temporal"},
    "cpu": {"dns", "temporal", "object store"},
    "gpu": {"dns", "temporal", "object store"},
    "io": {"dns", "temporal", "object store", "postgres", "chroma", "internet", "internet v6"},
    # Worker /metrics: in-flight activities per pod before a scale-down (drain.py).
    "operator": {"dns", "temporal", "api server", "a worker's metrics"},
}


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    assert not (selector or {}).get("matchExpressions"), "only matchLabels is evaluated here"
    return ((selector or {}).get("matchLabels") or {}).items() <= labels.items()


def _peer_admits(peer: dict[str, Any], policy_namespace: str, to: Destination) -> bool:
    if "ipBlock" in peer:
        if to.ip is None:
            return False  # pod IPs fall in the blocked private ranges; judged by selectors
        address = ipaddress.ip_address(to.ip)
        block = peer["ipBlock"]
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if to.namespace is None:
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": to.namespace}
        if not _matches(peer["namespaceSelector"], namespace_labels):
            return False
    elif to.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or _matches(peer["podSelector"], to.labels)


def _port_admits(ports: list[dict[str, Any]] | None, to: Destination) -> bool:
    return not ports or any(
        p.get("protocol", "TCP") == to.protocol
        and p["port"] <= to.port <= p.get("endPort", p["port"])
        for p in ports
    )


def reachable(policies: list[dict[str, Any]], pod: Pod, to: Destination) -> bool:
    """Kubernetes' egress semantics: unselected pods reach everything; selected pods reach
    what any rule of any selecting policy admits (a rule without `to` admits every peer)."""
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and "Egress" in p["spec"]["policyTypes"]
        and _matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    return any(
        _port_admits(rule.get("ports"), to)
        and (
            "to" not in rule
            or any(_peer_admits(peer, p["metadata"]["namespace"], to) for peer in rule["to"])
        )
        for p in selecting
        for rule in p["spec"].get("egress") or []
    )


def worker_pod(kind: str, namespace: str = NAMESPACE) -> Pod:
    """A worker pod exactly as the operator labels it (resources.py)."""
    body = {"metadata": {"name": "docs", "namespace": namespace, "uid": "u"}}
    pools = {k: {"image": f"ghcr.io/example/docpipe-{k}:1"} for k in POOLS}
    spec = parse({"temporal": {"address": "t:7233"}, "pools": pools})
    deployment = operator_resources.deployment(body, spec, kind)
    return Pod(namespace, deployment["spec"]["template"]["metadata"]["labels"])


def operator_pod(found: list[dict[str, Any]]) -> Pod:
    template = one(found, "Deployment")["spec"]["template"]
    return Pod(NAMESPACE, template["metadata"]["labels"])


DESTINATIONS["a worker's metrics"] = _worker_metrics(9100)
DESTINATIONS["a worker's other port"] = _worker_metrics(9101)


def test_no_network_policy_unless_enabled() -> None:
    assert not kinds(objects(), "NetworkPolicy")


@pytest.mark.parametrize("kind", [*POOLS, "operator"])
def test_each_pool_reaches_exactly_what_it_needs(kind: str) -> None:
    found = objects(ENABLED)
    policies = kinds(found, "NetworkPolicy")
    pod = operator_pod(found) if kind == "operator" else worker_pod(kind)
    allowed = {name for name, to in DESTINATIONS.items() if reachable(policies, pod, to)}
    assert allowed == NEEDS[kind]


def test_each_pool_is_selected_by_its_own_policy_only() -> None:
    """Policies add up: a pod selected by two would get both pools' egress."""
    policies = kinds(objects(ENABLED), "NetworkPolicy")
    for kind in POOLS:
        pod = worker_pod(kind)
        selecting = [
            p["metadata"]["name"]
            for p in policies
            if p["metadata"]["namespace"] == pod.namespace
            and _matches(p["spec"]["podSelector"], pod.labels)
        ]
        assert selecting == [f"docpipe-{kind}-worker"]


def test_policies_follow_the_workers_into_their_namespaces() -> None:
    """The workers live where the pipelines are: each watched namespace gets the pools'
    policies; the operator's stays in the release namespace."""
    found = objects(VALUE_SETS["namespaced"] | ENABLED)
    policies = kinds(found, "NetworkPolicy")
    for namespace in ("docpipe", "search"):
        for kind in POOLS:
            names = [
                p["metadata"]["name"] for p in policies if p["metadata"]["namespace"] == namespace
            ]
            assert sorted(names) == sorted(f"docpipe-{k}-worker" for k in POOLS)
            pod = worker_pod(kind, namespace)
            assert not reachable(policies, pod, DESTINATIONS["cloud metadata"])
    assert [
        p["metadata"]["namespace"] for p in policies if "operator" in p["metadata"]["name"]
    ] == [NAMESPACE]


@pytest.mark.parametrize("value_set", ["production", "cluster-wide"])
def test_rendered_policies_are_valid_and_their_exceptions_lie_in_their_cidrs(
    value_set: str,
) -> None:
    """The schema check, plus the API server's rule that each `except` lies within its
    `cidr` (of the same address family), and that no rule lacks `to` (every address)."""
    policies = kinds(objects(VALUE_SETS[value_set]), "NetworkPolicy")
    assert len(policies) >= 5
    for policy in policies:
        assert validation_problems(policy) == [], policy["metadata"]["name"]
        for rule in policy["spec"]["egress"]:
            assert rule.get("to"), f"{policy['metadata']['name']}: a rule open to every address"
            for peer in rule["to"]:
                if block := peer.get("ipBlock"):
                    cidr = ipaddress.ip_network(block["cidr"])
                    for entry in block.get("except", []):
                        excluded = ipaddress.ip_network(entry)
                        assert excluded.version == cidr.version and excluded.subnet_of(cidr)  # type: ignore[arg-type]


def test_a_destination_without_peers_opens_nothing() -> None:
    """By default the stores' destinations are empty: the cpu workers then reach no object
    store at all, rather than every address on its ports."""
    values = {"networkPolicy": {"enabled": True, "apiServer": {"cidrs": [API_SERVER]}}}
    policies = kinds(objects(values), "NetworkPolicy")
    pod = worker_pod("cpu")
    assert not reachable(policies, pod, DESTINATIONS["object store"])
    assert not reachable(policies, pod, Destination(9000, ip="93.184.216.34"))
    assert reachable(policies, pod, DESTINATIONS["temporal"])


def test_an_api_server_on_a_public_address_is_kept_from_the_io_workers() -> None:
    values = {
        "networkPolicy": {
            **ENABLED["networkPolicy"],
            "apiServer": {"cidrs": ["203.0.113.10/32", "2001:db8::10/128"]},
        }
    }
    found = objects(values)
    policies = kinds(found, "NetworkPolicy")
    for ip in ("203.0.113.10", "2001:db8::10"):
        api_server = Destination(443, ip=ip)
        assert not reachable(policies, worker_pod("io"), api_server)
        assert reachable(policies, operator_pod(found), api_server)


def test_the_io_workers_can_be_kept_off_the_internet() -> None:
    values = {"networkPolicy": {**ENABLED["networkPolicy"], "internet": {"enabled": False}}}
    policies = kinds(objects(values), "NetworkPolicy")
    assert not reachable(policies, worker_pod("io"), DESTINATIONS["internet"])
    assert reachable(policies, worker_pod("io"), DESTINATIONS["postgres"])


def test_enabling_policies_without_the_api_server_is_refused() -> None:
    """Without it the operator would lose the API server the moment the policy applies."""
    with pytest.raises(helm.HelmRenderError, match=r"networkPolicy\.apiServer\.cidrs is required"):
        objects({"networkPolicy": {"enabled": True}})
