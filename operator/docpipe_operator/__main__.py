"""``python -m docpipe_operator``: run the operator (what its container runs).

Configuration is the DOCPIPE_OPERATOR_* environment (config.py). Replicas
coordinate through kopf peering: every replica draws its own priority and
only the highest live one handles objects, so a rolling update or two
replicas never fight over the same Deployments.
"""

from __future__ import annotations

import logging

import kopf
from prometheus_client import start_http_server

from docpipe_operator import handlers  # noqa: F401  (registers the handlers)
from docpipe_operator.config import OperatorConfig, load


def run_kwargs(config: OperatorConfig) -> dict[str, object]:
    """kopf.run arguments for ``config`` (split out so a test can check them)."""
    # Namespaced unless asked otherwise: the operator's rights (Secrets, Deployments)
    # should reach no further than the pipelines it serves.
    namespaces = config.watched()
    kwargs: dict[str, object] = {
        "clusterwide": config.cluster_wide,
        "namespaces": namespaces,
        "standalone": config.standalone,
        "priority": config.priority,
    }
    if not config.standalone:
        kwargs["peering_name"] = config.peering
    if config.health_port:
        kwargs["liveness_endpoint"] = f"http://0.0.0.0:{config.health_port}/healthz"
    return kwargs


def main() -> None:
    config = load()
    kopf.configure(
        debug=config.log_level == "DEBUG", quiet=config.log_level == "WARNING", log_prefix=True
    )
    logging.getLogger("docpipe_operator").setLevel(config.log_level)
    if config.metrics_port:
        start_http_server(config.metrics_port)
    kopf.run(**run_kwargs(config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
