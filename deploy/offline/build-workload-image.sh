#!/usr/bin/env bash
# Build the runner's workload image (Dockerfile.workload) on the Python base image, with
# the legacy builder and no build context. Re-running is quick: the layer cache makes an
# unchanged build a no-op, and a changed Dockerfile or re-imported base rebuilds it.
#
# Usage: build-workload-image.sh [TAG]
#   TAG  image tag (default $MINITOWER_RUNNER_IMAGE, else minitower/workload:latest)
#
# Environment:
#   MINITOWER_RUNNER_IMAGE  default tag
#   MINITOWER_BASE_IMAGE    the Python base (default minitower/python-base:bookworm, built
#                           by build-base-image.sh; online, python:3.11-slim-bookworm works)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="${1:-${MINITOWER_RUNNER_IMAGE:-minitower/workload:latest}}"
base="${MINITOWER_BASE_IMAGE:-minitower/python-base:bookworm}"

log() { echo "build-workload-image: $*" >&2; }

# The legacy builder would try to pull a missing base from a registry; say what to do.
if ! docker image inspect "$base" >/dev/null 2>&1; then
  log "base image $base is not present: run $here/build-base-image.sh (offline)" \
    "or docker pull $base (online)"
  exit 1
fi

log "docker build $tag (FROM $base)"
# DOCKER_BUILDKIT=0: there is no buildx here, so be explicit about the legacy builder
# (newer CLIs print a deprecation notice for it; that is expected).
DOCKER_BUILDKIT=0 docker build \
  --build-arg "PYTHON_BASE=$base" \
  --tag "$tag" \
  - <"$here/Dockerfile.workload"
log "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
