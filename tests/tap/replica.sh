#!/usr/bin/env bash
# A streaming replica answers the same ORDER BY ... LIMIT queries with the
# same rows as the primary after build, inserts, deletes and VACUUM (which
# compacts the index), and inserts that reuse freed records (all index
# changes reach it through WAL).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PRIMARY_PORT=55442
STANDBY_PORT=55443
PRIMARY=$TAP_ROOT/primary
STANDBY=$TAP_ROOT/standby
on_exit "cluster_stop $STANDBY; cluster_stop $PRIMARY"

fresh_cluster "$PRIMARY" "$PRIMARY_PORT" wal_level=replica max_wal_senders=4
standby_cluster "$PRIMARY_PORT" "$STANDBY" "$STANDBY_PORT"


# 20 queries against table $1.
queries() {
    echo "SET enable_seqscan = off;
SELECT q, array_agg(id ORDER BY rank) FROM generate_series(1, 20) q,
LATERAL (SELECT id, row_number() OVER () AS rank FROM (
    SELECT id FROM $1 ORDER BY emb <-> $(vector_sql 'q * 13 + 0.5') LIMIT 10) s) r
GROUP BY q ORDER BY q;"
}

# A digest of table $2's index pages on port $1, from pd_lower on (the
# LSN and checksum fields before it need not match): replay must rebuild
# every page exactly, the zeroed hole past pd_lower included.
index_pages() {
    sql "$1" -c "SELECT md5(string_agg(md5(substr(get_raw_page('${2}_annoy', b::int), 13)), '' ORDER BY b))
        FROM generate_series(0, pg_relation_size('${2}_annoy') / 8192 - 1) b"
}

# compare STAGE [TABLE]: the standby answers like the primary (table t by default).
compare() {
    local stage=$1 table=${2:-t}
    ok "standby replayed the primary's WAL ($stage)" wait_for_replay $PRIMARY_PORT $STANDBY_PORT
    local primary standby
    primary=$(sql $PRIMARY_PORT -c "$(queries "$table")")
    standby=$(sql $STANDBY_PORT -c "$(queries "$table")")
    ok "standby returns the same rows as the primary ($stage)" test "$primary" = "$standby"
    ok "standby's index passes annoy_index_check ($stage)" sql $STANDBY_PORT -c "SELECT * FROM annoy_index_check('${table}_annoy')"
    ok "standby's index pages are the primary's, byte for byte ($stage)" \
        test "$(index_pages $PRIMARY_PORT "$table")" = "$(index_pages $STANDBY_PORT "$table")"
    plan=$(sql $STANDBY_PORT -c "SET enable_seqscan = off" -c "EXPLAIN SELECT id FROM $table ORDER BY emb <-> (SELECT emb FROM $table LIMIT 1) LIMIT 1")
    ok "the standby's queries use the annoy index ($stage)" grep -q "Index Scan using ${table}_annoy" <<<"$plan"
}

sql $PRIMARY_PORT -c "CREATE EXTENSION imgsim" -c "CREATE EXTENSION pageinspect" \
    -c "CREATE TABLE t (id int PRIMARY KEY, emb vector2048)" \
    -c "INSERT INTO t SELECT i, $(vector_sql i) FROM generate_series(1, 1000) i" \
    -c "CREATE INDEX t_annoy ON t USING annoy (emb) WITH (trees = 4)"
compare "after the build"
holed=$(sql $PRIMARY_PORT -c "SELECT count(*) FROM generate_series(1, pg_relation_size('t_annoy') / 8192 - 1) b,
    page_header(get_raw_page('t_annoy', b::int)) h WHERE h.lower < h.upper")
ok "index pages end in a hole that WAL leaves out ($holed pages)" test "$holed" -gt 0

sql $PRIMARY_PORT -c "INSERT INTO t SELECT i, $(vector_sql i) FROM generate_series(1001, 1600) i"
compare "after inserts"

# A third of the rows deleted: VACUUM compacts the index (records moved,
# new trees, pages freed, the relation truncated), all of it through WAL.
sql $PRIMARY_PORT -c "DELETE FROM t WHERE id % 3 = 0" -c "VACUUM t"
compacted=$(sql $PRIMARY_PORT -c "SELECT items = 1067 AND free_items = 0 FROM annoy_index_check('t_annoy')")
ok "VACUUM compacted the index (only the 1067 live records left)" test "$compacted" = t
compare "after deletes and VACUUM (compacted)"
size() { sql "$1" -c "SELECT pg_relation_size('t_annoy')"; }
ok "the standby's index was truncated like the primary's" test "$(size $STANDBY_PORT)" = "$(size $PRIMARY_PORT)"

# Fewer deletes leave freed records (too few to compact); these inserts
# refill them (a change of the metapage and one or two item pages in one
# WAL record).
sql $PRIMARY_PORT -c "DELETE FROM t WHERE id % 10 = 1" -c "VACUUM t"
ok "VACUUM freed the 107 deleted rows' records" test "$(sql $PRIMARY_PORT -c "SELECT free_items FROM annoy_index_check('t_annoy')")" = 107
sql $PRIMARY_PORT -c "INSERT INTO t SELECT i, $(vector_sql i) FROM generate_series(1601, 1900) i"
reused=$(sql $PRIMARY_PORT -c "SELECT items = 1260 AND free_items = 0 FROM annoy_index_check('t_annoy')")
ok "the inserts reused the freed records" test "$reused" = t
compare "after inserts into freed records"

# An index created on an empty table rebuilds its trees on the primary once
# it holds rebuild_rows rows (its old pages freed, then reused by the next
# inserts): all of it reaches the standby through WAL.
sql $PRIMARY_PORT -c "CREATE TABLE m (id int PRIMARY KEY, emb vector2048)" \
    -c "CREATE INDEX m_annoy ON m USING annoy (emb) WITH (trees = 4, rebuild_rows = 600)" \
    -c "INSERT INTO m SELECT i, $(vector_sql i) FROM generate_series(1, 600) i"
freed=$(sql $PRIMARY_PORT -c "SELECT free_pages FROM annoy_index_check('m_annoy')")
ok "the primary rebuilt the index created empty" test "$freed" -gt 0
compare "after the rebuild of an index created empty" m
sql $PRIMARY_PORT -c "INSERT INTO m SELECT i, $(vector_sql i) FROM generate_series(601, 900) i"
reused=$(sql $PRIMARY_PORT -c "SELECT free_pages < $freed FROM annoy_index_check('m_annoy')")
ok "later inserts reused the freed pages" test "$reused" = t
compare "after inserts into the rebuilt index" m
finish_tap
