#!/usr/bin/env bash
# examples/quickstart.sh: from a fresh Debian 12 to a workflow run end to end.
#
# Installs the build dependencies (as root), builds and installs the
# extension, starts a throwaway cluster as the postgres OS user with the
# extension preloaded, runs examples/order.sql with workflow-worker doing its
# payment step (examples/charge.pl), then examples/order_flow.sql (the same
# orders with control flow), and stops the cluster.
# Pass --keep to leave the cluster running for psql; the script then prints
# the commands to connect and to stop it.
#
# Environment:
#   PGPORT_QUICKSTART  port of the cluster (default 5433); it listens on a
#                      Unix socket in its own directory only, no TCP
#   PG_CONFIG          the PostgreSQL to build for and run (default: the
#                      pg_config on PATH, else Debian's PostgreSQL 15)
set -euo pipefail

cd "$(dirname "$0")/.."
keep=no
[ "${1:-}" = "--keep" ] && keep=yes

root=no
[ "$(id -u)" = 0 ] && root=yes

if [ "$root" = yes ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        build-essential postgresql-15 postgresql-server-dev-15 libpq-dev perl >/dev/null
fi
if [ -z "${PG_CONFIG:-}" ]; then
    if command -v pg_config >/dev/null; then
        PG_CONFIG=$(command -v pg_config)
    else
        PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
    fi
fi
bindir=$("$PG_CONFIG" --bindir)

# built from scratch: objects left by a build for another PostgreSQL
# (test/run --pg=18, say) would look up to date and be installed here
make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
make -s PG_CONFIG="$PG_CONFIG"
make -s PG_CONFIG="$PG_CONFIG" install

dir=$(mktemp -d /tmp/workflow-quickstart.XXXXXX)
port=${PGPORT_QUICKSTART:-5433}
# the files the postgres OS user reads, also when the clone is in /root
cp examples/order.sql examples/order_flow.sql examples/charge.pl "$dir/"
[ "$root" = yes ] && chown -R postgres "$dir"

# Run a command as the postgres OS user (as root), in the cluster's
# directory.  runuser stays the command's parent; see below for the worker.
as_pg() {
    if [ "$root" = yes ]; then
        (cd "$dir" && runuser -u postgres -- "$@")
    else
        (cd "$dir" && "$@")
    fi
}

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

# The external payment step: workflow-worker runs charge.pl once per task.
# As root it runs as postgres through setpriv, which executes it in its own
# process: $worker is workflow-worker itself, the SIGTERM below goes to it
# alone, and no runuser or su in between reports a "session terminated".
worker_cmd=("$bindir/workflow-worker" -d "host=$dir port=$port user=postgres dbname=postgres"
            -t payment -n 2 --worker-id quickstart-worker -- "$dir/charge.pl")
if [ "$root" = yes ]; then
    (cd "$dir" && exec setpriv --reuid=postgres --regid=postgres --init-groups --reset-env \
        "${worker_cmd[@]}") 2> "$dir/worker.log" &
else
    "${worker_cmd[@]}" 2> "$dir/worker.log" &
fi
worker=$!

as_pg "$bindir/psql" -X -h "$dir" -p "$port" -U postgres -d postgres -q -f order.sql
# the same orders with control flow: parallel checks, an approval signal,
# a sub-workflow and a foreach
echo
as_pg "$bindir/psql" -X -h "$dir" -p "$port" -U postgres -d postgres -q -f order_flow.sql

# drain the worker: on SIGTERM it finishes its running tasks and exits 0
kill -TERM "$worker" 2>/dev/null || true
wait "$worker" || echo "workflow-worker exited with status $?"
echo
echo "workflow-worker's log:"
cat "$dir/worker.log"

if [ "$keep" = yes ]; then
    stop_cmd="$bindir/pg_ctl -D $dir/data stop"
    # pg_ctl refuses root; from /tmp it has a working directory it may read
    [ "$root" = yes ] && stop_cmd="(cd /tmp && runuser -u postgres -- $stop_cmd)"
    echo
    echo "The cluster keeps running:  $bindir/psql -h $dir -p $port -U postgres"
    echo "Stop it with:               $stop_cmd && rm -rf $dir"
fi
