"""The docpipe Kubernetes operator: owns the worker Deployments of each
DocumentPipeline and scales them from Temporal task-queue backlog.

Run it with ``python -m docpipe_operator``; docs/operator.md explains the
resource, docs/scaling.md the policy.
"""

GROUP = "docpipe.io"
VERSION = "v1alpha1"
PLURAL = "documentpipelines"
KIND = "DocumentPipeline"
SHORT_NAME = "dp"
API_VERSION = f"{GROUP}/{VERSION}"

POOLS = ("workflow", "cpu", "gpu", "io")
"""The worker types, in the order they are shown; each is one Deployment."""
