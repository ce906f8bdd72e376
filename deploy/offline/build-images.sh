#!/usr/bin/env bash
# Build every image compose.yaml needs on a host with a Docker engine but no registry
# and no network inside builds:
#   1. the Python base (build-base-image.sh: mmdebstrap + docker import), unless
#      MINITOWER_PYTHON_BASE names a base that is already present;
#   2. a wheelhouse of every third-party dependency, built on the host with pip
#      (deploy/docker/wheelhouse/, reused while the requirements are unchanged);
#   3. minitower/api and minitower/runner (Dockerfile.api, Dockerfile.runner), installing
#      from that wheelhouse with --no-index;
#   4. the runners' workload image for Docker isolation (build-workload-image.sh);
#   5. the PostgreSQL stack's images (compose.postgres.yaml): minitower/postgres and
#      minitower/proxy, on a services base of Debian's postgresql-15 and nginx-light
#      (build-base-image.sh with those packages), unless MINITOWER_SKIP_STACK_IMAGES=1.
# Idempotent: a second run rebuilds nothing that is unchanged (a few seconds).
#
# Environment:
#   MINITOWER_PYTHON_BASE   base image (default minitower/python-base:bookworm)
#   MINITOWER_IMAGE_TAG     tag of minitower/api and minitower/runner (default latest)
#   MINITOWER_RUNNER_IMAGE  workload image (default minitower/workload:latest)
#   MINITOWER_SERVICES_BASE services base (default minitower/services-base:bookworm)
#   PYTHON                  the host's Python 3.11 for the wheelhouse (default python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
base="${MINITOWER_PYTHON_BASE:-minitower/python-base:bookworm}"
tag="${MINITOWER_IMAGE_TAG:-latest}"
python="${PYTHON:-python3}"
# The project's build backend, for installing its own packages with --no-index.
HATCHLING=1.33.0
wheelhouse="$root/deploy/docker/wheelhouse"
# Not the build time: a label that changed every build would defeat the layer cache.
revision="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"

log() { echo "build-images: $*" >&2; }
timed() {
  local started=$SECONDS
  "$@"
  log "$1 took $((SECONDS - started)) s"
}

base_image() {
  if docker image inspect "$base" >/dev/null 2>&1; then
    log "base $base is present"
  elif [ "$base" = "minitower/python-base:bookworm" ]; then
    MINITOWER_BASE_IMAGE="$base" "$here/build-base-image.sh"
  else
    log "base image $base is not present: pull it (online) or build it" \
      "(unset MINITOWER_PYTHON_BASE to build minitower/python-base:bookworm offline)"
    exit 1
  fi
}

wheels() {
  # Wheels must match the images' Python: one minor version everywhere.
  local minor
  minor="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ "$minor" != "3.11" ]; then
    log "$python is Python $minor; the images run 3.11: set PYTHON to a Python 3.11"
    exit 1
  fi
  local stamp
  stamp="$(cat "$root"/deploy/docker/requirements-*.txt | sha256sum | cut -c1-64)-$HATCHLING"
  if [ -f "$wheelhouse/.stamp" ] && [ "$(cat "$wheelhouse/.stamp")" = "$stamp" ] \
      && ls "$wheelhouse"/*.whl >/dev/null 2>&1; then
    log "wheelhouse is up to date"
    return
  fi
  # Debian's python3 comes without pip: use one in a venv of its own then.
  if ! "$python" -m pip --version >/dev/null 2>&1; then
    [ -x "$root/.tools/pip-venv/bin/python" ] || "$python" -m venv "$root/.tools/pip-venv"
    python="$root/.tools/pip-venv/bin/python"
  fi
  log "building the wheelhouse with $python -m pip wheel"
  rm -f "$wheelhouse"/*.whl "$wheelhouse/.stamp"
  "$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$wheelhouse" \
    -r "$root/deploy/docker/requirements-api.txt" \
    -r "$root/deploy/docker/requirements-runner.txt" \
    "hatchling==$HATCHLING"
  echo "$stamp" >"$wheelhouse/.stamp"
}

services_base="${MINITOWER_SERVICES_BASE:-minitower/services-base:bookworm}"

# PostgreSQL's JIT (LLVM, 130 MB of the image) stays out: the stack's queries are short
# OLTP ones, which JIT only slows down, and the server runs with jit=off.
jit_files="/usr/lib/x86_64-linux-gnu/libLLVM-*,/usr/lib/postgresql/15/lib/bitcode/*,/usr/lib/postgresql/15/lib/llvmjit*"

services_base_image() {
  MINITOWER_BASE_IMAGE="$services_base" \
    MINITOWER_BASE_PACKAGES=postgresql-15,nginx-light,ca-certificates \
    MINITOWER_BASE_EXCLUDES="$jit_files" \
    "$here/build-base-image.sh"
}

# service_image NAME DOCKERFILE BASE_ARG: BASE_ARG names the image's base (NAME=image).
service_image() {
  local name="$1" dockerfile="$2" base_arg="$3"
  log "docker build minitower/$name:$tag ($base_arg)"
  DOCKER_BUILDKIT=0 docker build --quiet \
    --build-arg "$base_arg" \
    --build-arg "REVISION=$revision" \
    --file "$root/$dockerfile" \
    --tag "minitower/$name:$tag" \
    "$root" >/dev/null
  log "minitower/$name:$tag: $(docker image inspect --format '{{.Size}}' "minitower/$name:$tag" \
    | awk '{printf "%.0f MB", $1/1e6}')"
}

timed base_image
timed wheels
timed service_image api Dockerfile.api "PYTHON_BASE=$base"
timed service_image runner Dockerfile.runner "PYTHON_BASE=$base"
MINITOWER_BASE_IMAGE="$base" timed "$here/build-workload-image.sh"
if [ "${MINITOWER_SKIP_STACK_IMAGES:-0}" != 1 ]; then
  timed services_base_image
  timed service_image postgres deploy/postgres/Dockerfile "SERVICES_BASE=$services_base"
  timed service_image proxy deploy/proxy/Dockerfile "SERVICES_BASE=$services_base"
fi
