#!/usr/bin/env bash
# End-to-end test of the `imgsim` command-line client against a live database.
#
# Environment:
#   IMGSIM_CLI          path to the built `imgsim` binary
#   IMGSIM_TEST_DSN     connection string to a database with `CREATE EXTENSION imgsim` done
#   IMGSIM_TEST_PHOTOS  directory of real photos (chelsea.png, coffee.png, ...; derived_* ignored)
#   IMGSIM_PYTHON       python with Pillow, used only if derived_chelsea_q40.jpg is absent
#
# Needs psql and headless Chromium (installed with apt-get when missing and root).
# Last line: "N passed, N failed"; exit status non-zero on any failure.
set -u -o pipefail

: "${IMGSIM_CLI:?set IMGSIM_CLI to the imgsim binary}"
: "${IMGSIM_TEST_DSN:?set IMGSIM_TEST_DSN to a database with the imgsim extension}"
: "${IMGSIM_TEST_PHOTOS:?set IMGSIM_TEST_PHOTOS to a directory of photos}"
PYTHON="${IMGSIM_PYTHON:-python3}"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
# check NAME COMMAND...: passes when COMMAND succeeds.
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }
# check_eq NAME EXPECTED ACTUAL
check_eq() {
    if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}
sql() { psql "$IMGSIM_TEST_DSN" -X -A -t -q -v ON_ERROR_STOP=1 -c "$1"; }

work=$(mktemp -d)
prefix="cli_test_$$"
table_small="${prefix}_small"
table_resume="${prefix}_resume"
table_jobs="${prefix}_jobs"
cleanup() {
    sql "DROP TABLE IF EXISTS $table_small, $table_resume, $table_jobs" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

# The original photos only: derived_* are near-duplicates (queries) or bad files.
mapfile -t photos < <(find "$IMGSIM_TEST_PHOTOS" -maxdepth 1 -type f \
    \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' \) \
    ! -name 'derived_*' | sort)
if [[ ! -f "$IMGSIM_TEST_PHOTOS/chelsea.png" || ${#photos[@]} -lt 10 ]]; then
    echo "need chelsea.png and at least 10 photos in $IMGSIM_TEST_PHOTOS"
    echo "0 passed, 1 failed"
    exit 1
fi

# --- load: 10 photos (2 in a subdirectory), a corrupt .jpg, a non-image file ---
small="$work/small"
mkdir -p "$small/sub"
cp "$IMGSIM_TEST_PHOTOS/chelsea.png" "$small/"
n=1
for photo in "${photos[@]}"; do
    ((n >= 10)) && break
    [[ "$(basename "$photo")" == chelsea.png ]] && continue
    if ((n <= 2)); then cp "$photo" "$small/sub/"; else cp "$photo" "$small/"; fi
    n=$((n + 1))
done
echo "this is not an image" >"$small/broken.JPG"
echo "not an image either, and not named like one" >"$small/notes.txt"

"$IMGSIM_CLI" load --db "$IMGSIM_TEST_DSN" --table "$table_small" --jobs 1 "$small" >"$work/load1.out" 2>"$work/load1.err"
status=$?
check "load announces its files and connections" \
    grep -qx "11 image files found, 0 already loaded, 11 to load over 1 connection" "$work/load1.err"
check_eq "load exits 0 despite a bad file" 0 "$status"
check "load prints progress lines" \
    grep -Eq '^loaded [0-9]+/11 \([0-9]+\.[0-9]%\), [0-9]+\.[0-9] images/s, ETA [0-9hms]+$' "$work/load1.err"
check "load ends progress at 11/11" grep -q '^loaded 11/11 (100.0%)' "$work/load1.err"
check "load names the bad file with its SQLSTATE" \
    grep -Eq "^failed: $small/broken\.JPG: .+ \(SQLSTATE [0-9A-Z]{5}\)$" "$work/load1.err"
check_eq "load reports exactly one failure" 1 "$(grep -c '^failed:' "$work/load1.err")"
check_eq "load summary" "done: 10 loaded, 0 already loaded, 1 failed" "$(tail -n 1 "$work/load1.err")"
check_eq "table holds the good files" 10 "$(sql "SELECT count(*) FROM $table_small")"
check_eq "subdirectory walked" 2 "$(sql "SELECT count(*) FROM $table_small WHERE path LIKE '$small/sub/%'")"

# --- the same load again: nothing new, the bad file is retried and refused again ---
"$IMGSIM_CLI" load --db "$IMGSIM_TEST_DSN" --table "$table_small" "$small" 2>"$work/load2.err" >/dev/null
check_eq "re-run exits 0" 0 "$?"
check_eq "re-run summary" "done: 0 loaded, 10 already loaded, 1 failed" "$(tail -n 1 "$work/load2.err")"
check_eq "re-run adds no rows" 10 "$(sql "SELECT count(*) FROM $table_small")"

# --- the same files over 2 connections: the same rows and vectors ---
"$IMGSIM_CLI" load --db "$IMGSIM_TEST_DSN" --table "$table_jobs" --jobs 2 "$small" 2>"$work/jobs.err" >/dev/null
check_eq "load --jobs 2 exits 0" 0 "$?"
check "load --jobs 2 uses 2 connections" grep -q "to load over 2 connections$" "$work/jobs.err"
check_eq "load --jobs 2 summary" "done: 10 loaded, 0 already loaded, 1 failed" "$(tail -n 1 "$work/jobs.err")"
check_eq "load --jobs 2 names the bad file once" 1 "$(grep -c "^failed: $small/broken\.JPG: .* (SQLSTATE " "$work/jobs.err")"
check_eq "load --jobs 2 stores the same paths and vectors as one job" 10 \
    "$(sql "SELECT count(*) FROM $table_small a JOIN $table_jobs b USING (path) WHERE a.emb = b.emb AND a.image = b.image")"

# --- resume after Ctrl-C: 6 copies of every photo, interrupted once rows are committed ---
big="$work/big"
for copy in a b c d e f; do
    mkdir -p "$big/$copy"
    cp "${photos[@]}" "$big/$copy/"
done
big_total=$((6 * ${#photos[@]}))
# The default job count (the server's CPUs, 2 here) loads over several connections.
# Job control on: a background job of a non-interactive shell would ignore SIGINT.
set -m
"$IMGSIM_CLI" load --db "$IMGSIM_TEST_DSN" --table "$table_resume" "$big" >/dev/null 2>"$work/resume1.err" &
loader=$!
set +m
rows=0
for _ in $(seq 1 300); do
    rows=$(sql "SELECT count(*) FROM $table_resume" 2>/dev/null || echo 0)
    ((rows > 0)) && break
    sleep 0.1
done
kill -INT "$loader" 2>/dev/null
wait "$loader"
status=$?
rows_after_interrupt=$(sql "SELECT count(*) FROM $table_resume")
check "interrupted load exits non-zero (status $status)" test "$status" -ne 0
check "interrupted load committed some rows but not all ($rows_after_interrupt/$big_total)" \
    test "$rows_after_interrupt" -gt 0 -a "$rows_after_interrupt" -lt "$big_total"

"$IMGSIM_CLI" load --db "$IMGSIM_TEST_DSN" --table "$table_resume" "$big" >/dev/null 2>"$work/resume2.err"
check_eq "resumed load exits 0" 0 "$?"
check_eq "resumed load skips what was committed" \
    "done: $((big_total - rows_after_interrupt)) loaded, $rows_after_interrupt already loaded, 0 failed" \
    "$(tail -n 1 "$work/resume2.err")"
check "resumed load announces the already loaded files" \
    grep -q "^$big_total image files found, $rows_after_interrupt already loaded" "$work/resume2.err"
check_eq "every file present after resume" "$big_total" "$(sql "SELECT count(*) FROM $table_resume")"
check_eq "no duplicate paths" "$big_total" "$(sql "SELECT count(DISTINCT path) FROM $table_resume")"

# --- search with a re-encoded copy of chelsea.png (not byte-identical to anything stored) ---
query="$IMGSIM_TEST_PHOTOS/derived_chelsea_q40.jpg"
if [[ ! -f "$query" ]]; then
    query="$work/chelsea_query.jpg"
    "$PYTHON" -c '
import sys
from PIL import Image
image = Image.open(sys.argv[1]).convert("RGB")
w, h = image.size
image.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(sys.argv[2], quality=40)
' "$IMGSIM_TEST_PHOTOS/chelsea.png" "$query" || echo "cannot make a query image with $PYTHON (Pillow)"
fi

search() { "$IMGSIM_CLI" search --db "$IMGSIM_TEST_DSN" --table "$table_small" --query "$query" "$@"; }
# Prints "rank id distance path" rows without the header.
result_rows() { tail -n +2 "$1"; }

search -k 5 --html "$work/results.html" >"$work/search.out" 2>"$work/search.err"
check_eq "search exits 0" 0 "$?"
check_eq "search prints k rows" 5 "$(result_rows "$work/search.out" | wc -l)"
check_eq "original photo is rank 1" "1 $small/chelsea.png" "$(result_rows "$work/search.out" | awk 'NR == 1 {print $1, $4}')"
check "distances have 4 decimals and ascend" awk '
    NR > 1 { if ($3 !~ /^[0-9]+\.[0-9][0-9][0-9][0-9]$/ || $3 + 0 < last) bad = 1; last = $3 + 0 }
    END { exit bad }' "$work/search.out"

sql "CREATE INDEX ON $table_small USING annoy (emb)" >/dev/null
search -k 3 >"$work/search_indexed.out" 2>&1
check_eq "with an annoy index the original is still rank 1" \
    "1 $small/chelsea.png" "$(result_rows "$work/search_indexed.out" | awk 'NR == 1 {print $1, $4}')"

cp "$small/broken.JPG" "$work/broken_query.jpg"
"$IMGSIM_CLI" search --db "$IMGSIM_TEST_DSN" --table "$table_small" --query "$work/broken_query.jpg" \
    >/dev/null 2>"$work/bad_query.err"
status=$?
check "a corrupt query image fails (status $status)" test "$status" -ne 0
check "a corrupt query image is explained with SQLSTATE" grep -Eq 'SQLSTATE [0-9A-Z]{5}' "$work/bad_query.err"

"$IMGSIM_CLI" search --db "$IMGSIM_TEST_DSN" --table "$table_small" >/dev/null 2>"$work/usage.err"
check_eq "usage error exits 2" 2 "$?"
check "usage error names the missing option" grep -q -- "--query <FILE>" "$work/usage.err"
"$IMGSIM_CLI" load --db "$IMGSIM_TEST_DSN" --table "$table_small" --jobs 0 "$small" >/dev/null 2>&1
check_eq "load --jobs 0 is a usage error" 2 "$?"
"$IMGSIM_CLI" search --db "$IMGSIM_TEST_DSN" --table "a.b.c" --query "$query" >/dev/null 2>"$work/table.err"
check_eq "a malformed table name is a usage error" 2 "$?"
check "help lists the subcommands" bash -c '"$1" --help | grep -q "^  serve "' _ "$IMGSIM_CLI"
check "bash completions complete the subcommands" \
    bash -c 'source <("$1" completions bash) && COMP_WORDS=(imgsim se) COMP_CWORD=1 && _imgsim imgsim se imgsim && [[ " ${COMPREPLY[*]} " == *" search "* && " ${COMPREPLY[*]} " == *" serve "* ]]' _ "$IMGSIM_CLI"

# --- the HTML page renders every thumbnail in a real browser ---
chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$chromium" && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "installing chromium"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >"$work/apt.log" 2>&1
    chromium=$(command -v chromium || true)
fi
if [[ -n "$chromium" ]]; then
    profile=$(mktemp -d -p "$work")
    timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
        --virtual-time-budget=5000 --dump-dom "file://$work/results.html" >"$work/dom.html" 2>/dev/null
    body=$(grep -o '<body[^>]*>' "$work/dom.html")
    check "page has query + 5 thumbnails" grep -q 'data-images-total="6"' <<<"$body"
    check "browser decoded every thumbnail ($body)" grep -q 'data-images-loaded="6"' <<<"$body"
else
    fail "chromium not found (apt-get install chromium)"
fi

echo "$passed passed, $failed failed"
((failed == 0))
