#!/usr/bin/env bash
# The index benchmark on real embeddings: PER_PHOTO random transforms of
# every photo in ../shared/data embedded by image_embedding (2 backends),
# then the same sweep as run_annoy_bench.sh (exact scan in the same session).
#
# usage: bench/run_annoy_bench_real.sh [PER_PHOTO=60] [QUERIES=100] [RUNS=3]
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
PER_PHOTO=${1:-60}; QUERIES=${2:-100}; RUNS=${3:-3}
PGDATA_BENCH=/var/tmp/imgsim/bench-pgdata
PORT=55434
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d imgsim_bench_real)
SET_DIR=/var/tmp/imgsim/real-set

begin "transforms of ../shared/data ($PER_PHOTO per photo, $QUERIES queries)"
as_root rm -rf "$SET_DIR"
"$VENV/bin/python" "$REPO_ROOT/bench/make_real_set.py" "$REPO_ROOT/../shared/data" "$SET_DIR" "$PER_PHOTO" "$QUERIES"
as_root chmod -R a+rX "$SET_DIR"

begin "bench cluster on port $PORT"
cluster_stop "$PGDATA_BENCH"   # restart so this run's settings apply
cluster_start "$PGDATA_BENCH" "$PORT" shared_buffers=6GB maintenance_work_mem=2GB max_wal_size=8GB
psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS imgsim_bench_real" -c "CREATE DATABASE imgsim_bench_real"
"${PSQL[@]}" -c "CREATE EXTENSION imgsim" -c "CREATE TABLE items (id bigint, emb vector2048)" -c "CREATE TABLE queries (id bigint, emb vector2048)"

begin "embed with image_embedding in 2 backends"
start=$(date +%s)
for b in 0 1; do
    "${PSQL[@]}" -c "INSERT INTO items SELECT n, image_embedding(pg_read_binary_file('$SET_DIR/items/' || f))
        FROM (SELECT f, row_number() OVER (ORDER BY f) AS n FROM pg_ls_dir('$SET_DIR/items') f) s WHERE n % 2 = $b" &
done
wait
"${PSQL[@]}" -c "INSERT INTO queries SELECT row_number() OVER (ORDER BY f), image_embedding(pg_read_binary_file('$SET_DIR/queries/' || f)) FROM pg_ls_dir('$SET_DIR/queries') f" \
    -c "VACUUM ANALYZE items"
echo "embedded $("${PSQL[@]}" -tAc "SELECT count(*) FROM items") items in $(( $(date +%s) - start )) s"

begin "build the index"
"${PSQL[@]}" -c "\\timing on" -c "CREATE INDEX items_annoy ON items USING annoy (emb)" \
    -c "SELECT pg_size_pretty(pg_relation_size('items')) AS table_size, pg_size_pretty(pg_relation_size('items_annoy')) AS index_size"

begin "recall@10 and queries/s: exact scan vs annoy (median of $RUNS runs)"
"${PSQL[@]}" -c "SET imgsim_bench.runs = $RUNS" -c "SET imgsim_bench.sweep = '{100,250,500,1000,1500,3000}'" \
    -f "$REPO_ROOT/bench/annoy_bench.sql"
CURRENT_STEP=done
