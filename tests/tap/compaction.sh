#!/usr/bin/env bash
# Rounds of updating every row + VACUUM: VACUUM compacts the annoy index
# (live records moved into the slots the old versions freed, new trees,
# the relation truncated), so it stays within 1.3x a fresh build's size,
# passes annoy_index_check and recalls like a fresh build, and a streaming
# replica follows (truncation included). A reader holding the index makes
# VACUUM leave it, a query arriving makes the compaction give up; a backend
# killed in the middle of a compaction leaves a valid index (after WAL
# replay) that the next VACUUM compacts.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=${IMGSIM_TAP_PORT:-55447}
STANDBY_PORT=$((PORT + 1))
ROOT=${IMGSIM_TAP_ROOT:-$TAP_ROOT}
DATA=$ROOT/compaction
STANDBY=$ROOT/compaction-standby
N=2000
on_exit "cluster_stop $STANDBY; cluster_stop $DATA"

fresh_cluster "$DATA" "$PORT" wal_level=replica max_wal_senders=4
standby_cluster "$PORT" "$STANDBY" "$STANDBY_PORT"

# A hard structured set (as in rebuild.sh): 40 clusters in a rank-32 latent
# space mapped to 2048-d by one random linear map and ReLU, L2-normalised;
# queries drawn the same way and not in the table.
SET_FILE=$(mktemp)
"${VENV:-$REPO_ROOT/.imgsim/venv}/bin/python" - "$SET_FILE" "$N" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(5)
rank, clusters = 32, 40
lift = rng.standard_normal((rank, 2048)) / np.sqrt(rank)
centres = rng.standard_normal((clusters, rank))
def draw(n):
    z = centres[rng.integers(0, clusters, n)] + 0.7 * rng.standard_normal((n, rank))
    x = np.maximum(z @ lift + 0.3, 0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
with open(sys.argv[1], "w") as out:
    for kind, rows in (("s", draw(int(sys.argv[2]))), ("q", draw(30))):
        for i, x in enumerate(rows, 1):
            out.write(f"{kind}\t{i}\t[{','.join(f'{v:.5f}' for v in x)}]\n")
PY
# autovacuum stays off for t: only the VACUUMs here compact.
sql $PORT -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE raw (kind text, id bigint, emb vector2048)" \
    -c "\\copy raw FROM '$SET_FILE'" \
    -c "CREATE TABLE source AS SELECT id, emb FROM raw WHERE kind = 's'" \
    -c "CREATE TABLE queries AS SELECT id AS q, emb FROM raw WHERE kind = 'q'" \
    -c "DROP TABLE raw" \
    -c "CREATE TABLE t (id int PRIMARY KEY, emb vector2048) WITH (autovacuum_enabled = off)" \
    -c "INSERT INTO t SELECT id, emb FROM source" \
    -c "CREATE INDEX t_annoy ON t USING annoy (emb) WITH (trees = 4)" >/dev/null
rm -f "$SET_FILE"
fresh=$(sql $PORT -c "SELECT pg_relation_size('t_annoy')")
echo "# fresh build: $fresh bytes"

# Recall@10 of table $1's index against the exact top 10 (index disabled),
# at a search_k small enough (100 of 2000 rows) for the trees to matter.
sql $PORT -c "CREATE FUNCTION recall(tab regclass) RETURNS numeric LANGUAGE plpgsql AS \$\$
DECLARE r numeric;
BEGIN
    SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = on;
    EXECUTE format('CREATE TEMP TABLE exact AS SELECT q, array(SELECT id FROM %s t ORDER BY t.emb <-> queries.emb LIMIT 10) AS ids FROM queries', tab);
    SET LOCAL enable_indexscan = on; SET LOCAL enable_seqscan = off; SET LOCAL annoy.search_k = 100;
    EXECUTE format('SELECT avg((SELECT count(*) FROM unnest(array(SELECT id FROM %s t ORDER BY t.emb <-> queries.emb LIMIT 10)) i WHERE i = ANY (exact.ids)))::numeric / 10 FROM queries JOIN exact USING (q)', tab) INTO r;
    DROP TABLE exact;
    RETURN r;
END \$\$" >/dev/null
recall_before=$(sql $PORT -c "SELECT recall('t')")

check() { sql $PORT -c "SELECT $1 FROM annoy_index_check('t_annoy')"; }
compactions() { as_root grep -c 'annoy index "t_annoy" compacted' "$DATA/server.log" || true; }
ratio() { sql $PORT -c "SELECT round(pg_relation_size('t_annoy')::numeric / $fresh, 3)"; }
within() { test "$(sql $PORT -c "SELECT $(ratio) <= $1")" = t; }
# Round $1: every row's vector replaced by another row's (a permutation).
update_all() { sql $PORT -c "UPDATE t SET emb = s.emb FROM source s WHERE s.id = (t.id * 7 + $1) % $N + 1"; }
# Every row found through the index as its own nearest neighbour.
all_found() {
    test "$(sql $PORT -c "SET enable_seqscan = off" -c "
        SELECT count(*) FROM t AS row WHERE row.id <> (SELECT id FROM t ORDER BY emb <-> row.emb LIMIT 1)")" = 0
}

for round in 1 2 3 4; do
    update_all "$round"
    bloated=$(ratio)
    sql $PORT -c "VACUUM (INDEX_CLEANUP ON) t"
    echo "# round $round: $bloated x the fresh build after the UPDATE, $(ratio) x after VACUUM"
    ok "round $round: VACUUM compacted the index" test "$(compactions)" = "$round"
    ok "round $round: the index is within 1.3x the fresh build's size" within 1.3
    ok "round $round: annoy_index_check passes, only live records left" \
        check "live_items = $N AND items = $N AND unused_pages = 0 AND leaf_entries = 4 * $N"
done
ok "every row is its own nearest neighbour through the index" all_found
sql $PORT -c "CREATE TABLE f AS SELECT * FROM t" -c "CREATE INDEX f_annoy ON f USING annoy (emb) WITH (trees = 4)"
against_fresh=$(sql $PORT -c "SELECT round(pg_relation_size('t_annoy')::numeric / pg_relation_size('f_annoy'), 3)")
recall_after=$(sql $PORT -c "SELECT recall('t')")
recall_fresh=$(sql $PORT -c "SELECT recall('f')")
echo "# size against a fresh build on the same rows: $against_fresh; recall@10: $recall_after (first build $recall_before, fresh build $recall_fresh)"
ok "after four rounds the index is within 1.3x a fresh build on the same rows" \
    test "$(sql $PORT -c "SELECT $against_fresh <= 1.3")" = t
ok "it recalls like a fresh build (within 0.03)" \
    test "$(sql $PORT -c "SELECT $recall_after >= $recall_fresh - 0.03 AND $recall_after >= $recall_before - 0.03")" = t

# The standby replays the moves, the frees and the truncation.
answers() {
    sql "$1" -c "SET enable_seqscan = off" -c "SELECT q, array(SELECT id FROM t ORDER BY t.emb <-> queries.emb LIMIT 10) FROM queries ORDER BY q"
}
ok "the standby replayed the primary's WAL" wait_for_replay $PORT $STANDBY_PORT
ok "the standby's index has the primary's size" \
    test "$(sql $STANDBY_PORT -c "SELECT pg_relation_size('t_annoy')")" = "$(sql $PORT -c "SELECT pg_relation_size('t_annoy')")"
ok "the standby's index passes annoy_index_check" sql $STANDBY_PORT -c "SELECT * FROM annoy_index_check('t_annoy')"
ok "the standby returns the same rows as the primary" test "$(answers $STANDBY_PORT)" = "$(answers $PORT)"

# An open transaction that scanned the index holds a lock on it: VACUUM
# leaves the index as it is; once the reader is done, the next VACUUM compacts.
reader_fifo=$(mktemp -u); mkfifo "$reader_fifo"
as_root chmod 666 "$reader_fifo"
(psql -X -qtA -h /tmp -p "$PORT" -U postgres -d postgres <"$reader_fifo" >/dev/null) &
reader=$!
exec 7>"$reader_fifo"
echo "BEGIN; SET enable_seqscan = off; SELECT id FROM t ORDER BY emb <-> (SELECT emb FROM queries WHERE q = 1) LIMIT 1;" >&7
for _ in $(seq 1 50); do
    [ "$(sql $PORT -c "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 't_annoy' AND l.pid <> pg_backend_pid()")" -gt 0 ] && break
    sleep 0.1
done
update_all 5
sql $PORT -c "VACUUM (INDEX_CLEANUP ON) t"
ok "with a reader holding the index, VACUUM does not compact it" test "$(compactions)" = 4
ok "the index is valid meanwhile" check "live_items = $N"
echo "COMMIT;" >&7; exec 7>&-; wait $reader; rm -f "$reader_fifo"
sql $PORT -c "VACUUM (INDEX_CLEANUP ON) t"
ok "once the reader is done, the next VACUUM compacts" test "$(compactions)" = 5
ok "back within 1.3x the fresh build's size" within 1.3

# The backend holding the index's AccessExclusiveLock (only a compaction
# takes it here), once it has it; empty if none did within 8 s.
compacting_pid() {
    local pid=""
    for _ in $(seq 1 400); do
        pid=$(sql $PORT -c "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
            WHERE c.relname = 't_annoy' AND l.mode = 'AccessExclusiveLock' AND l.granted" 2>/dev/null || true)
        [ -n "$pid" ] && break
        sleep 0.02
    done
    echo "$pid"
}
round=5

# (annoy.compaction_step_delay stretches the compactions of these two tests
# to about a second, so the query and the kill land in the middle of one.)
# A query that arrives while VACUUM compacts waits for the index's lock:
# the compaction gives up at its next check (before its switch), and the
# next VACUUM compacts.
given_up() { as_root grep -c 'annoy index "t_annoy": compaction given up' "$DATA/server.log" || true; }
gave_up=false
for _ in 1 2 3 4 5; do
    round=$((round + 1))
    update_all "$round"
    before=$(given_up)
    sql $PORT -c "SET annoy.compaction_step_delay = '20ms'" -c "VACUUM (INDEX_CLEANUP ON) t" &
    vacuum=$!
    pid=$(compacting_pid)
    sql $PORT -c "SET enable_seqscan = off" -c "SELECT id FROM t ORDER BY emb <-> (SELECT emb FROM queries WHERE q = 1) LIMIT 1" >/dev/null
    wait "$vacuum"
    if [ -n "$pid" ] && [ "$(given_up)" != "$before" ]; then gave_up=true; break; fi
    echo "# the query came too late for the compaction, again"
done
ok "a compaction gives up when a query waits for the index" $gave_up
ok "the index is valid after it gave up" check "live_items >= $N"
before=$(compactions)
sql $PORT -c "VACUUM (INDEX_CLEANUP ON) t"
ok "the next VACUUM compacts" test "$(compactions)" = "$((before + 1))"
ok "back within 1.3x the fresh build's size after it" within 1.3

# kill -9 the backend in the middle of a compaction: after WAL replay the
# index is valid and finds every row; the next VACUUM compacts it.
killed_mid=false
for delay in 0.05 0.2 0.4 0.1 0.3; do
    round=$((round + 1))
    update_all "$round"
    before=$(compactions)
    sql $PORT -c "SET annoy.compaction_step_delay = '20ms'" -c "VACUUM (INDEX_CLEANUP ON) t" >/dev/null 2>&1 &
    vacuum=$!
    pid=$(compacting_pid)
    if [ -n "$pid" ]; then
        sleep "$delay"
        as_root kill -9 "$pid" || true
    fi
    wait "$vacuum" || true
    for _ in $(seq 1 60); do
        sql $PORT -c "SELECT 1" >/dev/null 2>&1 && break
        sleep 0.5
    done
    if [ -n "$pid" ] && [ "$(compactions)" = "$before" ]; then killed_mid=true; break; fi
    echo "# the kill after ${delay}s missed the compaction, again"
done
ok "a backend was killed in the middle of a compaction" $killed_mid
echo "# left by the kill: $(check "format('%s items, %s live, %s unused pages, %s x the fresh build', items, live_items, unused_pages, $(ratio))")"
ok "annoy_index_check passes after crash recovery" check "live_items >= $N"
ok "every row is still its own nearest neighbour through the index" all_found
sql $PORT -c "VACUUM (INDEX_CLEANUP ON) t"
echo "# the next VACUUM: $(( $(compactions) - before )) compaction, $(ratio) x the fresh build"
ok "after the next VACUUM the index is within 1.3x the fresh build's size again" within 1.3
ok "annoy_index_check passes, only live records left" \
    check "live_items = $N AND items = $N AND unused_pages = 0"
ok "every row is its own nearest neighbour through the index" all_found
ok "the standby follows" wait_for_replay $PORT $STANDBY_PORT
ok "the standby's index passes annoy_index_check" sql $STANDBY_PORT -c "SELECT * FROM annoy_index_check('t_annoy')"
ok "the standby returns the same rows as the primary" test "$(answers $STANDBY_PORT)" = "$(answers $PORT)"
finish_tap
