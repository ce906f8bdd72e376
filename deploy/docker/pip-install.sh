#!/bin/sh
# Used inside the image builds: pip install "$@" into /opt/venv, from the wheelhouse alone
# (no index, no network) when it holds wheels, else from the package index.
set -eu
wheels=/build/wheelhouse
if ls "$wheels"/*.whl >/dev/null 2>&1; then
  exec /opt/venv/bin/pip install --no-index --find-links "$wheels" "$@"
fi
exec /opt/venv/bin/pip install "$@"
