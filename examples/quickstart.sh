#!/usr/bin/env bash
# examples/quickstart.sh: from a fresh Debian 12 to a workflow run end to end.
#
# Installs the build dependencies (as root), builds and installs the
# extension, starts a throwaway cluster as the postgres OS user with the
# extension preloaded, runs examples/order.sql with workflow-worker doing its
# payment step (examples/charge.pl), and stops the cluster.
# Pass --keep to leave the cluster running for psql.
set -euo pipefail

cd "$(dirname "$0")/.."
keep=no
[ "${1:-}" = "--keep" ] && keep=yes

if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        build-essential postgresql-15 postgresql-server-dev-15 libpq-dev perl >/dev/null
fi
if ! command -v pg_config >/dev/null && [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
    export PATH=/usr/lib/postgresql/15/bin:$PATH
fi
bindir=$(pg_config --bindir)

make -s
make -s install

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

dir=$(mktemp -d /tmp/workflow-quickstart.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=${PGPORT_QUICKSTART:-5433}

as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
shared_preload_libraries = 'workflow'
workflow.database = 'postgres'
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
CONF
as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null

stop() {
    if [ "$keep" = no ]; then
        as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
        rm -rf "$dir"
    fi
}
trap stop EXIT

as_pg "$bindir/psql" -X -h "$dir" -p "$port" -U postgres -d postgres -q \
    -c 'CREATE EXTENSION workflow'

# the external payment step: workflow-worker runs examples/charge.pl per task
as_pg "$bindir/workflow-worker" -d "host=$dir port=$port user=postgres dbname=postgres" \
    -t payment -n 2 --worker-id quickstart-worker -- "$PWD/examples/charge.pl" \
    2> "$dir/worker.log" &
worker=$!

as_pg "$bindir/psql" -X -h "$dir" -p "$port" -U postgres -d postgres -q \
    -f examples/order.sql

# drain the worker (SIGTERM: it finishes running tasks and exits 0); when
# started through runuser, the signal goes to runuser's child
targets=$(cat /proc/"$worker"/task/*/children 2>/dev/null)
kill -TERM ${targets:-$worker} 2>/dev/null || true
wait "$worker" || true
echo
echo "workflow-worker's log:"
cat "$dir/worker.log"

if [ "$keep" = yes ]; then
    echo
    echo "The cluster keeps running:  psql -h $dir -p $port -U postgres"
    echo "Stop it with:               $bindir/pg_ctl -D $dir/data stop"
fi
