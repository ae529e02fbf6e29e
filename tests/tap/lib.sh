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

# A deterministic vector2048 literal expression for row $id (distinct per id).
vector_sql() { echo "(SELECT array_agg(sin(($1) * 0.37 + d * 0.011 * (1 + ($1) % 7))::real) FROM generate_series(1, 2048) d)::vector2048"; }

finish_tap() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
