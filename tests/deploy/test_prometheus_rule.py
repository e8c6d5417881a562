"""The chart's PrometheusRule: the alert rules of deploy/prometheus/alerts.yaml, each with
a runbook in docs/operations.md.

helm/docpipe/prometheus/alerts.yaml is a copy of deploy/prometheus/alerts.yaml (the file
promtool tests and the compose stack loads), rendered by templates/prometheusrule.yaml
with ``.Files.Get``: the rules cannot diverge while the copy is equal.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import helm_python as helm
import pytest
import yaml
from k8s_offline import REPO, validation_problems
from test_chart import CHART, NAMESPACE, VALUE_SETS, kinds, objects, one

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
RUNBOOKS = "https://github.com/example/docpipe/blob/main/docs/operations.md"


def _groups() -> list[dict[str, Any]]:
    return yaml.safe_load(ALERTS.read_text())["groups"]


def _alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces
    to hyphens."""
    text = re.sub(r"[`*_\[\]]|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(markdown: str) -> set[str]:
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"^#{1,6} (.+)$", line)):
            anchors.add(github_anchor(m.group(1)))
    return anchors


def test_github_anchors() -> None:
    assert github_anchor("DocpipeWorkerDown") == "docpipeworkerdown"
    assert github_anchor("Trust model: who may make the operator do what") == (
        "trust-model-who-may-make-the-operator-do-what"
    )
    assert github_anchor("Temporal TLS, mTLS and secrets") == "temporal-tls-mtls-and-secrets"


def test_the_chart_ships_a_copy_of_the_alert_rules() -> None:
    copy = CHART / "prometheus" / "alerts.yaml"
    assert copy.read_bytes() == ALERTS.read_bytes(), (
        "helm/docpipe/prometheus/alerts.yaml differs from deploy/prometheus/alerts.yaml: "
        "cp deploy/prometheus/alerts.yaml helm/docpipe/prometheus/"
    )


def test_every_alert_has_a_runbook_in_operations_md() -> None:
    alerts = _alerts(_groups())
    assert len(alerts) >= 7
    anchors = headings(OPERATIONS.read_text())
    for rule in alerts:
        url = rule["annotations"].get("runbook_url", "")
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == RUNBOOKS, (rule["alert"], url)
        assert parts.fragment == rule["alert"].lower(), (rule["alert"], url)
        assert parts.fragment in anchors, f"{rule['alert']}: no heading #{parts.fragment}"
    # Each runbook says what the alert means and what to check or do.
    text = OPERATIONS.read_text()
    for rule in alerts:
        section = text.split(f"### {rule['alert']}\n", 1)[1].split("\n#", 1)[0]
        assert "*Means*" in section and "check" in section.lower(), rule["alert"]


def test_no_prometheus_rule_by_default() -> None:
    assert not kinds(objects(), "PrometheusRule")


def test_the_rule_renders_the_alert_groups_and_validates() -> None:
    values = {
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "kube-prometheus-stack"},
            "annotations": {"team": "search"},
        }
    }
    rule = one(objects(values), "PrometheusRule")
    assert validation_problems(rule) == []
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/part-of"] == "docpipe"
    assert rule["metadata"]["annotations"] == {"team": "search"}
    assert rule["spec"]["groups"] == _groups()
    # The Prometheus Operator reads these fields; every alert keeps its templates intact.
    for alert in _alerts(rule["spec"]["groups"]):
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(alert)
        assert (
            "{{ $labels." in alert["annotations"]["summary"]
            or "{{ $value" in (alert["annotations"]["summary"])
        )


def test_the_production_value_set_ships_the_rule_for_kube_prometheus_stack() -> None:
    rule = one(objects(VALUE_SETS["production"]), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert validation_problems(rule) == []


def test_namespace_and_runbook_base_url_from_values() -> None:
    base = "https://wiki.example.com/docpipe/runbooks"
    values = {
        "prometheusRule": {"enabled": True, "namespace": "monitoring", "runbookBaseUrl": base}
    }
    rule = one(objects(values), "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    for alert in _alerts(rule["spec"]["groups"]):
        assert alert["annotations"]["runbook_url"] == f"{base}#{alert['alert'].lower()}"
    assert validation_problems(rule) == []


@pytest.mark.parametrize(
    "values",
    [
        {"prometheusRule": {"enable": True}},
        {"prometheusRule": {"enabled": "yes"}},
        {"prometheusRule": {"labels": {"release": 1}}},
        {"prometheusRule": {"runbookBaseUrl": "wiki/runbooks"}},
        {"prometheusRule": {"namespace": "Monitoring"}},
    ],
)
def test_bad_prometheus_rule_values_are_refused(values: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


def test_the_offline_schema_refuses_a_broken_rule() -> None:
    rule = one(objects({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    broken = yaml.safe_load(yaml.safe_dump(rule))
    broken["spec"]["groups"][0]["rules"][0]["for"] = "10 minutes"
    del broken["spec"]["groups"][1]["rules"][0]["expr"]
    broken["spec"]["groups"][2]["rules"][0]["record"] = "x"
    problems = validation_problems(broken)
    assert len(problems) >= 3, problems
