#!/usr/bin/env bash
# The main job, end to end: set-up (idempotent), a PostgreSQL 15 cluster of
# our own on port 55432, a few hundred packaged photos loaded and embedded by
# image_embedding inside the server, an annoy index, and reverse image
# searches with query photos that are not in the table (a re-encoded crop of
# a cat, a flower held out), printed and rendered as HTML pages of
# thumbnails; it ends with the `imgsim serve` command for the browser.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

DEMO_PGDATA="${IMGSIM_DEMO_PGDATA:-/var/tmp/imgsim/demo-pgdata}"
DEMO_PORT="${IMGSIM_DEMO_PORT:-55432}"
DEMO_DB=imgsim_demo
DSN="host=/tmp port=$DEMO_PORT user=postgres dbname=$DEMO_DB"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h /tmp -p "$DEMO_PORT" -U postgres)
RESULTS_HTML="$STATE_DIR/demo-results.html"
RESULTS_FLOWER_HTML="$STATE_DIR/demo-results-flower.html"
QUERY_CAT="$STATE_DIR/demo-query-cat.jpg"
QUERY_FLOWER="$STATE_DIR/demo-query-flower.jpg"

begin "demo cluster on port $DEMO_PORT ($DEMO_PGDATA)"
cluster_start "$DEMO_PGDATA" "$DEMO_PORT"
# The demo database is made afresh on every run, so it always has the
# extension as just built (its version number does not change between builds).
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DEMO_DB" -c "CREATE DATABASE $DEMO_DB"
"${PSQL[@]}" -d "$DEMO_DB" -c "CREATE EXTENSION imgsim"

begin "the demo collection: packaged photos (tuxpaint-stamps-default, mate-backgrounds) and the sample photos"
# Photographs only: Tux Paint's cartoon/ drawings and its symbols (flags, signs,
# coins) are left out. Links keep the packages' category folders in each path,
# so the results show what the neighbours are. The flower used as a query is
# kept out of the table.
DEMO_PHOTOS="$STATE_DIR/demo-photos"
TUXPAINT=/usr/share/tuxpaint/stamps
FLOWER=plants/flowers/red-gazania.png
rm -rf "$DEMO_PHOTOS"
mkdir -p "$DEMO_PHOTOS/tuxpaint" "$DEMO_PHOTOS/mate-nature" "$DEMO_PHOTOS/samples"
(cd "$TUXPAINT" && find . -name '*.png' ! -path '*/cartoon/*' ! -path './symbols/*' ! -path "./$FLOWER" -printf '%P\n') |
    while read -r stamp; do
        mkdir -p "$DEMO_PHOTOS/tuxpaint/$(dirname "$stamp")"
        ln -s "$TUXPAINT/$stamp" "$DEMO_PHOTOS/tuxpaint/$stamp"
    done
ln -s /usr/share/backgrounds/mate/nature/*.jpg "$DEMO_PHOTOS/mate-nature/"
ln -s "$PHOTOS_DIR"/*.png "$PHOTOS_DIR"/*.jpg "$DEMO_PHOTOS/samples/"
echo "ok: $(find "$DEMO_PHOTOS" -type l | wc -l) photos in $DEMO_PHOTOS"

begin "load them (embedded by image_embedding in the server, one connection per core)"
"$IMGSIM_CLI" load --db "$DSN" --table photos "$DEMO_PHOTOS"

begin "annoy index"
"${PSQL[@]}" -d "$DEMO_DB" -c "CREATE INDEX IF NOT EXISTS photos_emb_annoy ON photos USING annoy (emb)" \
    -c "ANALYZE photos"

begin "query photos that are not in the table"
# A phone-style copy of the cat photo (cropped, scaled, JPEG at quality 70), and
# a flower photo the table does not hold, flattened on grey as a JPEG.
"$VENV/bin/python" - "$PHOTOS_DIR/chelsea.png" "$TUXPAINT/$FLOWER" "$QUERY_CAT" "$QUERY_FLOWER" <<'PY'
import sys
from PIL import Image
cat, flower, cat_out, flower_out = sys.argv[1:]
image = Image.open(cat).convert("RGB")
w, h = image.size
image.crop((w // 10, h // 12, w - w // 8, h - h // 10)).resize((640, 480)).save(cat_out, quality=70)
stamp = Image.open(flower).convert("RGBA")
background = Image.new("RGBA", stamp.size, (128, 128, 128, 255))
Image.alpha_composite(background, stamp).convert("RGB").save(flower_out, quality=85)
PY
echo "ok: $QUERY_CAT, $QUERY_FLOWER"

begin "reverse image search: a cat (a re-encoded crop of samples/chelsea.png)"
"$IMGSIM_CLI" search --db "$DSN" --table photos --query "$QUERY_CAT" -k 8 --html "$RESULTS_HTML"

begin "reverse image search: a flower that is not in the table ($FLOWER)"
"$IMGSIM_CLI" search --db "$DSN" --table photos --query "$QUERY_FLOWER" -k 8 --html "$RESULTS_FLOWER_HTML"

CURRENT_STEP="done"
cat <<MSG

Results pages (query and matches as thumbnails):
    $RESULTS_HTML
    $RESULTS_FLOWER_HTML
Search by picture in the browser (upload, drop or paste a picture; click a match for more like it):
    $IMGSIM_CLI serve --db "$DSN" --table photos
    then open http://127.0.0.1:8080/
Connect to the same database with:
    psql -h /tmp -p $DEMO_PORT -U postgres $DEMO_DB
Load your own folder of images:
    $IMGSIM_CLI load --db "$DSN" --table photos /path/to/images
Stop the cluster with:
    sudo -u postgres $PG_BIN/pg_ctl -D $DEMO_PGDATA stop
MSG
