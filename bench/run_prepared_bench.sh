#!/usr/bin/env bash
# The design card's query, ORDER BY emb <-> image_embedding($1) LIMIT k, through
# psycopg 3 (which prepares statements after 5 executions) on 100k vectors
# with an annoy index: milliseconds per execution 1..20, and under
# plan_cache_mode = force_generic_plan. Figures go to BENCHMARKS.md.
#
# usage: bench/run_prepared_bench.sh [N=100000] [ROUNDS=3]
#   IMGSIM_BENCH_PORT, IMGSIM_BENCH_PGDATA: the cluster to use (default 55434, /var/tmp/imgsim/bench-pgdata)
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
N=${1:-100000}; ROUNDS=${2:-3}
PGDATA_BENCH=${IMGSIM_BENCH_PGDATA:-/var/tmp/imgsim/bench-pgdata}
PORT=${IMGSIM_BENCH_PORT:-55434}
DSN="host=/tmp port=$PORT user=postgres dbname=imgsim_bench"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d imgsim_bench)
IMAGE="$REPO_ROOT/../shared/data/scenes/opencv__fruits.jpg"
WORK=$(mktemp -d); chmod 755 "$WORK"
on_exit "rm -rf '$WORK'"

begin "bench cluster on port $PORT"
cluster_stop "$PGDATA_BENCH"   # restart so this run's settings apply
cluster_start "$PGDATA_BENCH" "$PORT" shared_buffers=2GB maintenance_work_mem=1GB max_wal_size=8GB jit=off
psql -X -h /tmp -p "$PORT" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS imgsim_bench" -c "CREATE DATABASE imgsim_bench"
"${PSQL[@]}" -c "CREATE EXTENSION imgsim"

begin "$N vectors and their annoy index"
# The vectors only have to be many: the point is what one statement costs.
"$VENV/bin/python" "$REPO_ROOT/bench/gen_vectors.py" "$N" 1 "$WORK/items.bin" "$WORK/queries.bin"
chmod 644 "$WORK"/*.bin
"${PSQL[@]}" -c "CREATE TABLE items (id bigint, emb vector2048)" \
    -c "\\copy items FROM '$WORK/items.bin' WITH (FORMAT binary)" \
    -c "CREATE INDEX items_annoy ON items USING annoy (emb)" -c "VACUUM ANALYZE items" \
    -c "SELECT count(*) AS items FROM items"

begin "psycopg 3, executions 1..20 and generic plans"
"$VENV/bin/python" "$REPO_ROOT/bench/prepared_query.py" --dsn "$DSN" --image "$IMAGE" --rounds "$ROUNDS"
cluster_stop "$PGDATA_BENCH"
CURRENT_STEP=done
