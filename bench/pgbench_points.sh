#!/usr/bin/env bash
# q/s of fixed annoy and HNSW points, alternating point by point, on the
# tables and indexes a bench/run_hnsw_compare.sh run left (start its cluster
# first: cluster_start /var/tmp/imgsim/hnsw-compare-pgdata 56510 ...). Quicker
# than a whole script run when only the query rates are wanted again.
#
# usage: bench/pgbench_points.sh ROUNDS SECONDS SEARCH_K:EF_SEARCH...
#   e.g. bench/pgbench_points.sh 3 5 750:20 1000:30 3000:40 4000:60
set -euo pipefail
rounds=$1 secs=$2
shift 2
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
CONN=(-h /tmp -p 56510 -U postgres imgsim_hnsw)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for m in a h; do
    printf '\\set qid random(1, 1000)\nSELECT id FROM %s_items ORDER BY emb <-> (SELECT emb FROM %s_queries WHERE id = :qid) LIMIT 10;\n' \
        "$m" "$m" >"$dir/$m.sql"
done
tps() { # GUC=value script clients
    PGOPTIONS="-c jit=off -c $1" "$PGBENCH" "${CONN[@]}" -n -M prepared -c "$3" -j "$3" -T "$secs" -f "$2" |
        awk '/^tps/ {print $3}'
}
for r in $(seq "$rounds"); do
    for clients in 1 2; do
        for point in "$@"; do
            k=${point%%:*} ef=${point##*:}
            a=$(tps "annoy.search_k=$k" "$dir/a.sql" "$clients")
            h=$(tps "hnsw.ef_search=$ef" "$dir/h.sql" "$clients")
            echo "round $r clients $clients annoy search_k $k $a hnsw ef_search $ef $h"
        done
    done
done
