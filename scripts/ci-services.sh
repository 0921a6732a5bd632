#!/usr/bin/env bash
# Services the test suite needs beyond Python: a local PostgreSQL for the team-server tests
# (tests/test_server.py, tests/test_concurrency.py). .ci/run calls it before `make test`.
#
#   scripts/ci-services.sh          install PostgreSQL if missing, start it, create the test role and database
#   scripts/ci-services.sh stop     stop the cluster again
#
# Idempotent. No password anywhere: the role is named after the user running the tests and logs
# in through the local Unix socket with peer authentication, so the tests' URI is
#   postgresql:///zoo_test?host=/var/run/postgresql
# (override it with ZOO_TEST_POSTGRES_URI). The role may create databases: each test module
# works in a fresh database of its own and drops it afterwards.
set -euo pipefail

DB=zoo_test
SOCKET=/var/run/postgresql
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { as_root runuser -u postgres -- "$@"; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_ctlcluster >/dev/null; then
    echo "ci-services: installing PostgreSQL (apt-get install postgresql)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)

if [ "${1:-start}" = stop ]; then
    as_root pg_ctlcluster "$version" main stop || true
    exit 0
fi

if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {found = 1} END {exit !found}'; then
    as_root pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 ~ /online/ {found = 1} END {exit !found}'; then
    as_root pg_ctlcluster "$version" main start
fi
for _ in $(seq 30); do
    pg_isready -q -h "$SOCKET" && break
    sleep 1
done
pg_isready -q -h "$SOCKET" || { echo "ci-services: PostgreSQL $version did not start" >&2; exit 1; }

user=$(id -un)
if [ "$(as_postgres psql -h "$SOCKET" -qtAc "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != 1 ]; then
    as_postgres createuser -h "$SOCKET" --createdb "$user"
fi
if [ "$(as_postgres psql -h "$SOCKET" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    as_postgres createdb -h "$SOCKET" -O "$user" "$DB"
fi
echo "ci-services: PostgreSQL $version is up: postgresql:///$DB?host=$SOCKET (role '$user', peer authentication)"
