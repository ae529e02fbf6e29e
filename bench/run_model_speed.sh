#!/usr/bin/env bash
# Embedding speed of several models, one thread, outside PostgreSQL: the imgsim pipeline
# (crates/embed/examples/bench_embed.rs, median of its 3 passes) and the Python reference
# (bench/embed_python.py, one pass), the models taking turns round after round so that the
# drift of a shared machine falls on all of them alike. Prints each round and the medians.
#
# usage: bench/run_model_speed.sh ROUNDS MANIFEST.json...   (data: ../shared/data scenes + objects)
#   IMGSIM_ORT_LIB: libonnxruntime.so for the Rust pipeline (default: the installed extension's)
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
ROUNDS=${1:?usage: run_model_speed.sh ROUNDS MANIFEST...}
shift
[ $# -ge 1 ] || { echo "usage: run_model_speed.sh ROUNDS MANIFEST..." >&2; exit 2; }
DATA="$REPO_ROOT/../shared/data"
ORT_LIB=${IMGSIM_ORT_LIB:-$("$PG_CONFIG" --pkglibdir)/imgsim/libonnxruntime.so}
PYTHON="$VENV/bin/python"
OUT=$(mktemp -d)
on_exit "rm -rf '$OUT'"

(cd "$REPO_ROOT" && cargo build --release -q -p imgsim-embed --example bench_embed)
BENCH_EMBED="$REPO_ROOT/target/release/examples/bench_embed"

for round in $(seq "$ROUNDS"); do
    for manifest in "$@"; do
        name=$(basename "$manifest" .json)
        "$BENCH_EMBED" "$manifest" "$ORT_LIB" "$DATA/scenes" "$DATA/objects" > "$OUT/rust"
        "$PYTHON" "$REPO_ROOT/bench/embed_python.py" --manifest "$manifest" --runs 1 \
            "$DATA/scenes" "$DATA/objects" > "$OUT/python"
        rust=$(awk '/images\/s/ {print $1; exit}' "$OUT/rust")
        rust_inf=$(awk '$1 == "inference" {print $2}' "$OUT/rust")
        py=$(awk '/^throughput/ {print $2}' "$OUT/python")
        py_inf=$(awk '$1 == "inference" {print $2}' "$OUT/python")
        echo "$round $name $rust $rust_inf $py $py_inf" | tee -a "$OUT/rounds"
    done
done

echo
echo "| model | imgsim pipeline, images/s | its inference, ms/image | Python reference, images/s | its inference, ms/image |"
echo "|---|---:|---:|---:|---:|"
for manifest in "$@"; do
    name=$(basename "$manifest" .json)
    awk -v n="$name" '$2 == n' "$OUT/rounds" | "$PYTHON" -c '
import statistics, sys
rows = [line.split() for line in sys.stdin]
cols = [statistics.median(float(r[i]) for r in rows) for i in (2, 3, 4, 5)]
print(f"| {rows[0][1]} | {cols[0]:.1f} | {cols[1]:.2f} | {cols[2]:.1f} | {cols[3]:.2f} |")'
done
echo "(median of $ROUNDS rounds, 1 thread; $(ls "$DATA"/scenes/* "$DATA"/objects/* | wc -l) images)"
