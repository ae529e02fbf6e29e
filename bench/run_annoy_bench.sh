#!/usr/bin/env bash
# Index benchmark on a clustered synthetic set: build time, index size,
# recall@10 vs queries/s over a sweep of annoy.search_k, and the exact scan
# (seq scan + sort) in the same session. Figures go to BENCHMARKS.md.
#
# usage: bench/run_annoy_bench.sh [N=100000] [QUERIES=100] [RUNS=3]
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
N=${1:-100000}; QUERIES=${2:-100}; RUNS=${3:-3}
PGDATA_BENCH=/var/tmp/imgsim/bench-pgdata
PORT=55434
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d imgsim_bench)
WORK=$(mktemp -d); chmod 755 "$WORK"
on_exit "rm -rf '$WORK'"

begin "bench cluster on port $PORT"
cluster_stop "$PGDATA_BENCH"   # restart so this run's settings apply
cluster_start "$PGDATA_BENCH" "$PORT" shared_buffers=6GB maintenance_work_mem=2GB max_wal_size=8GB
psql -X -h /tmp -p "$PORT" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS imgsim_bench" -c "CREATE DATABASE imgsim_bench"
"${PSQL[@]}" -c "CREATE EXTENSION imgsim"

begin "generate $N clustered vectors and $QUERIES queries"
"$VENV/bin/python" "$REPO_ROOT/bench/gen_vectors.py" "$N" "$QUERIES" "$WORK/items.bin" "$WORK/queries.bin"
chmod 644 "$WORK"/*.bin
"${PSQL[@]}" -c "CREATE TABLE items (id bigint, emb vector2048)" -c "CREATE TABLE queries (id bigint, emb vector2048)" \
    -c "\\copy items FROM '$WORK/items.bin' WITH (FORMAT binary)" -c "\\copy queries FROM '$WORK/queries.bin' WITH (FORMAT binary)" \
    -c "VACUUM ANALYZE items" -c "SELECT count(*) FROM items" >/dev/null

begin "build the index"
"${PSQL[@]}" -c "\\timing on" -c "CREATE INDEX items_annoy ON items USING annoy (emb)" \
    -c "SELECT pg_size_pretty(pg_relation_size('items')) AS table_size, pg_size_pretty(pg_relation_size('items_annoy')) AS index_size" \
    -c "SELECT items, trees, item_pages, split_pages, leaf_pages, max_depth FROM annoy_index_check('items_annoy')"

begin "recall@10 and queries/s: exact scan vs annoy (median of $RUNS runs)"
"${PSQL[@]}" -c "SET imgsim_bench.runs = $RUNS" -c "SET imgsim_bench.sweep = '{500,1000,2000,4000,8000}'" \
    -f "$REPO_ROOT/bench/annoy_bench.sql"
CURRENT_STEP=done
