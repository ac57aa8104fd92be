#!/usr/bin/env bash
# `make test`: make sure the local services are there, then run the suite
# twice, on the production stack (PostgreSQL, Redis, RabbitMQ, memcached)
# and on the embedded one (SQLite + embedded redis, started by conftest).
# Extra arguments go to pytest:  bash scripts/test.sh -k feeds -x
# Under CI=true a service that stays unreachable fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
[ -x "$PY" ] || { echo "test.sh: $PY is missing; run 'make venv' first" >&2; exit 2; }

note() { echo "test.sh: $*"; }
is_ci() { [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; }
is_root() { [ "$(id -u)" = 0 ]; }

# up PORT: true if something accepts TCP connections on 127.0.0.1:PORT
up() {
    "$PY" -c 'import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$1"
}

# wait_up PORT SECONDS
wait_up() {
    local deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        up "$1" && return 0
        sleep 0.5
    done
    up "$1"
}

# --- (a) memcached: install it if missing (root + apt only) ----------------
if ! command -v memcached >/dev/null 2>&1; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        note "installing memcached"
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached >/dev/null ||
            note "could not install memcached"
    else
        note "memcached is not installed (needs root and apt-get to install it)"
    fi
fi

# --- (a') prometheus and promtool (Debian's prometheus package): the metrics tests
# check the alert rules with promtool and scrape the API with a real server.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        note "installing prometheus (for promtool and the scrape test)"
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
            note "could not install prometheus"
        # The package starts its own server on :9090; the tests start theirs on free ports.
    else
        note "prometheus is not installed (needs root and apt-get to install it): its tests are skipped"
    fi
    if is_ci && ! command -v promtool >/dev/null 2>&1; then
        note "FAILED: promtool is missing (CI=true): the alert rules would go unchecked"
        exit 1
    fi
fi

# nginx: only its `nginx -t` of ops/nginx/shutter.conf (tests/test_operations.py); never started.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        note "installing nginx-light (for nginx -t)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; } ||
            note "could not install nginx-light"
    else
        note "nginx is not installed (needs root and apt-get to install it)"
    fi
fi

# --- (b) the services, started with the commands from SERVICES.md ---------
start_postgresql() { pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start; }
start_redis() {
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}
start_rabbitmq() { rabbitmq-server -detached; }
start_memcached() {
    local user=root
    id -u memcache >/dev/null 2>&1 && user=memcache
    memcached -d -u "$user" -l 127.0.0.1 -p 11211 -m 64
}

unreachable=()
# name port seconds-to-wait-after-start
for spec in "postgresql 5432 30" "redis 6379 15" "rabbitmq 5672 90" "memcached 11211 15"; do
    read -r name port wait <<<"$spec"
    up "$port" && continue
    if is_root; then
        note "$name is not listening on 127.0.0.1:$port; starting it"
        "start_$name" >/dev/null 2>&1 || note "starting $name failed"
        wait_up "$port" "$wait" && { note "$name is up"; continue; }
    fi
    unreachable+=("$name (127.0.0.1:$port)")
done
if [ "${#unreachable[@]}" -gt 0 ]; then
    for svc in "${unreachable[@]}"; do note "service unreachable: $svc"; done
    if is_ci; then
        note "FAILED: the production stack needs these services (CI=true)"
        exit 1
    fi
    note "continuing: tests that need them will say so"
fi

# --- (c) the PostgreSQL test database --------------------------------------
if [ -z "${TEST_DATABASE_URL:-}" ] && up 5432; then
    "$PY" - <<'EOF' || { note "could not create the database shutter_test"; is_ci && exit 1; }
import psycopg
with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                     autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'shutter_test'").fetchone():
        conn.execute("CREATE DATABASE shutter_test")
        print("test.sh: created database shutter_test")
EOF
fi

# --- (d) the suite, once per stack ------------------------------------------
# The app's own settings are removed so that no test ever reaches a real
# database or Redis by accident; the conftest reads the TEST_* ones.
APP_VARS=(-u DATABASE_URL -u DATABASE_REPLICA_URLS -u REDIS_URL -u CELERY_BROKER_URL
          -u MEMCACHED_SERVERS)

echo "==== pytest, production stack (PostgreSQL, Redis, RabbitMQ, memcached) ===="
env "${APP_VARS[@]}" SHUTTER_TEST_STACK=production \
    TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/shutter_test}" \
    TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}" \
    TEST_BROKER_URL="${TEST_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672//}" \
    TEST_MEMCACHED_SERVERS="${TEST_MEMCACHED_SERVERS:-127.0.0.1:11211}" \
    "$PY" -m pytest "$@"
production=$?

echo "==== pytest, embedded stack (SQLite, embedded redis) ===="
env "${APP_VARS[@]}" -u TEST_DATABASE_URL -u TEST_REDIS_URL -u TEST_BROKER_URL \
    -u TEST_MEMCACHED_SERVERS SHUTTER_TEST_STACK=embedded \
    "$PY" -m pytest "$@"
embedded=$?

failed=()
[ "$production" -eq 0 ] || failed+=("production (pytest exit $production)")
[ "$embedded" -eq 0 ] || failed+=("embedded (pytest exit $embedded)")
if [ "${#failed[@]}" -gt 0 ]; then
    note "FAILED stack: ${failed[*]}"
    exit 1
fi
note "both stacks passed"
