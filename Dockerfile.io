# syntax=docker/dockerfile:1
#
# docpipe-io: the light image. One image, four programs, chosen by the command:
#   docpipe worker io          the IO worker (default command)
#   docpipe worker workflow    the workflow worker
#   python -m docpipe_operator the Kubernetes operator (the helm chart's Deployment)
#   docpipe start / status     the CLI
# Installs only the `io` and `operator` extras: no torch, no text-processing libraries,
# and Chroma's HTTP client (chromadb-client), not the server with its onnxruntime,
# tokenizers and uvicorn.
#
# Build from the repository root (deploy/build-images.sh builds all three images):
#   docker build -f Dockerfile.io -t docpipe-io:0.1.0 .

# --- build: a virtualenv with docpipe[io,operator], pinned by constraints.txt -------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY operator ./operator
RUN pip install -c constraints.txt ".[io,operator]" \
    && python -c "import docpipe.workers.io, docpipe.workers.workflow, docpipe.client.cli, docpipe_operator.handlers"

# --- runtime: the virtualenv on a clean slim base, as an unprivileged user ---------------
FROM python:3.11.14-slim-bookworm AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/example/docpipe
LABEL org.opencontainers.image.title="docpipe-io" \
      org.opencontainers.image.description="docpipe IO worker, workflow worker, Kubernetes operator and CLI" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="docpipe" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"

# 65532: the UID the operator's Deployment runs as (deploy/operator/deployment.yaml).
RUN groupadd --system --gid 65532 docpipe \
    && useradd --system --uid 65532 --gid 65532 --home-dir /home/docpipe --create-home \
       --shell /usr/sbin/nologin docpipe

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/docpipe \
    HF_HUB_OFFLINE=1 \
    DOWNLOAD_SCHEMES=http,https,s3 \
    METRICS_PORT=9100 \
    SDK_METRICS_PORT=9101

USER 65532:65532
WORKDIR /home/docpipe

# 9100 worker /metrics, 9101 Temporal SDK metrics, 9090 operator /metrics, 8080 operator /healthz.
EXPOSE 9100 9101 9090 8080

# Workers serve /metrics from their first second (Kubernetes probes the same endpoint).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:' + os.environ.get('METRICS_PORT', '9100') + '/metrics', timeout=4)"]

CMD ["docpipe", "worker", "io"]
