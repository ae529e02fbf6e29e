#!/usr/bin/env bash
# image_embedding throughput inside PostgreSQL at 1 and 2 backends, backend
# memory, and the Python reference pipeline (Pillow + onnxruntime, same model,
# same images) in the same run. Figures go to BENCHMARKS.md.
#
# usage: bench/run_embed_bench.sh [RUNS=3]   (data: ../shared/data scenes + objects)
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
RUNS=${1:-3}
DATA="$REPO_ROOT/../shared/data"
PGDATA_BENCH=/var/tmp/imgsim/bench-pgdata
PORT=55434
PSQL=(psql -X -qtA -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d imgsim_bench)
IMAGES=/var/tmp/imgsim/bench-images

begin "images the server can read"
as_root rm -rf "$IMAGES"; as_root mkdir -p "$IMAGES"
as_root cp "$DATA"/scenes/* "$DATA"/objects/* "$IMAGES/"
as_root chmod -R a+rX "$IMAGES"
count=$(ls "$IMAGES" | wc -l)
echo "$count images"

begin "bench cluster on port $PORT"
cluster_stop "$PGDATA_BENCH"   # restart so this run's settings apply
cluster_start "$PGDATA_BENCH" "$PORT" shared_buffers=1GB
psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS imgsim_bench" -c "CREATE DATABASE imgsim_bench"
"${PSQL[@]}" -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE images AS SELECT f AS name, pg_read_binary_file('$IMAGES/' || f) AS image FROM pg_ls_dir('$IMAGES') f"

# Seconds to embed every image in backends that each take every n-th image.
embed_seconds() {
    local backends=$1 start end
    start=$(date +%s.%N)
    for b in $(seq 0 $((backends - 1))); do
        "${PSQL[@]}" -c "SELECT count(image_embedding(image)) FROM (SELECT image, row_number() OVER (ORDER BY name) AS n FROM images) s WHERE n % $backends = $b" >/dev/null &
    done
    wait
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

begin "image_embedding in PostgreSQL (warm sessions), median of $RUNS"
embed_seconds 2 >/dev/null   # first use loads the model in each backend
for backends in 1 2; do
    secs=$(for _ in $(seq "$RUNS"); do embed_seconds "$backends"; done | median)
    printf 'postgres, %d backend(s): %.1f images/s (%.1f s for %d images)\n' "$backends" "$(echo "$count / $secs" | bc -l)" "$secs" "$count"
done

begin "memory of a backend after embedding (one session reads its own /proc status)"
"${PSQL[@]}" -c "SELECT count(image_embedding(image)) FROM (SELECT image FROM images ORDER BY name LIMIT 50) s" \
    -c "SELECT pg_read_file('/proc/' || pg_backend_pid() || '/status')" | grep -E "VmRSS|VmHWM"

begin "Python reference (Pillow + onnxruntime, 1 thread), same images"
"$VENV/bin/python" "$REPO_ROOT/bench/embed_python.py" --manifest "$REPO_ROOT/models/efficientnet-lite0.json" --threads 1 "$IMAGES"

begin "the same Rust pipeline outside Postgres, split by stage"
(cd "$REPO_ROOT" && cargo run --release -q -p imgsim-embed --example bench_embed -- \
    "$REPO_ROOT/models/efficientnet-lite0.json" "$("$PG_CONFIG" --pkglibdir)/imgsim/libonnxruntime.so" "$IMAGES")
CURRENT_STEP=done
