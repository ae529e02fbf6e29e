#!/usr/bin/env bash
# annoy against pgvector 0.8.6's HNSW in one PostgreSQL 15 server on the same
# rows: pgvector is built from ../shared/pgvector (not packaged for Debian 12's
# PostgreSQL 15) into the same server. See bench/compare_hnsw.py for what is
# measured; figures in BENCHMARKS.md.
#
# usage: bench/run_hnsw_compare.sh [compare_hnsw.py options...]
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
PGVECTOR_TARBALL="$REPO_ROOT/../shared/pgvector/pgvector-0.8.6.tar.gz"
BUILD_DIR=/var/tmp/imgsim/pgvector-build
DATA=/var/tmp/imgsim/hnsw-compare-pgdata
PORT=56510

begin "pgvector 0.8.6 from $PGVECTOR_TARBALL into PostgreSQL $PG_MAJOR"
[ -f "$PGVECTOR_TARBALL" ] || die "no pgvector source at $PGVECTOR_TARBALL"
if [ ! -f "$("$PG_CONFIG" --pkglibdir)/vector.so" ] || ! cmp -s "$PGVECTOR_TARBALL" "$BUILD_DIR/source.tar.gz"; then
    rm -rf "$BUILD_DIR" && mkdir -p "$BUILD_DIR"
    tar xzf "$PGVECTOR_TARBALL" -C "$BUILD_DIR"
    # OPTFLAGS="": no -march=native, as distribution packages build it; its
    # half-precision distances still pick F16C/FMA at run time.
    make -s -C "$BUILD_DIR"/pgvector-0.8.6 PG_CONFIG="$PG_CONFIG" OPTFLAGS="" >/dev/null
    as_root make -s -C "$BUILD_DIR"/pgvector-0.8.6 PG_CONFIG="$PG_CONFIG" install >/dev/null
    cp "$PGVECTOR_TARBALL" "$BUILD_DIR/source.tar.gz"
fi
echo "ok: $("$PG_CONFIG" --pkglibdir)/vector.so"

# --writes-only and --filtered-only measure on the tables of an earlier run,
# so they keep its cluster; every other run starts from an empty one.
reuse=false
for arg in "$@"; do
    case "$arg" in --writes-only | --filtered-only) reuse=true ;; esac
done
begin "bench cluster on port $PORT"
cluster_stop "$DATA"
if $reuse; then
    [ -f "$DATA/PG_VERSION" ] || die "no cluster of an earlier run at $DATA (run without $*)"
else
    as_root rm -rf "$DATA"
fi
# Both builds use the leader and one worker (2 cores).
cluster_start "$DATA" "$PORT" shared_buffers=4GB maintenance_work_mem=2GB max_wal_size=8GB \
    max_parallel_maintenance_workers=1 checkpoint_timeout=1h
on_exit 'cluster_stop "$DATA"'
$reuse || psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE imgsim_hnsw"

begin "compare"
"$VENV/bin/python" "$REPO_ROOT/bench/compare_hnsw.py" --dsn "host=/tmp port=$PORT user=postgres dbname=imgsim_hnsw" \
    --pgbench-conn="-h /tmp -p $PORT -U postgres imgsim_hnsw" "$@"
CURRENT_STEP="done"
