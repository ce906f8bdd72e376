#!/usr/bin/env bash
# Replace a compose project's runner containers one at a time with containers of the
# image compose.yaml names now (after MINITOWER_IMAGE_TAG changed, or a rebuilt image),
# never running fewer runners than before:
#   for each runner container on another image:
#     1. start one more runner (`up -d --no-deps --no-recreate --scale runner=N+1`):
#        the new container, on the new image, registers and starts leasing;
#     2. `docker stop` the old one: it drains (stops leasing, lets its run finish for up to
#        MINITOWER_DRAIN_TIMEOUT) and exits within its stop_grace_period;
#     3. remove it, so that compose counts N runners again.
# Runs in flight finish on the runner that holds them; queued runs go to the others.
# Uses the same compose project as plain `docker compose` (COMPOSE_PROJECT_NAME,
# COMPOSE_FILE, COMPOSE_ENV_FILES, or compose.yaml and .env in the current directory).
#
# Usage: rolling-restart-runners.sh [SERVICE]    (default: runner)
set -euo pipefail

service="${1:-runner}"
log() { echo "rolling-restart: $*" >&2; }

# (`config --images SERVICE` would list its dependencies' images too)
image="$(docker compose config --format json | python3 -c \
  'import json, sys; print(json.load(sys.stdin)["services"][sys.argv[1]]["image"])' "$service")"
target="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null)" || {
  log "ERROR: image $image is not present: build it first (deploy/offline/build-images.sh)"
  exit 1
}
mapfile -t running < <(docker compose ps --quiet "$service")
count="${#running[@]}"
if [ "$count" -eq 0 ]; then
  log "no $service container is running: start them with docker compose up -d --wait"
  exit 1
fi
old=()
for id in "${running[@]}"; do
  if [ "$(docker inspect --format '{{.Image}}' "$id")" != "$target" ]; then
    old+=("$id")
  fi
done
log "$count $service containers, ${#old[@]} not on $image"

done_count=0
for id in "${old[@]}"; do
  name="$(docker inspect --format '{{.Name}}' "$id")"
  log "starting a $service on $image beside ${name#/}"
  docker compose up --detach --wait --no-deps --no-recreate \
    --scale "$service=$((count + 1))" "$service"
  # docker stop waits the container's own stop timeout (compose's stop_grace_period).
  log "draining ${name#/} (docker stop: its run may finish first)"
  started=$SECONDS
  docker stop "$id" >/dev/null
  log "${name#/} exited $(docker inspect --format '{{.State.ExitCode}}' "$id") after $((SECONDS - started)) s"
  docker rm "$id" >/dev/null
  done_count=$((done_count + 1))
done

mapfile -t now < <(docker compose ps --quiet "$service")
for id in "${now[@]}"; do
  if [ "$(docker inspect --format '{{.Image}}' "$id")" != "$target" ]; then
    log "ERROR: $(docker inspect --format '{{.Name}}' "$id") is still on another image"
    exit 1
  fi
done
log "replaced $done_count of $count; ${#now[@]} $service containers, all on $image"
