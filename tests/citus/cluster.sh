#!/usr/bin/env bash
# imgsim on a Citus cluster: a coordinator and two workers on localhost, the
# photos table distributed by path and loaded through the coordinator with
# `imgsim load`, an annoy index on every shard, nearest-neighbour queries
# through the coordinator checked against the exact answer (seq scan + sort on
# the same data) after the build, after writes and VACUUM, after a shard move
# and a rebalance, and after a worker was stopped and restarted; GUCs reaching
# the shards; vector2048 values moved between nodes in text and in binary.
#
# usage: tests/citus/cluster.sh PHOTOS_DIR   (a folder the server can read:
#   the sample photos, their aug/ copies and the derived_* query images)
# Environment: IMGSIM_CLI (the imgsim binary), CI=true makes a missing Citus
# source a failure instead of a skip. Last line: "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/../tap/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PHOTOS=${1:?usage: cluster.sh PHOTOS_DIR}
IMGSIM_CLI=${IMGSIM_CLI:-$REPO_ROOT/target/release/imgsim}

if ! citus_source_present; then
    if [ "${CI:-}" = true ]; then
        echo "not ok - Citus source at $CITUS_SOURCE_DIR (required under CI=true)"
        echo "0 passed, 1 failed"; exit 1
    fi
    echo "SKIPPED: no Citus source at $CITUS_SOURCE_DIR, so the Citus cluster suite is skipped (it needs Citus built from there)"
    echo "0 passed, 0 failed"; exit 0
fi
[ -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] || die "Citus is not installed: run tools/setup.sh"

COORD=${IMGSIM_CITUS_PORT:-56100}
W1=$((COORD + 1)) W2=$((COORD + 2))
on_exit "cluster_stop $CITUS_ROOT/worker2; cluster_stop $CITUS_ROOT/worker1; cluster_stop $CITUS_ROOT/coordinator"
WORK=$(mktemp -d); chmod 755 "$WORK"
export PGOPTIONS="-c client_min_messages=warning"   # Citus's notices about what it copies
on_exit "rm -rf '$WORK'"

# same DESCRIPTION EXPECTED ACTUAL: passes when equal, shows both otherwise.
same() {
    if [ "$2" = "$3" ]; then PASSED=$((PASSED + 1)); echo "ok - $1"; return; fi
    FAILED=$((FAILED + 1)); echo "not ok - $1"
    diff <(echo "$2") <(echo "$3") | head -20 | sed 's/^/#   /' || true
}
# The SQLSTATE and message of a statement expected to fail.
error_of() { psql -X -qtA -h /tmp -p "$1" -U postgres -d postgres -v VERBOSITY=verbose -c "$2" 2>&1 >/dev/null | grep -m1 '^ERROR' || true; }

begin "Citus cluster: coordinator on $COORD, workers on $W1 and $W2"
citus_nodes_start coordinator "$COORD" worker1 "$W1" worker2 "$W2" --
citus_add_workers "$COORD" "$W1" "$W2"
sql "$COORD" -c "CREATE EXTENSION imgsim"
# The shards of this small table hold about 50 rows each, where a seq scan and
# sort is cheaper than any index: make the planner use the index, on every
# node (Citus propagates ALTER DATABASE ... SET to the workers).
sql "$COORD" -c "ALTER DATABASE postgres SET enable_seqscan = off"
ok "two workers are active" test "$(sql $COORD -c "SELECT count(*) FROM citus_get_active_worker_nodes()")" = 2
same "imgsim was created on every worker too" "t
t" "$(sql $COORD -c "SELECT result FROM run_command_on_workers(\$\$SELECT count(*) = 1 FROM pg_extension WHERE extname = 'imgsim'\$\$) ORDER BY nodeport")"

begin "photos distributed by path, loaded through the coordinator with imgsim load"
# The loader's table shape, with the unique key on the distribution column (a
# unique key on a distributed table must contain it, and so must ON CONFLICT's).
sql "$COORD" -c "CREATE TABLE photos (id bigserial, path text PRIMARY KEY, image bytea NOT NULL, emb vector2048 NOT NULL)" \
    -c "SELECT create_distributed_table('photos', 'path', shard_count => 4)" >/dev/null
mapfile -t ORIGINALS < <(find "$PHOTOS" -maxdepth 1 -type f \( -name '*.png' -o -name '*.jpg' \) ! -name 'derived_*' | sort)
mapfile -t AUG_FIRST < <(find "$PHOTOS/aug" -name 'aug_*_0[0-7].jpg' | sort)
mapfile -t AUG_LATER < <(find "$PHOTOS/aug" -name 'aug_*_0[89].jpg' -o -name 'aug_*_1[01].jpg' | sort)
QUERIES=("$PHOTOS/derived_chelsea_q40.jpg" "$PHOTOS/derived_coffee_half.png" "$PHOTOS/derived_chelsea_crop.webp"
    "$PHOTOS/derived_astronaut_large_baseline.jpg" "$PHOTOS/coins.png" "$PHOTOS/aug/aug_rocket_03.jpg"
    "$PHOTOS/aug/aug_horse_10.jpg" "$PHOTOS/moon.png")
ok "the test photos are there (${#ORIGINALS[@]} originals, ${#AUG_FIRST[@]} + ${#AUG_LATER[@]} copies)" \
    test "${#ORIGINALS[@]}" -ge 10 -a "${#AUG_FIRST[@]}" -ge 80 -a "${#AUG_LATER[@]}" -ge 40
DSN="host=/tmp port=$COORD user=postgres dbname=postgres"
"$IMGSIM_CLI" load --db "$DSN" --table photos "${ORIGINALS[@]}" "${AUG_FIRST[@]}" 2>"$WORK/load.log"
ok "imgsim load into the distributed table succeeded" grep -q "done: $((${#ORIGINALS[@]} + ${#AUG_FIRST[@]})) loaded, 0 already loaded, 0 failed" "$WORK/load.log"
"$IMGSIM_CLI" load --db "$DSN" --table photos "${ORIGINALS[@]}" "${AUG_FIRST[@]}" 2>"$WORK/reload.log"
ok "a second load skips everything (its SELECT path and ON CONFLICT work on the distributed table)" \
    grep -q "done: 0 loaded, $((${#ORIGINALS[@]} + ${#AUG_FIRST[@]})) already loaded, 0 failed" "$WORK/reload.log"
same "every shard has rows, two shards on each worker" "$W1 2
$W2 2" "$(sql $COORD -F' ' -c "WITH rows AS (SELECT shardid, result::int AS n FROM run_command_on_shards('photos', 'SELECT count(*) FROM %s'))
    SELECT nodeport, count(*) FROM citus_shards JOIN rows USING (shardid) WHERE n > 0 GROUP BY nodeport ORDER BY nodeport")"
# The loader's INSERT had image_embedding($2) computed on the coordinator (for
# the shard's query); this WHERE is pushed down, so the workers compute it.
RECOMPUTE="SELECT count(*) FROM photos WHERE emb::text <> image_embedding(image)::text"
same "the shards' queries call image_embedding on the workers" 4 \
    "$(sql $COORD -c "SET citus.explain_all_tasks = on" -c "EXPLAIN (VERBOSE, COSTS OFF) $RECOMPUTE" | grep -c 'Query: .*image_embedding(image)')"
same "image_embedding on the workers gives the vectors the load stored" 0 "$(sql $COORD -c "$RECOMPUTE")"
sql "$COORD" -c "CREATE TABLE query_vectors (name text PRIMARY KEY, emb vector2048 NOT NULL)" \
    -c "SELECT create_reference_table('query_vectors')" >/dev/null
for q in "${QUERIES[@]}"; do
    sql "$COORD" -c "INSERT INTO query_vectors VALUES ('$(basename "$q")', image_embedding(pg_read_binary_file('$q')))"
done

begin "annoy index on the distributed table"
sql "$COORD" -c "CREATE INDEX photos_emb_idx ON photos USING annoy (emb)" -c "ANALYZE photos"
same "the index exists on every shard" "4" \
    "$(sql $COORD -c "SELECT count(*) FROM run_command_on_shards('photos', \$\$SELECT count(*) FROM pg_indexes WHERE indexname = replace('%s', 'photos_', 'photos_emb_idx_')\$\$) WHERE result = '1'")"

# The top 10 file names of every query image, a block per query. ORDER BY $1,
# where $1 in it is the query image as a bytea parameter; $2 is a filter.
ANN='emb <-> image_embedding($1)'
EXACT='l2_distance(emb, image_embedding($1))'   # a function, not the operator: no index can serve it
top10() {
    local key=$1 filter=${2:-true} script
    script="PREPARE top10(bytea) AS SELECT regexp_replace(path, '.*/', '') FROM photos WHERE $filter ORDER BY $key LIMIT 10;"
    for q in "${QUERIES[@]}"; do script+=$'\n'"\\echo -- $(basename "$q")"$'\n'"EXECUTE top10(pg_read_binary_file('$q'));"; done
    sql "$COORD" -f - <<<"$script"
}
# Fewest rows any query returned in a top10 output.
fewest_rows() { awk '/^-- / {if (n != "") print n; n = 0; next} {n++} END {print n}' <<<"$1" | sort -n | head -1; }

# compare STAGE: the index's answers through the coordinator are the exact ones.
compare() {
    local stage=$1 exact ann
    exact=$(top10 "$EXACT"); ann=$(top10 "$ANN")
    same "ORDER BY emb <-> image_embedding(\$1) LIMIT 10 equals the exact top 10 ($stage)" "$exact" "$ann"
    ok "every query returned 10 rows ($stage)" test "$(fewest_rows "$ann")" = 10
    exact=$(top10 "$EXACT" "id % 9 = 0"); ann=$(top10 "$ANN" "id % 9 = 0")
    same "with a filter on id (not the distribution column) it equals the exact top 10 ($stage)" "$exact" "$ann"
    ok "the filtered queries are never short ($stage)" test "$(fewest_rows "$ann")" = 10
}

# The coordinator computes image_embedding($1) while planning and sends the
# vector to the shards as a literal (EXPLAIN VERBOSE shows it).
plan_of() {
    sql "$COORD" -c "SET citus.explain_all_tasks = on" -c "PREPARE top10(bytea) AS SELECT path FROM photos ORDER BY $1 LIMIT 10" \
        -c "EXPLAIN (COSTS OFF) EXECUTE top10(pg_read_binary_file('$Q1'))"
}
Q1=${QUERIES[0]}
same "EXPLAIN: an annoy index scan on each of the 4 shards" 4 "$(plan_of "$ANN" | grep -c 'Index Scan using photos_emb_idx_')"
same "EXPLAIN: the exact query is a seq scan and sort on each shard" "4 0" \
    "$(plan_of "$EXACT" | awk '/Seq Scan on photos_/ {s++} /annoy|photos_emb_idx/ {a++} END {print s + 0, a + 0}')"
compare "after the build"

ref_top10() {
    local q script=""
    for q in "${QUERIES[@]}"; do
        script+="\\echo -- $(basename "$q")"$'\n'"SELECT regexp_replace(path, '.*/', '') FROM photos ORDER BY emb $1 (SELECT emb FROM query_vectors WHERE name = '$(basename "$q")') LIMIT 10;"$'\n'
    done
    sql "$COORD" -f - <<<"$script"
}
same "a query vector from a reference table gives the exact top 10" "$(top10 "$EXACT")" "$(ref_top10 '<->')"
plan=$(sql "$COORD" -c "SET citus.explain_all_tasks = on" -c "EXPLAIN (COSTS OFF) SELECT path FROM photos ORDER BY emb <-> (SELECT emb FROM query_vectors WHERE name = 'moon.png') LIMIT 10")
same "... served by the annoy index on every shard" 4 "$(grep -c 'Index Scan using photos_emb_idx_' <<<"$plan")"
error=$(error_of "$COORD" "SELECT path FROM photos ORDER BY emb <-> (SELECT emb FROM photos WHERE path LIKE '%/moon.png') LIMIT 10")
ok "a query vector from a subquery on the distributed table is refused (0A000): $error" grep -q '^ERROR:  0A000' <<<"$error"
cte_top10=$(sql "$COORD" -c "WITH q AS MATERIALIZED (SELECT emb FROM photos WHERE path LIKE '%/moon.png')
    SELECT regexp_replace(path, '.*/', '') FROM photos ORDER BY emb <-> (SELECT emb FROM q) LIMIT 10")
same "... while a materialized CTE of it works (sent to the shards as an intermediate result)" \
    "$(sql $COORD -c "SELECT regexp_replace(path, '.*/', '') FROM photos ORDER BY l2_distance(emb, (SELECT emb FROM query_vectors WHERE name = 'moon.png')) LIMIT 10")" "$cte_top10"
client=$("$IMGSIM_CLI" search --db "$DSN" --table photos --query "$Q1" -k 10 | awk 'NR > 1 {sub(".*/", "", $NF); print $NF}')
same "imgsim search through the coordinator gives the exact top 10" "$(top10 "$EXACT" | sed -n '2,11p')" "$client"

begin "annoy.* settings reach the shards"
# What the shards' sessions see, read inside the pushed-down query itself.
probe="SELECT DISTINCT k FROM (SELECT current_setting('annoy.search_k') || ',' || current_setting('annoy.rerank') AS k
    FROM photos ORDER BY emb <-> (SELECT emb FROM query_vectors WHERE name = 'moon.png') LIMIT 10) s;"
rows="SELECT count(*) FROM (SELECT path FROM photos ORDER BY emb <-> (SELECT emb FROM query_vectors WHERE name = 'moon.png') LIMIT 10) s;"
# Each as its own statement (psql -f): a BEGIN inside one multi-statement
# string mixes with its implicit transaction, which Citus's propagation refuses.
in_session() { sql "$COORD" -f - <<<"$1"; }
PROPAGATE="SET citus.propagate_set_commands = 'local';"
same "by default the shards run with the defaults" "1500,0" "$(in_session "$probe")"
same "a plain SET LOCAL stays on the coordinator (citus.propagate_set_commands = none)" "1500,0" \
    "$(in_session "BEGIN; SET LOCAL annoy.search_k = 77; SET LOCAL annoy.rerank = 7; $probe COMMIT;")"
same "with citus.propagate_set_commands = 'local', SET LOCAL reaches every shard" "77,7" \
    "$(in_session "$PROPAGATE BEGIN; SET LOCAL annoy.search_k = 77; SET LOCAL annoy.rerank = 7; $probe COMMIT;")"
same "... and changes what the shards do (annoy.max_scan_items = 2: 2 rows from each of 4 shards)" 8 \
    "$(in_session "$PROPAGATE BEGIN; SET LOCAL annoy.max_scan_items = 2; $rows COMMIT;")"
same "... while without propagation the shards return all 10" 10 \
    "$(in_session "BEGIN; SET LOCAL annoy.max_scan_items = 2; $rows COMMIT;")"
for target in "ROLE postgres" "DATABASE postgres"; do
    sql "$COORD" -c "ALTER $target SET annoy.search_k = 2345"
    same "ALTER $target SET is propagated: new sessions on the shards use it" "2345,0" "$(in_session "$probe")"
    sql "$COORD" -c "ALTER $target RESET annoy.search_k"
    same "... and RESET undoes it on the shards" "1500,0" "$(in_session "$probe")"
done

begin "writes after the build, VACUUM"
"$IMGSIM_CLI" load --db "$DSN" --table photos "${AUG_LATER[@]}" 2>"$WORK/load2.log"
ok "imgsim load added ${#AUG_LATER[@]} rows to the indexed table" grep -q "done: ${#AUG_LATER[@]} loaded" "$WORK/load2.log"
rows_before=$(sql "$COORD" -c "SELECT count(*) FROM photos")
sql "$COORD" -c "DELETE FROM photos WHERE id % 7 = 3"
deleted=$((rows_before - $(sql "$COORD" -c "SELECT count(*) FROM photos")))
ok "deleted $deleted rows" test "$deleted" -gt 10
sql "$COORD" -c "VACUUM photos"
compare "after inserts, deletes and VACUUM"

# check_shards STAGE: annoy_index_check on every shard's index; its live items
# add up to the table's rows.
check_shards() {
    local results
    results=$(sql "$COORD" -F' ' -c "SELECT success, result FROM run_command_on_shards('photos',
        \$\$SELECT live_items FROM annoy_index_check(replace('%s', 'photos_', 'photos_emb_idx_')::regclass)\$\$)")
    same "annoy_index_check passes on all 4 shards ($1)" "t t t t" "$(awk '{printf "%s%s", sep, $1; sep = " "}' <<<"$results")"
    same "the shards' indexes hold every row once ($1)" "$(sql $COORD -c "SELECT count(*) FROM photos")" \
        "$(awk '{n += $2} END {print n}' <<<"$results")"
}
check_shards "after writes and VACUUM"

begin "a shard moved to the other worker, then a rebalance"
read -r SHARD SHARD_TABLE < <(sql "$COORD" -F' ' -c "SELECT shardid, shard_name FROM citus_shards WHERE table_name = 'photos'::regclass AND nodeport = $W1 ORDER BY shardid LIMIT 1")
# The top 10 of the moved shard's own index, asked of the worker holding it.
shard_top10() {
    local q script="SET enable_seqscan = off;"
    for q in "${QUERIES[@]}"; do
        script+=$'\n'"SELECT string_agg(id::text, ' ') FROM (SELECT id FROM $SHARD_TABLE ORDER BY emb <-> image_embedding(pg_read_binary_file('$q')) LIMIT 10) s;"
    done
    sql "$1" -c "$script"
}
before=$(shard_top10 "$W1")
sql "$COORD" -c "SELECT citus_move_shard_placement($SHARD, 'localhost', $W1, 'localhost', $W2, shard_transfer_mode => 'force_logical')" >/dev/null
same "shard $SHARD is now on worker 2" "$W2" "$(sql $COORD -c "SELECT nodeport FROM citus_shards WHERE shardid = $SHARD")"
ok "worker 2 queries the moved shard with its annoy index" grep -q "Index Scan using photos_emb_idx_$SHARD" \
    <(sql "$W2" -c "SET enable_seqscan = off" -c "EXPLAIN SELECT id FROM $SHARD_TABLE ORDER BY emb <-> (SELECT emb FROM query_vectors LIMIT 1) LIMIT 10")
same "the moved shard's index answers as it did on worker 1" "$before" "$(shard_top10 "$W2")"
compare "after the shard move"
sql "$COORD" -c "SELECT rebalance_table_shards('photos', shard_transfer_mode => 'block_writes')" >/dev/null
same "the rebalance evened the shards out again" "2 2" "$(sql $COORD -c "SELECT string_agg(n::text, ' ') FROM (SELECT count(*) n FROM citus_shards WHERE table_name = 'photos'::regclass GROUP BY nodeport) s")"
compare "after the rebalance"
check_shards "after the move and the rebalance"

begin "a worker stopped and restarted"
answers=$(top10 "$ANN"); rows_before=$(sql "$COORD" -c "SELECT count(*) FROM photos")
cluster_stop "$CITUS_ROOT/worker2"
error=$(error_of "$COORD" "SELECT path FROM photos ORDER BY emb <-> (SELECT emb FROM query_vectors WHERE name = 'moon.png') LIMIT 10")
ok "with worker 2 down the query fails with Citus's connection error: $error" grep -q "^ERROR:  08006: connection to the remote node .*localhost:$W2 failed" <<<"$error"
cluster_start "$CITUS_ROOT/worker2" "$W2" "${CITUS_NODE_SETTINGS[@]}"
same "after the restart the same answers" "$answers" "$(top10 "$ANN")"
same "... and no row lost" "$rows_before" "$(sql $COORD -c "SELECT count(*) FROM photos")"
check_shards "after the restart"

begin "vector2048 values between nodes, in text and in binary"
# Rows with the awkward halves (-0, the smallest subnormal, ±65504, one third)
# and ordinary ones; the source is a plain table on the coordinator.
edge="(SELECT array_agg((ARRAY['-0', '5.9604645e-8', '65504', '-65504', '6.1035156e-5', '0.33325195'])[1 + (d + i) % 6]::real) FROM generate_series(1, 2048) d)::vector2048"
sql "$COORD" -c "CREATE TABLE vectors_source (id int PRIMARY KEY, emb vector2048 NOT NULL)" \
    -c "INSERT INTO vectors_source SELECT i, $edge FROM generate_series(1, 6) i" \
    -c "INSERT INTO vectors_source SELECT i, $(vector_sql i) FROM generate_series(7, 300) i"
# The digest of the vectors as text on the node that computes it; text output
# is the shortest decimal that reads back as the same half, so equal digests
# mean bit-identical values.
digest_of() { echo "SELECT md5(string_agg(id || ':' || emb::text, ';' ORDER BY id)) FROM $1"; }
SOURCE=$(sql "$COORD" -c "$(digest_of vectors_source)")
ok "text output tells -0 from 0" test "$(sql $COORD -c "SELECT ('[' || repeat('-0,', 2047) || '0]')::vector2048::text LIKE '[-0,%,0]'")" = t
# stored_on_shards TABLE: digest computed on the workers, from the shards' own values.
stored_on_shards() {
    sql "$COORD" -c "SELECT md5(string_agg(r, ';' ORDER BY id)) FROM (SELECT id, id || ':' || emb::text AS r FROM $1 ORDER BY id LIMIT 100000) s"
}
# fetched TABLE PROTOCOL: digest on the coordinator of the vectors the workers
# sent it, with citus.enable_binary_protocol on or off.
fetched() { sql "$COORD" -c "SET citus.enable_binary_protocol = $2" -c "$(digest_of "(SELECT id, emb FROM $1 ORDER BY id LIMIT 100000) f")"; }

sql "$COORD" -c "CREATE TABLE vectors (id int PRIMARY KEY, emb vector2048 NOT NULL)" \
    -c "SELECT create_distributed_table('vectors', 'id', shard_count => 4)" \
    -c "INSERT INTO vectors SELECT * FROM vectors_source" >/dev/null
same "INSERT ... SELECT from the coordinator (binary COPY to the shards) stores the values unchanged" "$SOURCE" "$(stored_on_shards vectors)"
same "read back in binary (citus.enable_binary_protocol = on)" "$SOURCE" "$(fetched vectors on)"
same "read back in text (citus.enable_binary_protocol = off)" "$SOURCE" "$(fetched vectors off)"
same "COPY TO through the coordinator (text from the shards)" \
    "$(sql $COORD -c "COPY (SELECT id, emb FROM vectors_source ORDER BY id) TO STDOUT" | md5sum)" \
    "$(sql $COORD -c "COPY vectors TO STDOUT" | sort -n | md5sum)"
sql "$COORD" -c "CREATE TABLE vectors_text (id int PRIMARY KEY, emb vector2048 NOT NULL)" \
    -c "SELECT create_distributed_table('vectors_text', 'id', shard_count => 4)" >/dev/null
sql "$COORD" -f - >/dev/null <<<"SELECT format('INSERT INTO vectors_text VALUES (%s, %L)', id, emb) FROM vectors_source \gexec"
same "INSERT of text literals (deparsed into each shard's query) stores the values unchanged" "$SOURCE" "$(stored_on_shards vectors_text)"
sql "$COORD" -c "CREATE TABLE vectors_by_group (grp int, id int, emb vector2048 NOT NULL)" \
    -c "SELECT create_distributed_table('vectors_by_group', 'grp', shard_count => 3)" \
    -c "INSERT INTO vectors_by_group SELECT id % 5, id, emb FROM vectors" >/dev/null
same "INSERT ... SELECT repartitioned between the workers (intermediate results) keeps the values" "$SOURCE" "$(stored_on_shards vectors_by_group)"
same "a CTE's vectors sent back to the workers as an intermediate result compare equal there" 300 \
    "$(sql $COORD -c "WITH c AS MATERIALIZED (SELECT id, emb FROM vectors ORDER BY id LIMIT 300)
        SELECT count(*) FROM vectors v JOIN c ON v.id = c.id WHERE v.emb::text = c.emb::text")"
sql "$COORD" -c "CREATE TABLE vectors_reference AS SELECT * FROM vectors_source" -c "SELECT create_reference_table('vectors_reference')" >/dev/null
same "a reference table's copy on each worker is the source" "$SOURCE
$SOURCE" "$(sql $COORD -c "SELECT result FROM run_command_on_workers(\$\$$(digest_of vectors_reference)\$\$) ORDER BY nodeport")"
move_mode=0
for mode in "block_writes off" "block_writes on" "force_logical off" "force_logical on"; do
    read -r transfer binary <<<"$mode"
    read -r shard from to < <(sql "$COORD" -F' ' -c "SELECT shardid, nodeport, CASE nodeport WHEN $W1 THEN $W2 ELSE $W1 END FROM citus_shards
        WHERE table_name = 'vectors'::regclass ORDER BY shardid OFFSET $((move_mode % 4)) LIMIT 1")
    sql "$COORD" -c "SET citus.enable_binary_protocol = $binary" \
        -c "SELECT citus_move_shard_placement($shard, 'localhost', $from, 'localhost', $to, shard_transfer_mode => '$transfer')" >/dev/null
    same "a shard moved with $transfer, citus.enable_binary_protocol = $binary, keeps the values" "$SOURCE" "$(stored_on_shards vectors)"
    move_mode=$((move_mode + 1))
done
sql "$COORD" -c "DROP TABLE vectors_source, vectors, vectors_text, vectors_by_group, vectors_reference"

begin "the README's Citus examples, in a database of their own"
# Every ```sql citus block of README.md, in order; host names and the photo
# folder replaced by this cluster's.
readme_sql=$(awk '/^```sql citus$/ {inside = 1; print "\\echo -- README citus block " ++n; next} /^```$/ {inside = 0} inside' "$REPO_ROOT/README.md" |
    sed -e "s|'coordinator', 5432|'localhost', $COORD|; s|'worker-1', 5432|'localhost', $W1|; s|'worker-2', 5432|'localhost', $W2|; s|/path/to/photos|$PHOTOS|g")
blocks=$(grep -c '^\\echo -- README citus block' <<<"$readme_sql")
ok "README.md has Citus examples ($blocks blocks)" test "$blocks" -ge 4
for port in "$COORD" "$W1" "$W2"; do
    sql "$port" -c "CREATE DATABASE imgsim_readme"
    psql -X -q -h /tmp -p "$port" -U postgres -d imgsim_readme -c "CREATE EXTENSION citus"
done
ok "the README's Citus examples run on the cluster" \
    psql -X -v ON_ERROR_STOP=1 -h /tmp -p "$COORD" -U postgres -d imgsim_readme -f - <<<"$readme_sql"
finish_tap
