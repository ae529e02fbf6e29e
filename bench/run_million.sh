#!/usr/bin/env bash
# annoy on 1 million rows of the hard structured set: build time, peak build
# memory, index size, recall@10 and q/s at the default maintenance_work_mem
# and at a generous one (bench/million.py). Needs ~20 GB of disk (the table
# is 8 GB: a 4 KB vector2048 row fills a heap page) and ~30 min on 2 cores.
#
# usage: bench/run_million.sh [million.py options...]
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
DATA=/var/tmp/imgsim/million-pgdata
PORT=56520

begin "bench cluster on port $PORT"
cluster_stop "$DATA"
as_root rm -rf "$DATA"
# The builds use the leader and one worker (2 cores). wal_level = minimal:
# the load and the builds write no WAL for the new relations, as a bulk load
# into a fresh table would be set up.
cluster_start "$DATA" "$PORT" shared_buffers=4GB max_wal_size=16GB checkpoint_timeout=1h \
    max_parallel_maintenance_workers=1 wal_level=minimal max_wal_senders=0
on_exit 'cluster_stop "$DATA"'
psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE imgsim_million"

begin "1M rows"
(cd "$REPO_ROOT/bench" && "$VENV/bin/python" million.py \
    --dsn "host=/tmp port=$PORT user=postgres dbname=imgsim_million" \
    --pgbench-conn="-h /tmp -p $PORT -U postgres imgsim_million" "$@")
CURRENT_STEP="done"
