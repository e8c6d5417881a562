"""What a versioned pool's Deployments look like: one per live Build ID.

Specification:
* a version's Deployment is the pool's Deployment with its own name
  (``<pipeline>-<pool>-<slug>``, at most 63 characters), its own label and
  selector (``docpipe.io/version``), the exact Build ID as an annotation, and
  WORKER_DEPLOYMENT_NAME / WORKER_BUILD_ID that no user env can override;
* two Build IDs never share a name or a selector;
* the Build ID comes from an explicit value or the image's tag or digest, and
  an image that names no stable build is refused;
* the Temporal deployment name holds no '.', which the server refuses.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
from test_resources import K8S_VERSION, built, by_name, cr, env_of

from docpipe_operator import names, resources


def version_of(build_id: str, kind: str = "workflow", env: dict[str, str] | None = None):
    body = cr()
    if env:
        body["spec"]["pools"][kind].setdefault("env", []).extend(
            {"name": k, "value": v} for k, v in env.items()
        )
    base = by_name(built(body), "Deployment", f"docs-prod-{kind}")
    return resources.versioned_deployment(
        base,
        build_id=build_id,
        temporal_deployment=names.temporal_deployment_name("docpipe", "docs-prod", kind),
        name=names.version_deployment_name("docs-prod", kind, build_id),
    )


@pytest.mark.parametrize("build_id", ["v42", "1.4.0", "sha256:" + "ab" * 32, "Release_2025+7"])
def test_a_versions_deployment_is_valid_kubernetes(build_id: str) -> None:
    kubernetes_validate.validate(version_of(build_id), K8S_VERSION, strict=True)


def test_a_version_has_its_own_name_label_selector_and_build_id() -> None:
    deployment = version_of("1.4.0")
    slug = names.version_slug("1.4.0")
    assert deployment["metadata"]["name"] == f"docs-prod-workflow-{slug}"
    assert deployment["metadata"]["labels"][names.VERSION_LABEL] == slug
    assert deployment["metadata"]["annotations"][names.BUILD_ID_ANNOTATION] == "1.4.0"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        names.PIPELINE_LABEL: "docs-prod",
        names.POOL_LABEL: "workflow",
        names.VERSION_LABEL: slug,
    }
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_its_workers_poll_as_that_version_whatever_the_user_env_says() -> None:
    deployment = version_of("v7", env={"WORKER_BUILD_ID": "other", "WORKER_DEPLOYMENT_NAME": "x"})
    env = env_of(deployment)
    assert env["WORKER_BUILD_ID"] == "v7"
    assert env["WORKER_DEPLOYMENT_NAME"] == "docpipe/docs-prod-workflow"
    names = [e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("WORKER_BUILD_ID") == 1


def test_the_pools_deployment_is_left_as_it_was() -> None:
    base = by_name(built(cr()), "Deployment", "docs-prod-workflow")
    before = repr(base)
    resources.versioned_deployment(base, build_id="v1", temporal_deployment="d", name="n")
    assert repr(base) == before


@pytest.mark.parametrize(
    ("one", "other"),
    [("1.4.0", "1-4-0"), ("V1", "v1"), ("a" * 40, "a" * 40 + "b"), ("v1", "v1-0")],
)
def test_two_build_ids_never_share_a_name(one: str, other: str) -> None:
    assert names.version_slug(one) != names.version_slug(other)
    assert names.version_deployment_name("docs-prod", "cpu", one) != names.version_deployment_name(
        "docs-prod", "cpu", other
    )


@pytest.mark.parametrize(
    ("build_id", "slug"),
    [("v42", "v42"), ("1-4-0", "1-4-0"), ("1.4.0", None), ("", None)],
)
def test_a_build_id_that_already_is_a_dns_label_is_kept_verbatim(build_id, slug) -> None:
    made = names.version_slug(build_id) if build_id else names.version_slug("-")
    if slug is not None:
        assert made == slug
    assert made and len(made) <= 24 and made[0].isalnum() and made[-1].isalnum()


def test_names_stay_within_63_characters() -> None:
    name = names.version_deployment_name("p" * 60, "workflow", "x" * 100)
    assert len(name) <= 63 and name[-1].isalnum()


@pytest.mark.parametrize(
    ("image", "explicit", "expected"),
    [
        ("ghcr.io/acme/docpipe-io:1.4.0", None, "1.4.0"),
        ("registry:5000/docpipe-io:2025-06-01", None, "2025-06-01"),
        ("ghcr.io/acme/docpipe-io@sha256:" + "0" * 64, None, "sha256:" + "0" * 64),
        ("ghcr.io/acme/docpipe-io:1.4.0", "git-3f2a9c1", "git-3f2a9c1"),
    ],
)
def test_the_build_id_is_the_explicit_one_or_the_images_tag(image, explicit, expected) -> None:
    assert names.build_id_for(image, explicit) == expected


@pytest.mark.parametrize("image", ["ghcr.io/acme/docpipe-io", "registry:5000/x", "x:latest"])
def test_an_image_that_names_no_stable_build_is_refused(image: str) -> None:
    with pytest.raises(ValueError, match="tag or digest"):
        names.build_id_for(image)


def test_the_temporal_deployment_name_has_no_dot() -> None:
    assert names.temporal_deployment_name("ns", "docs.prod", "io") == "ns/docs-prod-io"
