#!/usr/bin/env bash
# An index created on an empty table, then filled (the usual migration
# order), rebuilds its trees once it holds `rebuild_rows` rows: from the
# insert that gets there, or from VACUUM when the index was in use then.
# The rebuild gives the recall of a fresh build, reuses the old pages, is
# cancelled cleanly, and never runs under this backend's own scans.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=55445
DATA=$TAP_ROOT/rebuild
on_exit "cluster_stop $DATA"
fresh_cluster "$DATA" "$PORT"

# A hard structured set (as in bench/compare_hnsw.py): 40 clusters in a
# rank-32 latent space mapped to 2048-d by one random linear map and ReLU,
# L2-normalised; queries drawn the same way and not in the table.
SET_FILE=$(mktemp)
"${VENV:-$REPO_ROOT/.imgsim/venv}/bin/python" - "$SET_FILE" <<'PY'
import sys
import numpy as np
rng = np.random.default_rng(3)
rank, clusters = 32, 40
lift = rng.standard_normal((rank, 2048)) / np.sqrt(rank)
centres = rng.standard_normal((clusters, rank))
def draw(n):
    z = centres[rng.integers(0, clusters, n)] + 0.7 * rng.standard_normal((n, rank))
    x = np.maximum(z @ lift + 0.3, 0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
with open(sys.argv[1], "w") as out:
    for kind, rows in (("s", draw(4000)), ("q", draw(200))):
        for i, x in enumerate(rows, 1):
            out.write(f"{kind}\t{i}\t[{','.join(f'{v:.5f}' for v in x)}]\n")
PY
sql $PORT -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE raw (kind text, id bigint, emb vector2048)" \
    -c "\\copy raw FROM '$SET_FILE'" \
    -c "CREATE TABLE source AS SELECT id, emb FROM raw WHERE kind = 's'" \
    -c "CREATE TABLE queries AS SELECT id AS q, emb FROM raw WHERE kind = 'q'" \
    -c "DROP TABLE raw" >/dev/null
rm -f "$SET_FILE"

# The exact top 10 of every query in table $1, and recall@10 of its index
# at a search_k small enough (100 of 4000 rows) for the trees' quality to show.
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

check() { sql $PORT -c "SELECT $2 FROM annoy_index_check('$1')"; }

# Migration order: table, index, then one INSERT ... SELECT of 4000 rows.
# The insert that makes 2000 rows live rebuilds; the rest go into the new trees.
sql $PORT -c "CREATE TABLE m (id bigint PRIMARY KEY, emb vector2048)" \
    -c "CREATE INDEX m_annoy ON m USING annoy (emb) WITH (trees = 4, rebuild_rows = 2000)" \
    -c "INSERT INTO m SELECT id, emb FROM source"
ok "the index passes annoy_index_check after the rebuild" check m_annoy "live_items = 4000"
logged() { as_root grep -c "annoy index \"$1\" rebuilt its trees from $2 rows" "$DATA/server.log"; }
ok "the insert that made 2000 rows live rebuilt the trees, once" test "$(logged m_annoy 2000)" = 1
ok "every tree reaches every row" check m_annoy "leaf_entries = 4 * 4000"
never=$(sql $PORT -c "CREATE TABLE n (id bigint PRIMARY KEY, emb vector2048)" \
    -c "CREATE INDEX n_annoy ON n USING annoy (emb) WITH (trees = 4, rebuild_rows = 0)" \
    -c "INSERT INTO n SELECT id, emb FROM source" -c "SELECT recall('n')")
fresh=$(sql $PORT -c "CREATE TABLE f (id bigint PRIMARY KEY, emb vector2048)" \
    -c "INSERT INTO f SELECT id, emb FROM source" \
    -c "CREATE INDEX f_annoy ON f USING annoy (emb) WITH (trees = 4)" -c "SELECT recall('f')")
rebuilt=$(sql $PORT -c "SELECT recall('m')")
echo "# recall@10: rebuilt $rebuilt, fresh build $fresh, never rebuilt $never"
ok "the rebuilt index recalls like a fresh build (within 0.03)" \
    test "$(sql $PORT -c "SELECT $rebuilt >= $fresh - 0.03")" = t
ok "it recalls better than the same index never rebuilt" \
    test "$(sql $PORT -c "SELECT $rebuilt > $never")" = t
ratio=$(sql $PORT -c "SELECT round(pg_relation_size('m_annoy')::numeric / pg_relation_size('f_annoy'), 3)")
echo "# size against the fresh build: $ratio"
ok "its size is within 1.15x of the fresh build's (the old pages were reused)" \
    test "$(sql $PORT -c "SELECT $ratio <= 1.15")" = t
ok "the index never rebuilt did not" test "$(as_root grep -c 'annoy index "n_annoy" rebuilt' "$DATA/server.log")" = 0

# Step by step: the rebuild gives the old pages back, later inserts reuse them.
sql $PORT -c "CREATE TABLE p (id bigint PRIMARY KEY, emb vector2048)" \
    -c "CREATE INDEX p_annoy ON p USING annoy (emb) WITH (trees = 4, rebuild_rows = 1000)" \
    -c "INSERT INTO p SELECT id, emb FROM source WHERE id <= 1000"
freed=$(check p_annoy free_pages)
size=$(sql $PORT -c "SELECT pg_relation_size('p_annoy')")
ok "the rebuild at 1000 rows freed the old trees' pages" test "$freed" -gt 50
sql $PORT -c "INSERT INTO p SELECT id, emb FROM source WHERE id BETWEEN 1001 AND 1100"
ok "later inserts reuse them before growing the index" \
    test "$(sql $PORT -c "SELECT pg_relation_size('p_annoy') = $size AND free_pages < $freed FROM annoy_index_check('p_annoy')")" = t

# An open transaction that scanned the index holds a lock on it: the insert
# that makes the rebuild due leaves it; once the reader is done, VACUUM
# rebuilds.
sql $PORT -c "CREATE TABLE b (id bigint PRIMARY KEY, emb vector2048)" \
    -c "CREATE INDEX b_annoy ON b USING annoy (emb) WITH (trees = 4, rebuild_rows = 1000)" \
    -c "INSERT INTO b SELECT id, emb FROM source WHERE id <= 999"
reader_fifo=$(mktemp -u); mkfifo "$reader_fifo"
as_root chmod 666 "$reader_fifo"
(psql -X -qtA -h /tmp -p $PORT -U postgres -d postgres <"$reader_fifo" >/dev/null) &
reader=$!
exec 7>"$reader_fifo"
echo "BEGIN; SET enable_seqscan = off; SELECT id FROM b ORDER BY emb <-> (SELECT emb FROM queries WHERE q = 1) LIMIT 1;" >&7
for _ in $(seq 1 50); do
    [ "$(sql $PORT -c "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'b_annoy' AND l.pid <> pg_backend_pid()")" -gt 0 ] && break
    sleep 0.1
done
sql $PORT -c "INSERT INTO b SELECT id, emb FROM source WHERE id BETWEEN 1000 AND 1500"
ok "with a reader holding the index, the insert does not rebuild" check b_annoy "free_pages = 0"
echo "COMMIT;" >&7; exec 7>&-; wait $reader; rm -f "$reader_fifo"
sql $PORT -c "VACUUM b"
ok "once the reader is done, VACUUM rebuilds" test "$(logged b_annoy 1500)" = 1
ok "the rebuilt index passes annoy_index_check" check b_annoy "live_items = 1500"

# An INSERT ... SELECT that scans the same index while it crosses the
# threshold: the rebuild waits for a later insert, the rows are right.
sql $PORT -c "CREATE TABLE s (id bigint PRIMARY KEY, emb vector2048)" \
    -c "CREATE INDEX s_annoy ON s USING annoy (emb) WITH (trees = 4, rebuild_rows = 500)" \
    -c "INSERT INTO s SELECT id, emb FROM source WHERE id <= 499"
sql $PORT -c "SET enable_seqscan = off" \
    -c "INSERT INTO s SELECT id + 10000, emb FROM (SELECT id, emb FROM s ORDER BY emb <-> (SELECT emb FROM queries WHERE q = 2) LIMIT 100) x"
ok "an insert that scans its own index does not rebuild under the scan" test "$(logged s_annoy 599)$(logged s_annoy 500)" = 00
ok "the index is intact" check s_annoy "live_items = 599"
copied=$(sql $PORT -c "SET enable_indexscan = off" -c "SELECT count(*) FROM s WHERE id > 10000 AND id - 10000 IN (
    SELECT id FROM s WHERE id < 10000 ORDER BY emb <-> (SELECT emb FROM queries WHERE q = 2) LIMIT 100)")
ok "the rows it copied are the exact 100 nearest (at least 95 of them)" test "$copied" -ge 95
sql $PORT -c "INSERT INTO s SELECT id, emb FROM source WHERE id = 500"
ok "the next insert rebuilds" test "$(logged s_annoy 600)" = 1

# A rebuild cancelled (statement_timeout) leaves the old trees intact and
# the rebuild still due; the next insert does it.
sql $PORT -c "CREATE TABLE c (id bigint PRIMARY KEY, emb vector2048)" \
    -c "CREATE INDEX c_annoy ON c USING annoy (emb) WITH (trees = 8, rebuild_rows = 4000)" \
    -c "INSERT INTO c SELECT id, emb FROM source WHERE id < 4000"
err=$(sql $PORT -c "SET statement_timeout = '150ms'" -c "INSERT INTO c SELECT id, emb FROM source WHERE id = 4000" 2>&1 >/dev/null || true)
ok "the cancelled insert reports the timeout" grep -q "canceling statement due to statement timeout" <<<"$err"
# (The aborted row's item stays live in the index until VACUUM.)
ok "the index is intact after the cancelled rebuild (its new pages unused)" \
    check c_annoy "live_items = 4000 AND free_pages = 0 AND unused_pages > 0"
ok "nothing was rebuilt" test "$(logged c_annoy 4000)" = 0
sql $PORT -c "INSERT INTO c SELECT id, emb FROM source WHERE id = 4000"
ok "the next insert rebuilds" test "$(logged c_annoy 4001)" = 1
ok "the rebuilt index passes annoy_index_check" check c_annoy "live_items = 4001 AND free_pages > 0"

finish_tap
