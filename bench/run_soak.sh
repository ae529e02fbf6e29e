#!/usr/bin/env bash
# Soak: pgbench runs a mix of inserts (5 rows a transaction), updates,
# deletes, unfiltered and filtered index queries, VACUUM and
# annoy_index_check on an annoy-indexed table (bench/soak/*.sql), then:
# no transaction failed, annoy_index_check is clean and counts exactly the
# surviving rows, every surviving row finds itself as its own nearest
# neighbour through the index, and the index stays bounded (record slots at
# most twice the live rows, so VACUUM's freed records are reused).
#
#   bash bench/run_soak.sh [SECONDS=600] [CLIENTS=2]
# IMGSIM_SOAK_PORT (55445) and IMGSIM_SOAK_PGDATA (/var/tmp/imgsim/tap/soak)
# choose the throw-away cluster. tools/test.sh runs it for 60 seconds.
source "$(dirname "${BASH_SOURCE[0]}")/../tests/tap/lib.sh"
SECONDS_TO_RUN=${1:-600}
CLIENTS=${2:-2}
PORT=${IMGSIM_SOAK_PORT:-55445}
DATA=${IMGSIM_SOAK_PGDATA:-$TAP_ROOT/soak}
INITIAL_ROWS=1000
SCRIPTS=$REPO_ROOT/bench/soak
OUT=$(mktemp -d)
on_exit "cluster_stop $DATA; rm -rf $OUT"

fresh_cluster "$DATA" "$PORT"
sql $PORT -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE soak (id bigserial PRIMARY KEY, category int NOT NULL, emb vector2048 NOT NULL)" \
    -c "INSERT INTO soak (category, emb)
        SELECT (random() * 9)::int, (SELECT array_agg(random()::real - 0.5 + 0 * g * d) FROM generate_series(1, 2048) AS d)::vector2048
        FROM generate_series(1, $INITIAL_ROWS) AS g" \
    -c "CREATE INDEX soak_annoy ON soak USING annoy (emb) WITH (trees = 4)" -c "ANALYZE soak"
index_start=$(sql $PORT -c "SELECT pg_relation_size('soak_annoy')")

echo "# pgbench: $CLIENTS clients for $SECONDS_TO_RUN s"
# pgbench reads the scripts as the invoking user; postgres may not enter the checkout.
cp -r "$SCRIPTS/." "$OUT/"
chmod -R a+rX "$OUT"
status=0
as_postgres "$PG_BIN/pgbench" -n -h /tmp -p "$PORT" -U postgres -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_TO_RUN" \
    -f "$OUT/insert.sql@3" -f "$OUT/delete.sql@3" -f "$OUT/update.sql@2" -f "$OUT/query.sql@3" \
    -f "$OUT/filtered.sql@2" -f "$OUT/vacuum.sql@1" -f "$OUT/check.sql@1" postgres >"$OUT/pgbench.log" 2>&1 || status=$?
grep -E "^(number of|latency average|tps|SQL script| - [0-9]+ trans| - latency|pgbench)" "$OUT/pgbench.log" | sed 's/^/# /'
ok "pgbench finished with every client (exit $status)" test "$status" -eq 0
ok "no transaction failed" grep -q "^number of failed transactions: 0 " "$OUT/pgbench.log"
[ "$status" -eq 0 ] || grep -iE "error|abort" "$OUT/pgbench.log" | head -5

sql $PORT -c "VACUUM (INDEX_CLEANUP ON) soak"
rows=$(sql $PORT -c "SELECT count(*) FROM soak")
ok "annoy_index_check is clean after the soak" sql $PORT -c "SELECT * FROM annoy_index_check('soak_annoy')"
read -r items live free < <(sql $PORT -F ' ' -c "SELECT items, live_items, free_items FROM annoy_index_check('soak_annoy')")
ok "the index holds exactly the surviving rows ($live = $rows)" test "$live" -eq "$rows"
missing=$(sql $PORT -c "SET enable_seqscan = off" -c "
    SELECT count(*) FROM soak AS row WHERE row.id <> (SELECT id FROM soak ORDER BY emb <-> row.emb LIMIT 1)")
ok "every surviving row finds itself through the index (missing: $missing of $rows)" test "$missing" -eq 0
written=$(sql $PORT -c "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = 'soak'")
index_end=$(sql $PORT -c "SELECT pg_relation_size('soak_annoy')")
echo "# index: $((index_start / 1024)) kB at the start, $((index_end / 1024)) kB at the end;" \
    "$items record slots ($free free) for $live live rows; $written rows written in all"
ok "the index stays bounded: $items record slots <= 2 x $live live rows" test "$items" -le $((2 * live))
# How long writers wait for a check of an idle index this size (median of 5).
check_ms=$(sql $PORT -c "CREATE FUNCTION pg_temp.check_ms() RETURNS float8 LANGUAGE plpgsql AS \$\$
        DECLARE started timestamptz := clock_timestamp();
        BEGIN PERFORM * FROM annoy_index_check('soak_annoy'); RETURN 1000 * extract(epoch FROM clock_timestamp() - started); END \$\$" \
    -c "SELECT round(percentile_disc(0.5) WITHIN GROUP (ORDER BY pg_temp.check_ms())::numeric, 1) FROM generate_series(1, 5)")
echo "# annoy_index_check of the idle index ($items record slots): $check_ms ms"
finish_tap
