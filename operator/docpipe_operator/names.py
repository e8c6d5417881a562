"""What the objects a DocumentPipeline owns are called and how they are labelled. Pure.

A Deployment's name and selector never change once it exists, so they are
decided here, apart from what the manifests contain (resources.py). A versioned
pool (docs/operator.md, "Rollouts") has one Deployment per live Build ID, named
and labelled after a DNS-safe form of it; the spec renders the target version's,
the others keep the template they were made with (rollout.py scales and deletes them).
"""

from __future__ import annotations

import hashlib

PIPELINE_LABEL = "docpipe.io/pipeline"
POOL_LABEL = "docpipe.io/pool"
MANAGED_BY = "docpipe-operator"
VERSION_LABEL = "docpipe.io/version"
"""Label (and selector) of a version's Deployment and pods: a DNS-safe form of the Build ID."""
BUILD_ID_ANNOTATION = "docpipe.io/build-id"
"""The exact Build ID, which a label value may not be able to hold."""
_SLUG_MAX = 24
_NAME_MAX = 63


def deployment_name(pipeline: str, kind: str) -> str:
    return f"{pipeline}-{kind}"


def service_name(pipeline: str, kind: str) -> str:
    return f"{pipeline}-{kind}-metrics"


def disruption_budget_name(pipeline: str, kind: str) -> str:
    return f"{pipeline}-{kind}"


def selector_labels(pipeline: str, kind: str) -> dict[str, str]:
    """Immutable once a Deployment exists: keep these two forever."""
    return {PIPELINE_LABEL: pipeline, POOL_LABEL: kind}


def labels(pipeline: str, kind: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "docpipe",
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": f"{kind}-worker",
        "app.kubernetes.io/part-of": "docpipe",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(pipeline, kind),
    }


def build_id_for(image: str, explicit: str | None = None) -> str:
    """The Build ID of a pool's workers: the explicit one, else the image's tag or digest.

    A Build ID names the workflow code; an image without a tag or digest (or
    tagged ``latest``) names nothing stable, so it is refused rather than guessed.
    """
    if explicit:
        return explicit
    name, at, digest = image.partition("@")
    if at:
        return digest
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if not tag or tag == "latest":
        raise ValueError(
            f"image {image!r} has no tag or digest: a versioned pool needs one, or a buildId"
        )
    return tag


def temporal_deployment_name(namespace: str, pipeline: str, kind: str) -> str:
    """The pool's Temporal Worker Deployment: one per namespace, pipeline and pool.

    Temporal refuses a '.' in it (a DocumentPipeline name may have dots); '/' is fine.
    """
    return f"{namespace}/{pipeline}-{kind}".replace(".", "-")


def version_slug(build_id: str) -> str:
    """A label-value and DNS-label-safe form of ``build_id``, unique per Build ID.

    Kept verbatim when it already is one (``v42``, ``1-4-0``); otherwise cleaned
    and suffixed with a hash of the original, so ``1.4.0`` and ``1-4-0`` differ.
    """
    cleaned = "".join(c if c.isalnum() else "-" for c in build_id.lower()).strip("-")
    if cleaned == build_id and 0 < len(cleaned) <= _SLUG_MAX:
        return cleaned
    digest = hashlib.sha256(build_id.encode()).hexdigest()[:8]
    head = cleaned[: _SLUG_MAX - len(digest) - 1].strip("-")
    return f"{head}-{digest}" if head else digest


def version_deployment_name(pipeline: str, kind: str, build_id: str) -> str:
    """``<pipeline>-<pool>-<slug>``, at most 63 characters (pod names derive from it)."""
    slug = version_slug(build_id)
    prefix = deployment_name(pipeline, kind)[: _NAME_MAX - len(slug) - 1].rstrip("-")
    return f"{prefix}-{slug}"
