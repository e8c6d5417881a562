"""A pool's ``versioning`` block: off by default, and when on, what the CRD admits
and the operator reads (the rollout policy's inputs, the Build ID, the Deployment
the spec renders)."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
import yaml
from crd_admission import admit
from pipeline_examples import REPO, example

from docpipe_operator import resources
from docpipe_operator.spec import SpecError, parse, parse_duration, problems
from docpipe_operator.versioning import RampStep, Rollout, Strategy

CRD = yaml.safe_load((REPO / "deploy" / "crds" / "documentpipelines.docpipe.io.yaml").read_text())
MINIMAL = example("minimal")


def with_workflow(**fields: Any) -> dict[str, Any]:
    obj = copy.deepcopy(MINIMAL)
    obj["spec"]["pools"]["workflow"] |= fields
    return obj


def test_pools_are_unversioned_unless_enabled() -> None:
    stored, errors = admit(CRD, copy.deepcopy(MINIMAL))
    assert errors == []
    spec = parse(stored["spec"])
    assert all(pool.versioning is None for pool in spec.pools.values())
    body = {"metadata": {"name": "docs", "namespace": "ns", "uid": "u"}}
    assert resources.pool_deployment(body, spec, "workflow")["metadata"]["name"] == (
        "docs-workflow"
    )


def test_a_versioned_pool_defaults_to_all_at_once_with_the_image_tag_as_build_id() -> None:
    obj = with_workflow(image="ghcr.io/example/docpipe-io:1.4.0", versioning={"enabled": True})
    stored, errors = admit(CRD, obj)
    assert errors == []
    versioning = parse(stored["spec"]).pools["workflow"].versioning
    assert versioning is not None
    assert versioning.build_id == "1.4.0"
    assert versioning.rollout == Rollout(
        Strategy.ALL_AT_ONCE, (), timedelta(hours=1), timedelta(hours=24)
    )
    # Objects stored before the CRD had the defaults mean the same.
    assert parse(obj["spec"]).pools["workflow"].versioning == versioning


def test_a_progressive_rollout_maps_onto_the_policy() -> None:
    obj = with_workflow(
        image="ghcr.io/example/docpipe-io:v2",
        versioning={
            "enabled": True,
            "buildId": "release-42",
            "rollout": {
                "strategy": "Progressive",
                "steps": [
                    {"rampPercentage": 10, "pauseDuration": "5m"},
                    {"rampPercentage": 50, "pauseDuration": "1h30m"},
                ],
                "scaleDownDelay": "30m",
                "deleteDelay": "0s",
            },
        },
    )
    stored, errors = admit(CRD, obj)
    assert errors == []
    spec = parse(stored["spec"])
    versioning = spec.pools["workflow"].versioning
    assert versioning is not None and versioning.build_id == "release-42"
    assert versioning.rollout == Rollout(
        Strategy.PROGRESSIVE,
        (RampStep(10, timedelta(minutes=5)), RampStep(50, timedelta(minutes=90))),
        scale_down_delay=timedelta(minutes=30),
        delete_delay=timedelta(0),
    )
    # The spec renders the target version's Deployment, not the unversioned one.
    body = {"metadata": {"name": "docs", "namespace": "ns", "uid": "u"}}
    manifest = resources.pool_deployment(body, spec, "workflow")
    assert manifest["metadata"]["name"] == "docs-workflow-release-42"
    env = {
        e["name"]: e["value"]
        for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]
        if "value" in e
    }
    assert env["WORKER_BUILD_ID"] == "release-42"
    assert env["WORKER_DEPLOYMENT_NAME"] == "ns/docs-workflow"
    assert manifest["metadata"]["annotations"][resources.SPEC_HASH_ANNOTATION] == (
        resources.spec_hash(manifest)
    ), "the fingerprint covers the version's own fields"


INVALID = {
    "latest has no version": (
        {"image": "ghcr.io/example/docpipe-io:latest", "versioning": {"enabled": True}},
        "buildId",
    ),
    "progressive without steps": (
        {
            "image": "ghcr.io/example/docpipe-io:v1",
            "versioning": {"enabled": True, "rollout": {"strategy": "Progressive"}},
        },
        "step",
    ),
    "decreasing ramp": (
        {
            "image": "ghcr.io/example/docpipe-io:v1",
            "versioning": {
                "enabled": True,
                "rollout": {
                    "strategy": "Progressive",
                    "steps": [{"rampPercentage": 50}, {"rampPercentage": 10}],
                },
            },
        },
        "increase",
    ),
    "with an external autoscaler": (
        {
            "image": "ghcr.io/example/docpipe-io:v1",
            "autoscaling": "external",
            "versioning": {"enabled": True},
        },
        "external",
    ),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_the_operator_refuses_what_a_rollout_cannot_honour(case: str) -> None:
    fields, mentioned = INVALID[case]
    obj = with_workflow(**fields)
    found = problems(obj["spec"])
    assert any(mentioned in problem for problem in found), found
    with pytest.raises(SpecError):
        parse(obj["spec"])


def test_the_crd_rejects_a_progressive_rollout_without_steps_and_bad_durations() -> None:
    no_steps = with_workflow(
        image="ghcr.io/example/docpipe-io:v1",
        versioning={"enabled": True, "rollout": {"strategy": "Progressive"}},
    )
    assert any("step" in error for error in admit(CRD, no_steps)[1])
    bad_duration = with_workflow(
        image="ghcr.io/example/docpipe-io:v1",
        versioning={"enabled": True, "rollout": {"scaleDownDelay": "an hour"}},
    )
    assert any("scaleDownDelay" in error for error in admit(CRD, bad_duration)[1])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1.5h", 5400)],
)
def test_durations_read_as_go_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
