#!/usr/bin/env bash
# The main job, end to end: set-up (idempotent), a PostgreSQL 15 cluster of
# our own on port 55432, the bundled sample photos loaded and embedded by
# image_embedding inside the server, an annoy index, and a reverse image
# search with a query photo made on the fly (a crop, re-encoded), printed
# and rendered as an HTML page of thumbnails.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

DEMO_PGDATA="${IMGSIM_DEMO_PGDATA:-/var/tmp/imgsim/demo-pgdata}"
DEMO_PORT="${IMGSIM_DEMO_PORT:-55432}"
DEMO_DB=imgsim_demo
DSN="host=/tmp port=$DEMO_PORT user=postgres dbname=$DEMO_DB"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$DEMO_PORT" -U postgres)
RESULTS_HTML="$STATE_DIR/demo-results.html"
QUERY_PHOTO="$STATE_DIR/demo-query.jpg"

begin "demo cluster on port $DEMO_PORT ($DEMO_PGDATA)"
cluster_start "$DEMO_PGDATA" "$DEMO_PORT"
# The demo database is made afresh on every run, so it always has the
# extension as just built (its version number does not change between builds).
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DEMO_DB" -c "CREATE DATABASE $DEMO_DB"
"${PSQL[@]}" -d "$DEMO_DB" -c "CREATE EXTENSION imgsim"

begin "load the sample photos (embedded by image_embedding in the server)"
"$IMGSIM_CLI" load --db "$DSN" --table photos "$PHOTOS_DIR"

begin "annoy index"
"${PSQL[@]}" -d "$DEMO_DB" -c "CREATE INDEX IF NOT EXISTS photos_emb_annoy ON photos USING annoy (emb)" \
    -c "ANALYZE photos"

begin "a query photo that is not in the table: a crop of coffee.png, re-encoded as JPEG"
"$VENV/bin/python" - "$PHOTOS_DIR/coffee.png" "$QUERY_PHOTO" <<'PY'
import sys
from PIL import Image
image = Image.open(sys.argv[1]).convert("RGB")
w, h = image.size
image.crop((w // 8, h // 8, w - w // 6, h - h // 6)).save(sys.argv[2], quality=60)
PY
echo "ok: $QUERY_PHOTO"

begin "reverse image search: the 5 nearest photos"
"$IMGSIM_CLI" search --db "$DSN" --table photos --query "$QUERY_PHOTO" -k 5 --html "$RESULTS_HTML"

CURRENT_STEP="done"
cat <<MSG

Results page (query and matches as thumbnails): $RESULTS_HTML
Connect to the same database with:
    psql -h /tmp -p $DEMO_PORT -U postgres $DEMO_DB
e.g.  SELECT id, path FROM photos ORDER BY emb <-> (SELECT emb FROM photos WHERE path LIKE '%chelsea%') LIMIT 3;
Load your own folder of images:
    $IMGSIM_CLI load --db "$DSN" --table photos /path/to/images
Stop the cluster with:
    sudo -u postgres $PG_BIN/pg_ctl -D $DEMO_PGDATA stop
MSG
