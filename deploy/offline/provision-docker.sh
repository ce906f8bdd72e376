#!/usr/bin/env bash
# Provision a Docker engine on a Debian bookworm host with no container registry:
# install Debian's docker.io (and mmdebstrap, used by build-base-image.sh), start dockerd in
# the background, and wait until `docker info` answers. Idempotent: when an engine already
# answers it only says so. Runs as root.
#
# Environment:
#   DOCKERD_LOG           dockerd's log file (default /var/log/dockerd.log, or $TMPDIR when
#                         /var/log is not writable)
#   DOCKERD_WAIT_SECONDS  how long to wait for the daemon to answer (default 60)
set -euo pipefail

WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"
DOCKERD=/usr/sbin/dockerd

log() { echo "provision-docker: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# `docker info` with a bound: a half-started daemon can accept the socket and not answer.
engine_answers() { timeout 15 docker info >/dev/null 2>&1; }

# The docker client on PATH may be newer than the daemon (e.g. a 28.x CLI in /usr/local/bin
# in front of Debian's 20.10 in /usr/bin). Modern CLIs negotiate the API version down, so
# this normally just works; if it does not, say what to do rather than fail obscurely.
check_client() {
  local client server
  client="$(command -v docker || true)"
  [ -n "$client" ] || die "no docker client on PATH"
  if ! server="$(timeout 15 docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>&1)"; then
    log "the client $client cannot talk to the daemon: $server"
    log "hint: export DOCKER_API_VERSION=1.41 (dockerd 20.10), or put /usr/bin first on PATH"
    exit 1
  fi
  log "client $client ($(docker version --format '{{.Client.Version}}' 2>/dev/null)) -> daemon $server"
}

# Install only what is missing; `apt-get update` at most once. Recommends stay on: they
# bring apparmor (Debian kernels enable AppArmor, and without its parser containers fail to
# start under the docker-default profile) and cgroupfs-mount.
install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "$* already installed"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "must run as root to install ${missing[*]}"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
}

if engine_answers; then
  log "a Docker engine already answers \`docker info\`"
  # build-base-image.sh still needs mmdebstrap on a host that came with its own engine.
  install_missing mmdebstrap
  check_client
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root to install and start dockerd"
install_missing docker.io mmdebstrap
[ -x "$DOCKERD" ] || die "$DOCKERD not found after installing docker.io"

# The pid of a live dockerd from its pidfile, if any (no pgrep: procps may be missing).
running_dockerd() {
  local pid
  pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

logfile="${DOCKERD_LOG:-/var/log/dockerd.log}"
if ! { : >>"$logfile"; } 2>/dev/null; then
  logfile="${TMPDIR:-/tmp}/dockerd.log"
fi

# On a host where systemd runs, installing docker.io has started the service already.
# Otherwise start the daemon directly: the host may have systemd installed but not running
# it (a container, a CI VM with another PID 1), so `systemctl start docker` is no option.
if pid="$(running_dockerd)"; then
  log "dockerd is already running (pid $pid); waiting for it to answer"
else
  log "starting $DOCKERD in the background (log: $logfile)"
  # setsid + nohup: the daemon outlives this script and the CI step that ran it.
  setsid nohup "$DOCKERD" >>"$logfile" 2>&1 </dev/null &
  pid=$!
fi

show_log() { tail -n 30 "$logfile" 2>/dev/null | sed 's/^/  dockerd: /' >&2 || true; }
deadline=$((SECONDS + WAIT_SECONDS))
until engine_answers; do
  # (setsid may fork, so the pidfile counts too)
  if ! kill -0 "$pid" 2>/dev/null && ! running_dockerd >/dev/null; then
    log "dockerd (pid $pid) exited; last lines of $logfile:"
    show_log
    die "dockerd failed to start"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "dockerd did not answer \`docker info\` within ${WAIT_SECONDS}s; last lines of $logfile:"
    show_log
    die "no Docker engine"
  fi
  sleep 1
done
log "Docker engine up (script ran ${SECONDS}s)"
check_client
