# Sourced by the other scripts: find or install uv, then sync the workspace.
# Needs only Python 3.11–3.13 with its venv module; uv itself comes from PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV_VERSION="0.13.9"
if command -v uv >/dev/null 2>&1; then
  UV="$(command -v uv)"
else
  UV="$ROOT/.tools/bin/uv"
  if [ ! -x "$UV" ]; then
    echo "==> installing uv $UV_VERSION into .tools/" >&2
    python3 -m venv "$ROOT/.tools"
    "$ROOT/.tools/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
fi
export UV
# Trust the system's certificate store (as pip does), not only uv's bundled roots, so a
# site's own CA (a TLS-inspecting proxy, an internal mirror) works without extra setup.
# (UV_SYSTEM_CERTS is what uv now calls UV_NATIVE_TLS; an old setting is honoured.)
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-${UV_NATIVE_TLS:-1}}"
unset UV_NATIVE_TLS
# Compile the environment's packages to bytecode (a few seconds once, then a fraction of
# a second): with PYTHONDONTWRITEBYTECODE set, as on some hosts, Python never caches it
# and every process the tests start (minitowerd, the CLI, runners) compiled SQLAlchemy,
# FastAPI and the rest again: minitowerd took 3.3 s to start instead of 1.4 s.
"$UV" sync --frozen --quiet --compile-bytecode
