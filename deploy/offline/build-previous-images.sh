#!/usr/bin/env bash
# Build the images of the previous release, tagged :previous, so that the upgrade runbook
# (deploy/runbooks/upgrade.md) can be tested from them: check out the commit named in
# deploy/upgrade/previous-release in a temporary git worktree and run THAT commit's
# deploy/offline/build-images.sh with MINITOWER_IMAGE_TAG=previous. Nothing tagged
# :latest is touched, so it may run before or after build-images.sh; after is quicker, as
# the previous release then reuses this checkout's wheelhouse when its requirements are
# the same (the layer cache does the rest).
#
# Usage: build-previous-images.sh [--force]
#   --force  build even when the :previous images already carry that commit's revision
#
# Environment:
#   MINITOWER_PREVIOUS_TAG  the tag to build (default previous)
#   MINITOWER_PYTHON_BASE   as for build-images.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="${MINITOWER_PREVIOUS_TAG:-previous}"
force=0
case "${1:-}" in
  --force) force=1 ;;
  "") ;;
  *) echo "build-previous-images: unknown argument $1" >&2; exit 2 ;;
esac

log() { echo "build-previous-images: $*" >&2; }

commit="$(tr -d '[:space:]' <"$root/deploy/upgrade/previous-release")"
if ! git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
  log "ERROR: the previous release's commit $commit (deploy/upgrade/previous-release)" \
    "is not in this clone; fetch it (git fetch origin $commit, or a clone without --depth)"
  exit 1
fi
short="$(git -C "$root" rev-parse --short "$commit")"

# build-images.sh labels each image with its commit: the same label means built already.
revision_of() {
  docker image inspect --format '{{index .Config.Labels "org.opencontainers.image.revision"}}' \
    "$1" 2>/dev/null || true
}
if [ "$force" -eq 0 ] && [ "$(revision_of "minitower/api:$tag")" = "$short" ] \
    && [ "$(revision_of "minitower/runner:$tag")" = "$short" ]; then
  log "minitower/api:$tag and minitower/runner:$tag are $short already (--force rebuilds)"
  exit 0
fi

tree="$(mktemp -d "${TMPDIR:-/tmp}/minitower-previous.XXXXXX")"
cleanup() {
  git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"
  git -C "$root" worktree prune
}
trap cleanup EXIT
git -C "$root" worktree add --quiet --detach "$tree" "$commit"
log "building $short from $tree as :$tag"

# Same requirements: give it this checkout's wheelhouse (with its stamp), so that it does
# not build the same wheels again with pip; otherwise its own script builds them.
requirements() { cat "$1"/deploy/docker/requirements-*.txt | sha256sum; }
wheelhouse="$root/deploy/docker/wheelhouse"
if [ "$(requirements "$root")" = "$(requirements "$tree")" ] && [ -f "$wheelhouse/.stamp" ] \
    && ls "$wheelhouse"/*.whl >/dev/null 2>&1; then
  cp -p "$wheelhouse"/*.whl "$wheelhouse/.stamp" "$tree/deploy/docker/wheelhouse/"
fi

MINITOWER_IMAGE_TAG="$tag" MINITOWER_RUNNER_IMAGE="minitower/workload:$tag" \
  "$tree/deploy/offline/build-images.sh"
log "built minitower/api:$tag and minitower/runner:$tag ($short)"
