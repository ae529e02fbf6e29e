#!/usr/bin/env bash
# kill -9 the postmaster during a stream of inserts into an annoy-indexed
# table (the first ones refilling records a VACUUM freed); after restart (WAL
# replay) the index passes annoy_index_check and every committed row is found
# through the index.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=55441
DATA=$TAP_ROOT/crash
on_exit "cluster_stop $DATA"

fresh_cluster "$DATA" "$PORT"
sql $PORT -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE t (id int PRIMARY KEY, emb vector2048)" \
    -c "INSERT INTO t SELECT i, $(vector_sql i) FROM generate_series(1, 300) i" \
    -c "CREATE INDEX t_annoy ON t USING annoy (emb) WITH (trees = 4)" \
    -c "DELETE FROM t WHERE id % 2 = 0" -c "VACUUM t" \
    -c "CHECKPOINT"

# One transaction per row, in the background, until the server dies.
(
    for i in $(seq 301 100000); do
        sql $PORT -c "INSERT INTO t VALUES ($i, $(vector_sql $i))" >/dev/null 2>&1 || break
    done
) &
inserter=$!
sleep 8
postmaster=$(head -1 "$DATA/postmaster.pid")
kill -9 "$postmaster"
wait "$inserter" || true
# Wait for the killed postmaster to be gone (its backends exit when they
# notice), then clear its lock files and restart: WAL replay happens here.
for _ in $(seq 1 40); do
    state=$(ps -o stat= -p "$postmaster" 2>/dev/null || true)
    [ -z "$state" ] || [ "${state:0:1}" = Z ] && break
    sleep 0.25
done
as_root rm -f "$DATA/postmaster.pid" "/tmp/.s.PGSQL.$PORT.lock"
restarted=false
for _ in $(seq 1 10); do
    if cluster_start "$DATA" "$PORT"; then restarted=true; break; fi
    sleep 1   # old backends may still hold the shared memory for a moment
done
ok "the server restarts after kill -9" $restarted

rows=$(sql $PORT -c "SELECT count(*) FROM t")
echo "# rows committed before the crash: $rows"
ok "inserts were running when the server was killed" test "$rows" -gt 150
ok "annoy_index_check passes after crash recovery" sql $PORT -c "SELECT * FROM annoy_index_check('t_annoy')"
# The insert cut short by the crash may have reached the index: VACUUM
# removes it with its dead row.
ok "VACUUM runs after crash recovery" sql $PORT -c "VACUUM t"
indexed=$(sql $PORT -c "SELECT live_items FROM annoy_index_check('t_annoy')")
ok "the index holds every committed row ($indexed = $rows)" test "$indexed" -eq "$rows"
missing=$(sql $PORT -c "SET enable_seqscan = off" -c "
    SELECT count(*) FROM t AS row
    WHERE row.id <> (SELECT id FROM t ORDER BY emb <-> row.emb LIMIT 1)")
ok "every committed row is its own nearest neighbour through the index (missing: $missing)" test "$missing" -eq 0
plan=$(sql $PORT -c "SET enable_seqscan = off" -c "EXPLAIN SELECT id FROM t ORDER BY emb <-> (SELECT emb FROM t LIMIT 1) LIMIT 1")
ok "those lookups used the annoy index" grep -q "Index Scan using t_annoy" <<<"$plan"
finish_tap
