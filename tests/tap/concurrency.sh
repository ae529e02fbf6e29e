#!/usr/bin/env bash
# Several sessions insert, delete, query and vacuum an annoy-indexed table
# at once for a while, while monitoring sessions run annoy_index_check (one
# waiting for its lock, one with nowait): no errors, no deadlock, no check
# reports corruption of the healthy index, annoy_index_check clean at the
# end, every surviving row is found through the index, and the inserts
# reused records that VACUUM freed while queries were reading them.
# Then a copy of the cluster with one item's vector overwritten in the
# relation file: every check made while inserts run reports XX002.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=55444
DATA=$TAP_ROOT/concurrency/primary
DAMAGED=$TAP_ROOT/concurrency/damaged
SECONDS_TO_RUN=${IMGSIM_CONCURRENCY_SECONDS:-15}
LOGS=$(mktemp -d)
on_exit "cluster_stop $DATA; cluster_stop $DAMAGED; rm -rf $LOGS"

fresh_cluster "$DATA" "$PORT" deadlock_timeout=100ms
# autovacuum stays off for t, so that only the VACUUMs here decide what is
# removed (an auto-ANALYZE's snapshot would keep the last deleted rows).
sql $PORT -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE t (id int PRIMARY KEY, emb vector2048) WITH (autovacuum_enabled = off)" \
    -c "INSERT INTO t SELECT i, $(vector_sql i) FROM generate_series(1, 400) i" \
    -c "CREATE INDEX t_annoy ON t USING annoy (emb) WITH (trees = 3)"

# Each worker runs one statement per transaction until the deadline and
# logs every error it sees (with its SQLSTATE).
worker() {
    local name=$1 n=0; shift
    while [ "$(date +%s)" -lt "$deadline" ]; do
        n=$((n + 1))
        sql $PORT -v VERBOSITY=verbose -c "$("$@" "$n")" >/dev/null 2>>"$LOGS/$name.err" \
            || echo "failed statement $n" >>"$LOGS/$name.err"
    done
    echo "$n" > "$LOGS/$name.count"
}
insert_a() { echo "INSERT INTO t VALUES (100000 + $1, $(vector_sql "100000 + $1"))"; }
insert_b() { echo "INSERT INTO t VALUES (200000 + $1, $(vector_sql "200000 + $1"))"; }
delete_some() { echo "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 3)"; }
query() { echo "SET enable_seqscan = off; SELECT id FROM t ORDER BY emb <-> $(vector_sql "$1 % 500") LIMIT 10"; }
vacuum() { sleep 1; echo "VACUUM t"; }
check() { echo "SELECT * FROM annoy_index_check('t_annoy')"; }
check_nowait() { sleep 0.2; echo "SELECT * FROM annoy_index_check('t_annoy', nowait => true)"; }

deadline=$(( $(date +%s) + SECONDS_TO_RUN ))
worker insert_a insert_a & worker insert_b insert_b & worker delete delete_some &
worker query query & worker vacuum vacuum & worker check check & worker check_nowait check_nowait &
wait

for w in insert_a insert_b delete query vacuum check; do
    echo "# $w: $(cat "$LOGS/$w.count") statements"
    ok "$w saw no errors" test ! -s "$LOGS/$w.err"
    [ -s "$LOGS/$w.err" ] && head -5 "$LOGS/$w.err"
done
checks=$(cat "$LOGS/check.count")
ok "the waiting check ran many times under load ($checks)" test "$checks" -ge 10
# nowait: "busy" (55P03) while a writer holds the table, else a clean check.
busy=$(grep -c "^ERROR:  55P03" "$LOGS/check_nowait.err" || true)
other=$(grep "^ERROR:" "$LOGS/check_nowait.err" | grep -vc "^ERROR:  55P03" || true)
nowait_runs=$(cat "$LOGS/check_nowait.count")
echo "# check_nowait: $nowait_runs checks, $busy busy"
ok "the nowait check reported nothing but busy (other errors: $other)" test "$other" -eq 0
ok "the nowait check got through at times ($((nowait_runs - busy)) of $nowait_runs clean)" test "$busy" -lt "$nowait_runs"
[ "$other" -eq 0 ] || grep "^ERROR:" "$LOGS/check_nowait.err" | grep -v "^ERROR:  55P03" | head -5

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

# A copy of the stopped cluster with 64 bytes of a live item's vector
# overwritten in the index's file (the first item page whose first record
# header is on it and is live, so that inserts never rewrite it).
index_file=$(sql $PORT -c "SELECT pg_relation_filepath('t_annoy')")
cluster_stop "$DATA"
as_root rm -rf "$DAMAGED"
as_root cp -a "$DATA" "$DAMAGED"
damaged_block=$(as_root python3 - "$DAMAGED/$index_file" <<'PY'
import struct, sys
PAGE, HEADER, SPECIAL, MAGIC, ITEM = 8192, 24, 16, 0xA2207E55, 2
with open(sys.argv[1], "r+b") as f:
    data = f.read()
    for block in range(1, len(data) // PAGE):
        page = data[block * PAGE:(block + 1) * PAGE]
        magic, kind = struct.unpack_from("<IB", page, PAGE - SPECIAL)
        _next, continued, started = struct.unpack_from("<IHH", page, HEADER)
        record = HEADER + 8 + continued          # first record header on the page
        vector = record + 16
        flags = struct.unpack_from("<H", page, record + 6)[0] if started else None
        if magic == MAGIC and kind == ITEM and flags == 0 and vector + 64 <= PAGE - SPECIAL:
            f.seek(block * PAGE + vector)
            f.write(struct.pack("<32H", *([0x5000] * 32)))  # 32 halves of 32.0
            print(block)
            break
PY
)
ok "found a live item to damage (block $damaged_block)" test -n "$damaged_block"
cluster_start "$DAMAGED" "$PORT"
deadline=$(( $(date +%s) + SECONDS_TO_RUN / 2 ))
insert_c() { echo "INSERT INTO t VALUES (300000 + $1, $(vector_sql "300000 + $1"))"; }
insert_d() { echo "INSERT INTO t VALUES (400000 + $1, $(vector_sql "400000 + $1"))"; }
worker damaged_insert_c insert_c & worker damaged_insert_d insert_d & worker damaged_check check &
wait
checks=$(cat "$LOGS/damaged_check.count")
detected=$(grep -c "^ERROR:  XX002: annoy index \"t_annoy\" is corrupted: index corrupted at block $damaged_block: .*vector does not match its stored norm" \
    "$LOGS/damaged_check.err" || true)
inserted=$(sql $PORT -c "SELECT count(*) FROM t WHERE id > 300000")
echo "# damaged copy: $checks checks, $detected reported the damaged block, $inserted rows inserted meanwhile"
ok "every check of the damaged copy under inserts reported it ($detected of $checks)" test "$detected" -eq "$checks"
ok "the damaged copy was checked many times while rows were inserted" test "$checks" -ge 5 -a "$inserted" -gt 0
finish_tap
