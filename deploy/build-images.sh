#!/usr/bin/env bash
# Build docpipe's three images from the repository root's Dockerfiles:
#
#   <registry>/docpipe-io:<tag>    Dockerfile.io   IO + workflow workers, operator, CLI
#   <registry>/docpipe-cpu:<tag>   Dockerfile.cpu  CPU worker (no torch)
#   <registry>/docpipe-gpu:<tag>   Dockerfile.gpu  GPU worker (CUDA torch, models baked in)
#
# Usage: deploy/build-images.sh [--push] [--platform linux/amd64] [image ...]
#   image: io, cpu, gpu (default: all three)
# Environment:
#   REGISTRY  image name prefix            (default: ghcr.io/example)
#   TAG       image tag                    (default: the version in pyproject.toml)
#   DOCKER    the docker-compatible client (default: docker; podman works too)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REGISTRY="${REGISTRY:-ghcr.io/example}"
DOCKER="${DOCKER:-docker}"
PUSH=false
PLATFORM=""
IMAGES=()

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while (($# > 0)); do
    case "$1" in
        --push) PUSH=true ;;
        --platform)
            [[ $# -ge 2 ]] || { echo "--platform needs a value" >&2; exit 2; }
            PLATFORM="$2"
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        io | cpu | gpu) IMAGES+=("$1") ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
((${#IMAGES[@]} > 0)) || IMAGES=(io cpu gpu)

if ! command -v "$DOCKER" >/dev/null 2>&1; then
    echo "$DOCKER not found: building images needs Docker (or DOCKER=podman)" >&2
    exit 1
fi

# The package version is the default tag, so images and chart appVersion agree.
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
TAG="${TAG:-$version}"
revision="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

for image in "${IMAGES[@]}"; do
    ref="$REGISTRY/docpipe-$image:$TAG"
    echo ">>> building $ref from Dockerfile.$image"
    args=(build
        --file "$ROOT/Dockerfile.$image"
        --tag "$ref"
        --build-arg "VERSION=$version"
        --build-arg "REVISION=$revision"
        --build-arg "CREATED=$created")
    if [[ -n "$PLATFORM" ]]; then
        args+=(--platform "$PLATFORM")
    fi
    "$DOCKER" "${args[@]}" "$ROOT"
    if [[ "$PUSH" == true ]]; then
        "$DOCKER" push "$ref"
    fi
done

echo "built: ${IMAGES[*]} ($REGISTRY/docpipe-*:$TAG)"
