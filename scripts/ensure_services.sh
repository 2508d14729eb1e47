#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the tests use are reachable; start local ones
# if they are installed but stopped; otherwise fail naming what is missing.
set -uo pipefail

PG_HOST=${SCOREBOARD_TEST_PG_HOST:-127.0.0.1}
PG_PORT=${SCOREBOARD_TEST_PG_PORT:-5432}
REDIS_HOST=${SCOREBOARD_TEST_REDIS_HOST:-127.0.0.1}
REDIS_PORT=${SCOREBOARD_TEST_REDIS_PORT:-6379}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 50); do port_open "$1" "$2" && return 0; sleep 0.2; done
  return 1
}

if ! port_open "$PG_HOST" "$PG_PORT"; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "PostgreSQL not reachable on $PG_HOST:$PG_PORT; starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  wait_port "$PG_HOST" "$PG_PORT" || {
    echo "ERROR: PostgreSQL is not reachable on $PG_HOST:$PG_PORT and no local cluster could be started." >&2
    echo "       Install it (apt-get install postgresql) or point SCOREBOARD_TEST_PG_HOST/PORT at one." >&2
    exit 1
  }
fi

if ! port_open "$REDIS_HOST" "$REDIS_PORT"; then
  if command -v redis-server >/dev/null; then
    echo "Redis not reachable on $REDIS_HOST:$REDIS_PORT; starting redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null
  fi
  wait_port "$REDIS_HOST" "$REDIS_PORT" || {
    echo "ERROR: Redis is not reachable on $REDIS_HOST:$REDIS_PORT and redis-server is not installed." >&2
    echo "       Install it (apt-get install redis-server) or point SCOREBOARD_TEST_REDIS_HOST/PORT at one." >&2
    exit 1
  }
fi
echo "services: PostgreSQL $PG_HOST:$PG_PORT and Redis $REDIS_HOST:$REDIS_PORT reachable"
