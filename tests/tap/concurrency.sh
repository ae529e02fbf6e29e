#!/usr/bin/env bash
# Several sessions insert, delete, query and vacuum an annoy-indexed table
# at once for a while: no errors, no deadlock, annoy_index_check clean at
# the end, every surviving row is found through the index, and the inserts
# reused records that VACUUM freed while queries were reading them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=55444
DATA=$TAP_ROOT/concurrency
SECONDS_TO_RUN=${IMGSIM_CONCURRENCY_SECONDS:-15}
LOGS=$(mktemp -d)
on_exit "cluster_stop $DATA; rm -rf $LOGS"

fresh_cluster "$DATA" "$PORT" deadlock_timeout=100ms
# autovacuum stays off for t, so that only the VACUUMs here decide what is
# removed (an auto-ANALYZE's snapshot would keep the last deleted rows).
sql $PORT -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE t (id int PRIMARY KEY, emb vector2048) WITH (autovacuum_enabled = off)" \
    -c "INSERT INTO t SELECT i, $(vector_sql i) FROM generate_series(1, 400) i" \
    -c "CREATE INDEX t_annoy ON t USING annoy (emb) WITH (trees = 3)"

deadline=$(( $(date +%s) + SECONDS_TO_RUN ))
# Each worker runs one statement per transaction until the deadline and
# logs every error it sees.
worker() {
    local name=$1 n=0; shift
    while [ "$(date +%s)" -lt "$deadline" ]; do
        n=$((n + 1))
        sql $PORT -c "$("$@" "$n")" >/dev/null 2>>"$LOGS/$name.err" || echo "failed statement $n" >>"$LOGS/$name.err"
    done
    echo "$n" > "$LOGS/$name.count"
}
insert_a() { echo "INSERT INTO t VALUES (100000 + $1, $(vector_sql "100000 + $1"))"; }
insert_b() { echo "INSERT INTO t VALUES (200000 + $1, $(vector_sql "200000 + $1"))"; }
delete_some() { echo "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 3)"; }
query() { echo "SET enable_seqscan = off; SELECT id FROM t ORDER BY emb <-> $(vector_sql "$1 % 500") LIMIT 10"; }
vacuum() { sleep 1; echo "VACUUM t"; }

worker insert_a insert_a & worker insert_b insert_b & worker delete delete_some &
worker query query & worker vacuum vacuum &
wait

for w in insert_a insert_b delete query vacuum; do
    echo "# $w: $(cat "$LOGS/$w.count") statements"
    ok "$w saw no errors" test ! -s "$LOGS/$w.err"
    [ -s "$LOGS/$w.err" ] && head -5 "$LOGS/$w.err"
done
# INDEX_CLEANUP ON: with few dead rows VACUUM may otherwise skip the indexes
# (leaving the rows' line pointers dead in the heap, and their index items).
sql $PORT -c "VACUUM (INDEX_CLEANUP ON) t"
rows=$(sql $PORT -c "SELECT count(*) FROM t")
ok "annoy_index_check is clean after the load" sql $PORT -c "SELECT * FROM annoy_index_check('t_annoy')"
live=$(sql $PORT -c "SELECT live_items FROM annoy_index_check('t_annoy')")
ok "the index holds exactly the surviving rows ($live = $rows)" test "$live" -eq "$rows"
slots=$(sql $PORT -c "SELECT items FROM annoy_index_check('t_annoy')")
inserted=$(( 400 + $(cat "$LOGS/insert_a.count") + $(cat "$LOGS/insert_b.count") ))
ok "inserts refilled records VACUUM freed ($slots record slots for $inserted rows inserted)" test "$slots" -lt "$inserted"
missing=$(sql $PORT -c "SET enable_seqscan = off" -c "
    SELECT count(*) FROM t AS row WHERE row.id <> (SELECT id FROM t ORDER BY emb <-> row.emb LIMIT 1)")
ok "every surviving row is found through the index (missing: $missing)" test "$missing" -eq 0
finish_tap
