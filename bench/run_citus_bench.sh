#!/usr/bin/env bash
# The same 100k synthetic vectors on one node and on a Citus coordinator with
# two workers, all on this machine: index build time, queries/s and recall@10
# at the defaults. The two set-ups take turns in each round; figures are
# medians over the rounds. Both share this machine's cores, so the difference
# is Citus's coordination overhead, not a scale-out gain. Figures go to
# BENCHMARKS.md.
#
# usage: bench/run_citus_bench.sh [N=100000] [QUERIES=100] [RUNS=3] [SHARDS=4]
source "$(dirname "${BASH_SOURCE[0]}")/../tests/tap/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../tests/citus/lib.sh"
N=${1:-100000}; QUERIES=${2:-100}; RUNS=${3:-3}; SHARDS=${4:-4}
SINGLE=56110 COORD=56111 W1=56112 W2=56113
CITUS_ROOT="$CITUS_ROOT/bench"
BENCH_SETTINGS=(shared_buffers=2GB maintenance_work_mem=1GB max_wal_size=8GB jit=off)
WORK=$(mktemp -d); chmod 755 "$WORK"
on_exit "rm -rf '$WORK'"
on_exit "cluster_stop $CITUS_ROOT/single; cluster_stop $CITUS_ROOT/worker2; cluster_stop $CITUS_ROOT/worker1; cluster_stop $CITUS_ROOT/coordinator"
citus_source_present && [ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] || die "Citus is not installed: run tools/setup.sh"

begin "one node on $SINGLE; coordinator on $COORD with workers on $W1 and $W2 ($SHARDS shards)"
fresh_cluster "$CITUS_ROOT/single" "$SINGLE" fsync=off "${BENCH_SETTINGS[@]}"
citus_nodes_start coordinator "$COORD" worker1 "$W1" worker2 "$W2" -- "${BENCH_SETTINGS[@]}"
citus_add_workers "$COORD" "$W1" "$W2"
for port in "$SINGLE" "$COORD"; do
    sql "$port" -c "CREATE EXTENSION imgsim" -c "CREATE TABLE items (id bigint PRIMARY KEY, emb vector2048 NOT NULL)" \
        -c "CREATE TABLE queries (id bigint PRIMARY KEY, emb vector2048 NOT NULL)"
done
sql "$COORD" -c "SELECT create_distributed_table('items', 'id', shard_count => $SHARDS)" >/dev/null

begin "generate and load $N clustered vectors and $QUERIES queries"
"$VENV/bin/python" "$REPO_ROOT/bench/gen_vectors.py" "$N" "$QUERIES" "$WORK/items.bin" "$WORK/queries.bin"
for port in "$SINGLE" "$COORD"; do
    sql "$port" -c "\\copy items FROM '$WORK/items.bin' WITH (FORMAT binary)" -c "\\copy queries FROM '$WORK/queries.bin' WITH (FORMAT binary)" \
        -c "VACUUM ANALYZE items"
    [ "$(sql "$port" -c "SELECT count(*) FROM items")" = "$N" ] || die "port $port has not $N items"
done

# One line per measurement: "setup round value..."; medians at the end.
RESULTS="$WORK/results"
build() { sql "$1" -c "DROP INDEX IF EXISTS items_annoy" -c "\\timing on" -c "CREATE INDEX items_annoy ON items USING annoy (emb)" |
    awk '/^Time:/ {print $2 / 1000}' | tail -1; }
queries() { sql "$1" -v exact="$2" -f "$REPO_ROOT/bench/citus_bench.sql"; }

begin "exact top 10 of every query on both (seq scan + sort)"
for setup in "single $SINGLE" "citus $COORD"; do
    read -r name port <<<"$setup"
    echo "$name: $(queries "$port" true) s for $QUERIES exact queries"
done

for round in $(seq 1 "$RUNS"); do
    begin "round $round of $RUNS"
    for setup in "single $SINGLE" "citus $COORD"; do
        read -r name port <<<"$setup"
        seconds=$(build "$port")
        read -r query_seconds recall < <(queries "$port" false)
        echo "$name $round $seconds $query_seconds $recall" | tee -a "$RESULTS"
    done
done

CURRENT_STEP=summary
echo
echo "N=$N queries=$QUERIES rounds=$RUNS shards=$SHARDS (2 per worker when 4); medians:"
echo "| set-up | index build (s) | queries/s | ms/query | recall@10 |"
echo "|---|---:|---:|---:|---:|"
for name in single citus; do
    awk -v name="$name" -v q="$QUERIES" '$1 == name {b[++n] = $3; s[n] = $4; r[n] = $5}
        function median(a, n,   i, j, t) {for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2}
        END {sec = median(s, n); printf "| %s | %.1f | %.0f | %.2f | %.3f |\n", name, median(b, n), q / sec, 1000 * sec / q, median(r, n)}' "$RESULTS"
done
