#!/usr/bin/env bash
# Writes into an annoy-indexed table: inserts/s with and without the index,
# recall after inserting 50% more rows than the build saw (vs a fresh build
# on the same rows), and index size round by round under an update-heavy load
# (vs a fresh build).
#
# usage: bench/run_write_bench.sh [BUILD_ROWS=20000] [QUERIES=30]
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
N=${1:-20000}; QUERIES=${2:-30}
EXTRA=$((N / 2))
PGDATA_BENCH=${IMGSIM_BENCH_PGDATA:-/var/tmp/imgsim/bench-pgdata}
PORT=${IMGSIM_BENCH_PORT:-55434}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d imgsim_bench_write)
WORK=$(mktemp -d); chmod 755 "$WORK"
on_exit "rm -rf '$WORK'"

begin "bench cluster on port $PORT"
cluster_stop "$PGDATA_BENCH"
cluster_start "$PGDATA_BENCH" "$PORT" shared_buffers=4GB maintenance_work_mem=1GB max_wal_size=8GB
psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS imgsim_bench_write" -c "CREATE DATABASE imgsim_bench_write"

begin "data: $N + $EXTRA clustered vectors, $QUERIES queries"
"$VENV/bin/python" "$REPO_ROOT/bench/gen_vectors.py" $((N + EXTRA)) "$QUERIES" "$WORK/all.bin" "$WORK/queries.bin"
chmod 644 "$WORK"/*.bin
"${PSQL[@]}" -c "CREATE EXTENSION imgsim" -c "CREATE TABLE source (id bigint, emb vector2048)" \
    -c "CREATE TABLE queries (id bigint, emb vector2048)" \
    -c "\\copy source FROM '$WORK/all.bin' WITH (FORMAT binary)" -c "\\copy queries FROM '$WORK/queries.bin' WITH (FORMAT binary)"
"${PSQL[@]}" -c "CREATE INDEX ON source (id)" -c "ANALYZE source"

begin "inserts/s: $EXTRA single-row inserts into a plain table and an indexed one"
"${PSQL[@]}" -c "CREATE TABLE plain (id bigint, emb vector2048)" \
    -c "CREATE TABLE items AS SELECT * FROM source WHERE id <= $N" \
    -c "CREATE INDEX items_annoy ON items USING annoy (emb)"
"${PSQL[@]}" -tA <<SQL
CREATE FUNCTION insert_rows(target text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE started timestamptz := clock_timestamp(); r record;
BEGIN
    FOR r IN SELECT id, emb FROM source WHERE id > $N ORDER BY id LOOP
        EXECUTE format('INSERT INTO %I VALUES (\$1, \$2)', target) USING r.id, r.emb;
    END LOOP;
    RETURN $EXTRA / extract(epoch FROM clock_timestamp() - started);
END \$\$;
SELECT 'plain table: ' || round(insert_rows('plain')::numeric, 1) || ' inserts/s';
SELECT 'annoy-indexed table: ' || round(insert_rows('items')::numeric, 1) || ' inserts/s';
SQL

begin "recall after inserting 50% more rows than the build saw, vs a fresh build"
"${PSQL[@]}" -c "ALTER TABLE items RENAME TO items_grown" -c "CREATE TABLE items AS SELECT * FROM items_grown" \
    -c "CREATE INDEX items_fresh ON items USING annoy (emb)" \
    -c "SELECT pg_size_pretty(pg_relation_size('items_annoy')) AS grown_index, pg_size_pretty(pg_relation_size('items_fresh')) AS fresh_index"
echo "fresh build:"
"${PSQL[@]}" -c "SET imgsim_bench.runs = 1" -c "SET imgsim_bench.sweep = '{1500,6000}'" -f "$REPO_ROOT/bench/annoy_bench.sql" | tail -4
echo "built on $N rows, then $EXTRA inserted:"
"${PSQL[@]}" -c "DROP TABLE items" -c "ALTER TABLE items_grown RENAME TO items" \
    -c "SET imgsim_bench.runs = 1" -c "SET imgsim_bench.sweep = '{1500,6000}'" -f "$REPO_ROOT/bench/annoy_bench.sql" | tail -3

ROUNDS=6
begin "index size under an update-heavy load ($ROUNDS rounds of updating every row's vector + VACUUM)"
size_line() {
    "${PSQL[@]}" -tAc "SELECT format('%s: %s MB (item slots %s, free %s; pages: item %s, leaf %s, split %s)',
        '$1', pg_relation_size('items_annoy') / 1048576, items, free_items, item_pages, leaf_pages, split_pages)
        FROM annoy_index_check('items_annoy')"
}
seconds_since() { "$VENV/bin/python" -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }
size_line "before"
sizes=()
for round in $(seq "$ROUNDS"); do
    started=$(date +%s.%N)
    "${PSQL[@]}" -c "UPDATE items SET emb = (SELECT emb FROM source s WHERE s.id = (items.id * 7 + $round) % $((N + EXTRA)) + 1)"
    update_time=$(seconds_since "$started")
    peak=$("${PSQL[@]}" -tAc "SELECT pg_relation_size('items_annoy') / 1048576")
    started=$(date +%s.%N)
    "${PSQL[@]}" -c "VACUUM items"
    echo "round $round: UPDATE $update_time s ($peak MB after it), VACUUM $(seconds_since "$started") s"
    size_line "after round $round"
    sizes+=("$("${PSQL[@]}" -tAc "SELECT pg_relation_size('items_annoy')")")
done
"${PSQL[@]}" -c "CREATE INDEX items_rebuilt ON items USING annoy (emb)"
fresh=$("${PSQL[@]}" -tAc "SELECT pg_relation_size('items_rebuilt')")
echo "fresh build on the same rows: $((fresh / 1048576)) MB"
for round in $(seq "$ROUNDS"); do
    echo "after round $round: $("$VENV/bin/python" -c "import sys; print(f'{int(sys.argv[1]) / int(sys.argv[2]):.2f}')" "${sizes[round - 1]}" "$fresh") x the fresh build"
done
echo "what VACUUM's compactions logged:"
as_root grep -o 'annoy index "items_annoy" compacted.*' "$PGDATA_BENCH/server.log" || echo "(none)"
CURRENT_STEP=done
