#!/bin/sh
# PostgreSQL 15 for MiniTower's PostgreSQL stack (compose.postgres.yaml, deploy/swarm/).
# On the first start (an empty data volume) it creates the cluster, MiniTower's role
# (a login that owns its database and nothing else; the superuser `postgres` only
# signs in through the local socket) and the database; then it runs the server in the
# foreground.
#
# Environment:
#   MINITOWER_POSTGRES_PASSWORD       the role's password, or
#   MINITOWER_POSTGRES_PASSWORD_FILE  a file holding it (a Docker secret); letters,
#                                     digits and . _ ~ - only, so that it goes into
#                                     MINITOWER_DATABASE_URL as it is
#   MINITOWER_POSTGRES_USER / _DB     role and database (default minitower / minitower)
#   MINITOWER_POSTGRES_MAX_CONNECTIONS  default 200 (each API process keeps up to twice
#                                     MINITOWER_DB_POOL_SIZE, each reaper and scheduler 2)
#   MINITOWER_POSTGRES_SHARED_BUFFERS   default 128MB
set -eu

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
user="${MINITOWER_POSTGRES_USER:-minitower}"
database="${MINITOWER_POSTGRES_DB:-minitower}"

fail() {
  echo "minitower-postgres: $*" >&2
  exit 2
}

if [ -n "${MINITOWER_POSTGRES_PASSWORD_FILE:-}" ]; then
  [ -r "$MINITOWER_POSTGRES_PASSWORD_FILE" ] \
    || fail "cannot read MINITOWER_POSTGRES_PASSWORD_FILE ($MINITOWER_POSTGRES_PASSWORD_FILE)"
  password="$(cat "$MINITOWER_POSTGRES_PASSWORD_FILE")"
else
  password="${MINITOWER_POSTGRES_PASSWORD:-}"
fi
[ "${#password}" -ge 16 ] || fail "set MINITOWER_POSTGRES_PASSWORD (16 characters or more)"
case "$password$user$database" in
  *[!A-Za-z0-9._~-]*) fail "the password, user and database name take letters, digits and . _ ~ - only" ;;
esac

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "minitower-postgres: creating the cluster in $PGDATA" >&2
  # The socket lives in /tmp: the root filesystem is read-only.
  initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  {
    echo "# MiniTower: its role from any address, with its password; nothing else."
    echo "host $database $user 0.0.0.0/0 scram-sha-256"
    echo "host $database $user ::/0 scram-sha-256"
  } >>"$PGDATA/pg_hba.conf"
  # Single-user mode: no server listens before the role and its database exist.
  postgres --single -D "$PGDATA" -c unix_socket_directories=/tmp postgres >/dev/null <<SQL
CREATE ROLE "$user" LOGIN PASSWORD '$password';
CREATE DATABASE "$database" OWNER "$user";
SQL
  echo "minitower-postgres: created role $user and database $database" >&2
fi

exec postgres -D "$PGDATA" \
  -c listen_addresses='*' \
  -c unix_socket_directories=/tmp \
  -c max_connections="${MINITOWER_POSTGRES_MAX_CONNECTIONS:-200}" \
  -c shared_buffers="${MINITOWER_POSTGRES_SHARED_BUFFERS:-128MB}" \
  -c jit=off \
  -c log_min_messages=warning \
  -c log_line_prefix='%m [%p] %q%u@%d '
