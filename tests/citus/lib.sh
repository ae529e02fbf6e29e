# A Citus cluster on localhost for the cluster test and the scale-out
# benchmark: a coordinator and two workers, each its own PostgreSQL cluster
# owned by postgres, with citus preloaded. Source after tests/tap/lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/citus.sh"

CITUS_ROOT="${IMGSIM_CITUS_ROOT:-/var/tmp/imgsim-citus}"

# Settings every node needs: Citus loaded at start; prepared transactions for
# its two-phase commit of multi-shard writes; logical WAL for shard moves that
# do not block writes. The rest keeps the test clusters small and quick.
CITUS_NODE_SETTINGS=(shared_preload_libraries=citus max_prepared_transactions=50 wal_level=logical
    max_wal_senders=20 max_replication_slots=20 fsync=off shared_buffers=256MB)

# usage: citus_nodes_start NAME PORT [NAME PORT ...] -- [extra settings...]
# Fresh nodes $CITUS_ROOT/NAME on PORT; citus created in database postgres.
citus_nodes_start() {
    local nodes=()
    while [ "$1" != -- ]; do nodes+=("$1" "$2"); shift 2; done
    shift
    local i
    for ((i = 0; i < ${#nodes[@]}; i += 2)); do
        fresh_cluster "$CITUS_ROOT/${nodes[i]}" "${nodes[i + 1]}" "${CITUS_NODE_SETTINGS[@]}" "$@"
        sql "${nodes[i + 1]}" -c "CREATE EXTENSION citus"
    done
}

# usage: citus_add_workers COORDINATOR_PORT WORKER_PORT...
citus_add_workers() {
    local coordinator=$1; shift
    sql "$coordinator" -c "SELECT citus_set_coordinator_host('localhost', $coordinator)" >/dev/null
    local port
    for port in "$@"; do sql "$coordinator" -c "SELECT citus_add_node('localhost', $port)" >/dev/null; done
}
