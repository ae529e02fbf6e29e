#!/usr/bin/env bash
# kill -9 the postmaster during a stream of inserts into an annoy-indexed
# table (the first ones refilling records a VACUUM freed), then kill -9 the
# inserting backend itself; after each restart (WAL replay) the index passes
# annoy_index_check and every committed row is found through the index.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=55441
DATA=$TAP_ROOT/crash
on_exit "cluster_stop $DATA"

fresh_cluster "$DATA" "$PORT"
# autovacuum stays off for t, so that only the VACUUMs here decide what is
# removed (an auto-ANALYZE's snapshot would keep just-deleted rows).
sql $PORT -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE t (id int PRIMARY KEY, emb vector2048) WITH (autovacuum_enabled = off)" \
    -c "INSERT INTO t SELECT i, $(vector_sql i) FROM generate_series(1, 300) i" \
    -c "CREATE INDEX t_annoy ON t USING annoy (emb) WITH (trees = 4)" \
    -c "DELETE FROM t WHERE id % 10 = 0" -c "VACUUM (INDEX_CLEANUP ON) t" \
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

# After a crash: the index is consistent, and once VACUUM has removed the
# row (and index entries) an interrupted insert left behind, it holds every
# committed row, each found through it.
verify_after_crash() {
    local stage=$1 floor=$2 rows indexed missing plan
    rows=$(sql $PORT -c "SELECT count(*) FROM t")
    echo "# rows committed before the crash ($stage): $rows"
    ok "inserts were running when the server crashed ($stage)" test "$rows" -gt "$floor"
    ok "annoy_index_check passes after crash recovery ($stage)" sql $PORT -c "SELECT * FROM annoy_index_check('t_annoy')"
    echo "# left by the crash: $(sql $PORT -c "SELECT format('%s incomplete items, %s unused pages', incomplete_items, unused_pages) FROM annoy_index_check('t_annoy')")"
    # INDEX_CLEANUP ON: with one dead row VACUUM would otherwise skip the indexes.
    ok "VACUUM runs after crash recovery ($stage)" sql $PORT -c "VACUUM (INDEX_CLEANUP ON) t"
    indexed=$(sql $PORT -c "SELECT live_items FROM annoy_index_check('t_annoy') WHERE incomplete_items = 0")
    ok "the index holds every committed row, none half inserted ($stage: ${indexed:-?} = $rows)" test "${indexed:-0}" -eq "$rows"
    missing=$(sql $PORT -c "SET enable_seqscan = off" -c "
        SELECT count(*) FROM t AS row
        WHERE row.id <> (SELECT id FROM t ORDER BY emb <-> row.emb LIMIT 1)")
    ok "every committed row is its own nearest neighbour through the index ($stage, missing: $missing)" test "$missing" -eq 0
    plan=$(sql $PORT -c "SET enable_seqscan = off" -c "EXPLAIN SELECT id FROM t ORDER BY emb <-> (SELECT emb FROM t LIMIT 1) LIMIT 1")
    ok "those lookups used the annoy index ($stage)" grep -q "Index Scan using t_annoy" <<<"$plan"
}
verify_after_crash "postmaster killed" 270

# A backend killed in the middle of its work: the postmaster resets every
# backend and replays WAL, so the insert under way stops between any two WAL
# records. One session inserts and commits row after row until it dies.
sql $PORT -c "DELETE FROM t WHERE id % 5 = 0" -c "VACUUM (INDEX_CLEANUP ON) t"
before=$(sql $PORT -c "SELECT count(*) FROM t")
sql $PORT -c "
    DO \$\$ BEGIN
        FOR i IN 200001..300000 LOOP
            INSERT INTO t VALUES (i, $(vector_sql i));
            COMMIT;
        END LOOP;
    END \$\$" >/dev/null 2>&1 &
inserter=$!
sleep 6
backend=$(sql $PORT -c "SELECT pid FROM pg_stat_activity WHERE query LIKE '%200001..300000%' AND pid <> pg_backend_pid()")
ok "found the inserting backend" test -n "$backend"
as_root kill -9 "$backend"
wait "$inserter" || true
recovered=false
for _ in $(seq 1 60); do
    if sql $PORT -c "SELECT 1" >/dev/null 2>&1; then recovered=true; break; fi
    sleep 0.5
done
ok "the server recovers after a backend is killed" $recovered
verify_after_crash "backend killed" "$before"
finish_tap
