# Helpers for the server-level tests (crash recovery, streaming replica):
# throw-away clusters owned by postgres, assertions that count.
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/lib.sh"

TAP_ROOT=/var/tmp/imgsim/tap
PASSED=0
FAILED=0

ok() {
    local description=$1; shift
    if "$@" >/dev/null; then PASSED=$((PASSED + 1)); echo "ok - $description";
    else FAILED=$((FAILED + 1)); echo "not ok - $description"; fi
}

# psql against a port, database postgres, tuples only.
sql() { local port=$1; shift; psql -X -qtA -v ON_ERROR_STOP=1 -h /tmp -p "$port" -U postgres -d postgres "$@"; }

fresh_cluster() {
    local datadir=$1 port=$2; shift 2
    cluster_stop "$datadir"
    as_root rm -rf "$datadir"
    cluster_start "$datadir" "$port" "$@"
}

# A streaming standby of the primary on port $1, in $2, on port $3. Its
# replication slot makes the primary keep every WAL segment the standby has
# not received yet: without it, the checkpoint at the end of a crash
# recovery may recycle segments a lagging standby still needs, and it never
# catches up.
standby_cluster() {
    local primary_port=$1 datadir=$2 port=$3 slot; slot=standby_$3
    cluster_stop "$datadir"; as_root rm -rf "$datadir"
    sql "$primary_port" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$slot'" >/dev/null
    as_postgres "$PG_BIN/pg_basebackup" -h /tmp -p "$primary_port" -U postgres -D "$datadir" -R -X stream -C -S "$slot"
    cluster_start "$datadir" "$port" hot_standby=on
}

# The standby on port $2 has replayed all WAL the primary on port $1 wrote (up to 60 s).
wait_for_replay() {
    local lsn; lsn=$(sql "$1" -c "SELECT pg_current_wal_lsn()")
    for _ in $(seq 1 300); do
        [ "$(sql "$2" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ] && return 0
        sleep 0.2
    done
    return 1
}

# A deterministic vector2048 literal expression for row $id (distinct per id).
vector_sql() { echo "(SELECT array_agg(sin(($1) * 0.37 + d * 0.011 * (1 + ($1) % 7))::real) FROM generate_series(1, 2048) d)::vector2048"; }

finish_tap() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
