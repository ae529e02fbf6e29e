#!/usr/bin/env bash
# Runs every ```sql block of README.md, in order, in a fresh database, so the
# examples cannot rot. "/path/to/photos" becomes the test photo folder.
# usage: tests/readme_examples.sh PORT PHOTOS_DIR
set -euo pipefail
port=$1 photos=$2
readme="$(dirname "${BASH_SOURCE[0]}")/../README.md"
script=$(mktemp)
trap 'rm -f "$script"' EXIT
awk '/^```sql$/ {inside = 1; blocks++; print "\\echo -- README sql block " blocks; next}
     /^```$/ {inside = 0; next}
     inside {print}' "$readme" | sed "s|/path/to/photos|$photos|g" > "$script"
blocks=$(grep -c '^\\echo -- README sql block' "$script")
[ "$blocks" -ge 5 ] || { echo "found only $blocks sql blocks in README.md"; echo "0 passed, 1 failed"; exit 1; }
psql -X -q -h /tmp -p "$port" -U postgres -d postgres -c "DROP DATABASE IF EXISTS imgsim_readme" -c "CREATE DATABASE imgsim_readme"
if psql -X -v ON_ERROR_STOP=1 -h /tmp -p "$port" -U postgres -d imgsim_readme -f "$script"; then
    echo "$blocks passed, 0 failed"
else
    echo "README sql blocks: 0 passed, 1 failed"
    exit 1
fi
