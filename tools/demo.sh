#!/usr/bin/env bash
# The main job, end to end: set-up (idempotent), a PostgreSQL 15 cluster of
# our own on port 55432, and a vector search in it.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

DEMO_PGDATA="${IMGSIM_DEMO_PGDATA:-/var/tmp/imgsim/demo-pgdata}"
DEMO_PORT="${IMGSIM_DEMO_PORT:-55432}"
DEMO_DB=imgsim_demo
PSQL=(psql -X -v ON_ERROR_STOP=1 -h /tmp -p "$DEMO_PORT" -U postgres)

begin "demo cluster on port $DEMO_PORT ($DEMO_PGDATA)"
cluster_start "$DEMO_PGDATA" "$DEMO_PORT"
"${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DEMO_DB'" | grep -q 1 \
    || "${PSQL[@]}" -d postgres -qc "CREATE DATABASE $DEMO_DB"

begin "demo: nearest vectors with <->"
"${PSQL[@]}" -d "$DEMO_DB" -f "$REPO_ROOT/tools/demo.sql"

CURRENT_STEP="done"
cat <<MSG

Done. Connect to the same database with:
    psql -h /tmp -p $DEMO_PORT -U postgres $DEMO_DB
Stop the cluster with:
    sudo -u postgres $PG_BIN/pg_ctl -D $DEMO_PGDATA stop
MSG
