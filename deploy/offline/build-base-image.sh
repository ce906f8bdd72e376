#!/usr/bin/env bash
# Build the Debian bookworm Python base image without a container registry:
# mmdebstrap a minimal bookworm root filesystem with python3, python3-venv and
# ca-certificates from a Debian mirror, then `docker import` it under a tag.
# build-images.sh also builds the services base (PostgreSQL 15 and nginx for the
# PostgreSQL stack) with it, by naming other packages.
#
# Usage: build-base-image.sh [--force] [--refresh] [TAG]
#   TAG        image tag (default $MINITOWER_BASE_IMAGE, else minitower/python-base:bookworm)
#   --force    re-import even when TAG already exists (from the cached tarball if present)
#   --refresh  also rebuild the cached tarball (implies --force)
#
# Environment:
#   MINITOWER_BASE_IMAGE             default tag
#   MINITOWER_BASE_PACKAGES          the packages (default python3,python3-venv,ca-certificates);
#                                    a tag other than the default gets a tarball of its own
#   MINITOWER_BASE_EXCLUDES          more paths dpkg leaves out (comma-separated globs)
#   MINITOWER_DEBIAN_MIRROR          default http://deb.debian.org/debian
#   MINITOWER_DEBIAN_SECURITY_MIRROR default http://deb.debian.org/debian-security;
#                                    set it empty to build from bookworm alone
#   MINITOWER_CACHE_DIR              tarball cache (default ${XDG_CACHE_HOME:-~/.cache}/minitower)
#
# An imported image has no ENV, CMD or USER: images built on it must set PATH themselves
# (see Dockerfile.workload).
set -euo pipefail

force=0
refresh=0
tag="${MINITOWER_BASE_IMAGE:-minitower/python-base:bookworm}"
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --refresh) force=1; refresh=1 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build-base-image: unknown option $1" >&2; exit 2 ;;
    *) tag="$1" ;;
  esac
  shift
done

mirror="${MINITOWER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${MINITOWER_DEBIAN_SECURITY_MIRROR-http://deb.debian.org/debian-security}"
cache_dir="${MINITOWER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minitower}"
packages="${MINITOWER_BASE_PACKAGES:-python3,python3-venv,ca-certificates}"
excludes="${MINITOWER_BASE_EXCLUDES:-}"
if [ "$tag" = "minitower/python-base:bookworm" ]; then
  tarball="$cache_dir/python-base-bookworm.tar"
else
  # One tarball per tag and package list: another list must not reuse a stale root.
  tarball="$cache_dir/$(printf '%s' "$tag" | tr '/:' '--')-$(printf '%s %s' "$packages" "$excludes" \
    | sha256sum | cut -c1-12).tar"
fi

log() { echo "build-base-image: $*" >&2; }

if [ "$force" -eq 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  log "$tag already exists; nothing to do (--force to re-import)"
  exit 0
fi

if [ "$refresh" -eq 1 ] || [ ! -s "$tarball" ]; then
  command -v mmdebstrap >/dev/null || {
    log "mmdebstrap is missing (provision-docker.sh installs it)"
    exit 1
  }
  mkdir -p "$cache_dir"
  sources=("deb $mirror bookworm main" "deb $mirror bookworm-updates main")
  if [ -n "$security_mirror" ]; then
    sources+=("deb $security_mirror bookworm-security main")
  fi
  log "mmdebstrap bookworm from $mirror${security_mirror:+ (+ security)} -> $tarball"
  # Write next to the cache and rename, so an interrupted run never leaves a truncated
  # tarball that a later run would import. </dev/null: with a non-terminal stdin and no
  # mirror, mmdebstrap would read sources from stdin; the mirrors are always named here.
  # The dpkg path filters drop docs, man pages and translations (about 50 MB), as
  # Debian's own "slim" images do; copyright files stay.
  tmp="$tarball.tmp.$$"
  extra=()
  IFS=',' read -ra globs <<<"$excludes"
  for glob in "${globs[@]}"; do
    extra+=("--dpkgopt=path-exclude=$glob")
  done
  trap 'rm -f "$tmp"' EXIT
  mmdebstrap --quiet --variant=apt --format=tar \
    --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    "${extra[@]}" \
    bookworm "$tmp" "${sources[@]}" </dev/null
  mv -f "$tmp" "$tarball"
  trap - EXIT
else
  log "using cached $tarball"
fi

log "docker import -> $tag"
docker import \
  --change "LABEL org.opencontainers.image.title=\"MiniTower base (Debian bookworm: $packages)\"" \
  --change "LABEL org.opencontainers.image.base.name=\"debian:bookworm (mmdebstrap, $mirror)\"" \
  --change "LABEL io.minitower.rootfs.created=\"$(date -u -r "$tarball" +%Y-%m-%dT%H:%M:%SZ)\"" \
  "$tarball" "$tag" >/dev/null
log "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
