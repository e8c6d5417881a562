"""Apply CustomResourceDefinitions from YAML files: the chart's CRD upgrade hook.

Helm installs the files in a chart's ``crds/`` once and never upgrades them, so a
chart upgrade whose CRD gained a field would leave the old schema in place, and
the API server would prune the new field from every DocumentPipeline. The chart
therefore runs ``python -m docpipe_operator.crd_install FILE...`` as a
pre-install/pre-upgrade hook Job, from a ConfigMap rendered from that same
``crds/`` file, in the operator's own image (no kubectl image to trust or pull).

Each CRD is server-side applied (field manager ``docpipe-crd-upgrade``, forced:
Helm's own create left it owned by ``helm``), then awaited until ``Established``,
so the operator that the upgrade starts next never sees the old schema.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from docpipe_operator.kube import APPLY_PATCH
from docpipe_operator.kube_login import load_configuration

log = logging.getLogger(__name__)

FIELD_MANAGER = "docpipe-crd-upgrade"
ESTABLISHED_TIMEOUT_S = 60.0


def crds_in(texts: Iterable[str]) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the YAML ``texts``; anything else is refused
    (the hook's ClusterRole could not apply it anyway, and a stray object means the
    ConfigMap is not what the chart rendered)."""
    found = []
    for text in texts:
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            if doc.get("kind") != "CustomResourceDefinition":
                raise ValueError(f"not a CustomResourceDefinition: {doc.get('kind')}")
            found.append(doc)
    return found


def established(crd: Any) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


async def apply(crds: list[dict[str, Any]], *, timeout_s: float = ESTABLISHED_TIMEOUT_S) -> None:
    async with client.ApiClient(await load_configuration()) as api:
        extensions = client.ApiextensionsV1Api(api)
        for crd in crds:
            name = crd["metadata"]["name"]
            await extensions.patch_custom_resource_definition(
                name, crd, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH
            )
            log.info("applied CustomResourceDefinition %s", name)
            deadline = time.monotonic() + timeout_s
            while not established(await extensions.read_custom_resource_definition(name)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not Established after {timeout_s:g} s")
                await asyncio.sleep(1)
            log.info("%s is Established", name)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not argv:
        print("usage: python -m docpipe_operator.crd_install FILE...", file=sys.stderr)
        return 2
    crds = crds_in(Path(path).read_text() for path in argv)
    asyncio.run(apply(crds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
