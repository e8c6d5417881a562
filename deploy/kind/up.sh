#!/usr/bin/env bash
# docpipe on a local kind cluster, end to end:
#   1. create the kind cluster (deploy/kind/cluster.yaml) unless it exists
#   2. build the three images (deploy/build-images.sh) and load them into the cluster
#   3. deploy what a pipeline talks to (deploy/kind/dependencies.yaml): Temporal,
#      MinIO, PostgreSQL, ChromaDB, and an HTTP server for testdata/docs
#   4. install the chart (helm/docpipe with deploy/kind/values.yaml) and run `helm test`
#   5. apply deploy/examples/minimal.yaml, pointed at those stores
#      (deploy/kind/pipeline-patch.yaml)
#   6. start a load (`docpipe start` over DOCUMENTS rows, deploy/kind/load-job.yaml)
#      and watch the operator scale the pools until the load is done
#
# Needs: docker, kind, kubectl, helm. Usage: deploy/kind/up.sh [--skip-build] [--down]
# Environment:
#   CLUSTER_NAME   kind cluster name                    (default: docpipe)
#   DOCUMENTS      rows in the load CSV                 (default: 400)
#   WATCH_SECONDS  longest time to watch the scaling    (default: 900)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KIND_DIR="$ROOT/deploy/kind"
CLUSTER_NAME="${CLUSTER_NAME:-docpipe}"
DOCUMENTS="${DOCUMENTS:-400}"
WATCH_SECONDS="${WATCH_SECONDS:-900}"
# deploy/examples/minimal.yaml names these images: build-images.sh's defaults.
REGISTRY="ghcr.io/example"
TAG="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
RELEASE=docpipe
RELEASE_NAMESPACE=docpipe-system
PIPELINE_NAMESPACE=docpipe
PIPELINE=docs
BUILD=true

log() { printf '\n>>> %s\n' "$*"; }

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "missing tool: $tool (see docs/deployment.md)" >&2
            exit 1
        }
    done
}

create_cluster() {
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
        log "kind cluster $CLUSTER_NAME exists"
    else
        log "creating kind cluster $CLUSTER_NAME"
        kind create cluster --name "$CLUSTER_NAME" --config "$KIND_DIR/cluster.yaml" --wait 120s
    fi
    kubectl config use-context "kind-$CLUSTER_NAME" >/dev/null
}

build_and_load_images() {
    local image
    if [[ "$BUILD" == true ]]; then
        log "building images $REGISTRY/docpipe-{io,cpu,gpu}:$TAG"
        REGISTRY="$REGISTRY" TAG="$TAG" "$ROOT/deploy/build-images.sh"
    fi
    for image in io cpu gpu; do
        log "loading $REGISTRY/docpipe-$image:$TAG into $CLUSTER_NAME"
        kind load docker-image --name "$CLUSTER_NAME" "$REGISTRY/docpipe-$image:$TAG"
    done
}

deploy_dependencies() {
    log "deploying Temporal, MinIO, PostgreSQL, ChromaDB and the sample documents"
    kubectl apply -f "$KIND_DIR/dependencies.yaml"
    kubectl -n "$PIPELINE_NAMESPACE" create configmap sample-docs \
        --from-file="$ROOT/testdata/docs" --dry-run=client -o yaml | kubectl apply -f -
    kubectl -n temporal rollout status deploy/temporal --timeout=300s
    local name
    for name in minio postgres chroma sample-docs; do
        kubectl -n "$PIPELINE_NAMESPACE" rollout status "deploy/$name" --timeout=300s
    done
}

install_chart() {
    log "installing the chart as release $RELEASE in $RELEASE_NAMESPACE"
    helm upgrade --install "$RELEASE" "$ROOT/helm/docpipe" \
        --namespace "$RELEASE_NAMESPACE" --create-namespace \
        --values "$KIND_DIR/values.yaml" \
        --set "images.io.tag=$TAG,images.cpu.tag=$TAG,images.gpu.tag=$TAG" \
        --wait --timeout 5m
    helm test "$RELEASE" --namespace "$RELEASE_NAMESPACE" --logs
}

apply_pipeline() {
    log "applying deploy/examples/minimal.yaml (pipeline $PIPELINE)"
    kubectl apply -f "$ROOT/deploy/examples/minimal.yaml"
    kubectl -n "$PIPELINE_NAMESPACE" patch documentpipeline "$PIPELINE" --type merge \
        --patch-file "$KIND_DIR/pipeline-patch.yaml"
    local kind
    for kind in workflow cpu gpu io; do
        kubectl -n "$PIPELINE_NAMESPACE" wait --for=create "deploy/$PIPELINE-$kind" --timeout=120s
        kubectl -n "$PIPELINE_NAMESPACE" rollout status "deploy/$PIPELINE-$kind" --timeout=600s
    done
}

start_load() {
    log "starting a load of $DOCUMENTS documents"
    local csv files row=0
    csv="$(mktemp)"
    mapfile -t files < <(find "$ROOT/testdata/docs" -maxdepth 1 -type f -printf '%f\n' | sort)
    echo "url,title,content_type,tags" >"$csv"
    while ((row < DOCUMENTS)); do
        local file="${files[row % ${#files[@]}]}"
        # A query string per row: a distinct source, so a distinct document id.
        echo "http://sample-docs.$PIPELINE_NAMESPACE.svc:8080/$file?copy=$row,$file $row,,kind" >>"$csv"
        row=$((row + 1))
    done
    kubectl -n "$PIPELINE_NAMESPACE" create configmap load-csv \
        --from-file=documents.csv="$csv" --dry-run=client -o yaml | kubectl apply -f -
    rm -f "$csv"
    kubectl -n "$PIPELINE_NAMESPACE" delete job docpipe-load --ignore-not-found
    kubectl apply -f "$KIND_DIR/load-job.yaml"
}

watch_scaling() {
    log "watching $PIPELINE scale (Ctrl-C stops watching; the cluster keeps running)"
    local deadline=$((SECONDS + WATCH_SECONDS)) succeeded failed
    while ((SECONDS < deadline)); do
        echo "--- $(date +%H:%M:%S)"
        kubectl -n "$PIPELINE_NAMESPACE" get documentpipeline "$PIPELINE"
        kubectl -n "$PIPELINE_NAMESPACE" get deployments \
            -l "docpipe.io/pipeline=$PIPELINE" -o wide --no-headers
        succeeded="$(kubectl -n "$PIPELINE_NAMESPACE" get job docpipe-load -o jsonpath='{.status.succeeded}')"
        failed="$(kubectl -n "$PIPELINE_NAMESPACE" get job docpipe-load -o jsonpath='{.status.failed}')"
        if [[ "${succeeded:-0}" -ge 1 || "${failed:-0}" -ge 1 ]]; then
            kubectl -n "$PIPELINE_NAMESPACE" logs job/docpipe-load --tail=40
            break
        fi
        sleep 10
    done
    log "scale decisions (Events)"
    kubectl -n "$PIPELINE_NAMESPACE" get events \
        --field-selector "involvedObject.kind=DocumentPipeline,involvedObject.name=$PIPELINE" \
        --sort-by=.lastTimestamp
    echo
    echo "The pools scale back down after the stabilisation window: kubectl -n $PIPELINE_NAMESPACE get dp -w"
    echo "Temporal UI: kubectl -n temporal port-forward svc/temporal-frontend 8088  (http://localhost:8088)"
    echo "Remove everything: $0 --down"
}

main() {
    while (($# > 0)); do
        case "$1" in
            --skip-build) BUILD=false ;;
            --down)
                need kind
                kind delete cluster --name "$CLUSTER_NAME"
                exit 0
                ;;
            -h | --help) usage; exit 0 ;;
            *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
        esac
        shift
    done
    need docker kind kubectl helm
    create_cluster
    build_and_load_images
    deploy_dependencies
    install_chart
    apply_pipeline
    start_load
    watch_scaling
}

main "$@"
