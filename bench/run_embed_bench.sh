#!/usr/bin/env bash
# image_embedding throughput inside PostgreSQL at 1 and 2 backends, backend
# memory, and the Python reference pipeline (Pillow + onnxruntime, same model,
# same images) in the same run. Figures go to BENCHMARKS.md.
#
# usage: bench/run_embed_bench.sh [RUNS=3]   (data: ../shared/data scenes + objects)
#   IMGSIM_BENCH_PORT, IMGSIM_BENCH_PGDATA: the cluster to use (default 55434, /var/tmp/imgsim/bench-pgdata)
#   IMGSIM_BENCH_MANIFEST: the model both pipelines run (default: the installed bundled model)
#   IMGSIM_BENCH_COMPARE_MANIFEST: a second model timed in the same rounds, alternating with the
#     first (1 backend and Python), e.g. float against INT8; memory is then measured for both
#   IMGSIM_BENCH_NO_RUST=1: skip the last step (bench_embed outside PostgreSQL, which builds the
#     embed crate's example in this checkout's target directory)
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
RUNS=${1:-3}
DATA="$REPO_ROOT/../shared/data"
PGDATA_BENCH=${IMGSIM_BENCH_PGDATA:-/var/tmp/imgsim/bench-pgdata}
PORT=${IMGSIM_BENCH_PORT:-55434}
MANIFEST=${IMGSIM_BENCH_MANIFEST:-$("$PG_CONFIG" --sharedir)/imgsim/efficientnet-lite0.json}
PSQL=(psql -X -qtA -v ON_ERROR_STOP=1 -h /tmp -p "$PORT" -U postgres -d imgsim_bench)
IMAGES=$(dirname "$PGDATA_BENCH")/bench-images
MEMORY_BACKENDS=4

begin "images the server can read"
as_root rm -rf "$IMAGES"; as_root mkdir -p "$IMAGES"
as_root cp "$DATA"/scenes/* "$DATA"/objects/* "$IMAGES/"
as_root chmod -R a+rX "$IMAGES"
count=$(ls "$IMAGES" | wc -l)
echo "$count images"

begin "bench cluster on port $PORT"
cluster_stop "$PGDATA_BENCH"   # restart so this run's settings apply
cluster_start "$PGDATA_BENCH" "$PORT" shared_buffers=1GB "imgsim.model=$MANIFEST"
psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS imgsim_bench" -c "CREATE DATABASE imgsim_bench"
"${PSQL[@]}" -c "CREATE EXTENSION imgsim" \
    -c "CREATE TABLE images AS SELECT f AS name, pg_read_binary_file('$IMAGES/' || f) AS image FROM pg_ls_dir('$IMAGES') f"

# Seconds to embed every image in backends that each take every n-th image.
# Each session first embeds one image, which loads the model (as Python's
# timing also starts after its model is loaded); the clock runs from the
# first session's start to the last one's end, read in the server.
embed_seconds() {
    local backends=$1 out; out=$(mktemp)
    for b in $(seq 0 $((backends - 1))); do
        "${PSQL[@]}" -c "SELECT count(image_embedding(image)) FROM images WHERE name = (SELECT min(name) FROM images)" \
            -c "SELECT 'start', extract(epoch FROM clock_timestamp())" \
            -c "SELECT count(image_embedding(image)) FROM (SELECT image, row_number() OVER (ORDER BY name) AS n FROM images) s WHERE n % $backends = $b" \
            -c "SELECT 'end', extract(epoch FROM clock_timestamp())" >>"$out" &
    done
    wait
    awk -F'|' '$1 == "start" && (s == "" || $2 < s) {s = $2} $1 == "end" && $2 > e {e = $2} END {print e - s}' "$out"
    rm -f "$out"
}
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

python_images_per_s() {  # [MANIFEST]
    "$VENV/bin/python" "$REPO_ROOT/bench/embed_python.py" --manifest "${1:-$MANIFEST}" \
        --threads 1 --runs 1 "$IMAGES" | awk '/^throughput:/ {print $2}'
}

# The machine's speed drifts by 10-15 % over minutes, so the two pipelines
# take turns: each round times PostgreSQL (1 and 2 backends) and then Python.
begin "image_embedding in PostgreSQL (warm sessions) and the Python reference, $RUNS alternating rounds"
rounds=()
for round in $(seq "$RUNS"); do
    one=$(echo "$count / $(embed_seconds 1)" | bc -l)
    two=$(echo "$count / $(embed_seconds 2)" | bc -l)
    python=$(python_images_per_s)
    ratio=$(echo "$one / $python" | bc -l)
    printf 'round %d: postgres 1 backend %.1f, 2 backends %.1f, python %.1f images/s; 1 backend / python %.2f\n' \
        "$round" "$one" "$two" "$python" "$ratio"
    if [ -n "${IMGSIM_BENCH_COMPARE_MANIFEST:-}" ]; then
        cmp_one=$(echo "$count / $(PGOPTIONS="-c imgsim.model=$IMGSIM_BENCH_COMPARE_MANIFEST" embed_seconds 1)" | bc -l)
        cmp_python=$(python_images_per_s "$IMGSIM_BENCH_COMPARE_MANIFEST")
        printf 'round %d: %s: postgres 1 backend %.1f, python %.1f images/s\n' \
            "$round" "$(basename "$IMGSIM_BENCH_COMPARE_MANIFEST")" "$cmp_one" "$cmp_python"
        rounds+=("$one $two $python $ratio $cmp_one $cmp_python")
    else
        rounds+=("$one $two $python $ratio")
    fi
done
for column in 1 2 3 4; do
    printf '%s\n' "${rounds[@]}" | awk -v c=$column '{print $c}' | median
done | paste -sd' ' | awk '{printf "median: postgres 1 backend %.1f, 2 backends %.1f, python %.1f images/s; 1 backend / python %.2f\n", $1, $2, $3, $4}'
if [ -n "${IMGSIM_BENCH_COMPARE_MANIFEST:-}" ]; then
    for column in 5 6; do
        printf '%s\n' "${rounds[@]}" | awk -v c=$column '{print $c}' | median
    done | paste -sd' ' | awk -v m="$(basename "$IMGSIM_BENCH_COMPARE_MANIFEST")" '{printf "median: %s: postgres 1 backend %.1f, python %.1f images/s\n", m, $1, $2}'
fi

begin "memory per backend: $MEMORY_BACKENDS backends embed at once, then each reads its own /proc smaps_rollup"
# Private = Private_Clean + Private_Dirty: what each further backend adds. Pss
# shares the pages mapped by several processes among them. A backend that never
# embedded is measured first for comparison.
rollup_kb() { awk '/^(Rss|Pss|Private_Clean|Private_Dirty):/ {v[$1] = $2} END {printf "rss %d kB, pss %d kB, private %d kB\n", v["Rss:"], v["Pss:"], v["Private_Clean:"] + v["Private_Dirty:"]}'; }
"${PSQL[@]}" -c "SELECT pg_read_file('/proc/' || pg_backend_pid() || '/smaps_rollup')" | rollup_kb | sed 's/^/no embedding: /'
memory_of_backends() {
    local out; out=$(mktemp)
    for b in $(seq "$MEMORY_BACKENDS"); do
        "${PSQL[@]}" -c "SELECT count(image_embedding(image)) FROM (SELECT image FROM images ORDER BY name LIMIT 50) s" \
            -c "SELECT pg_sleep(3)" -c "SELECT pg_read_file('/proc/' || pg_backend_pid() || '/smaps_rollup')" | rollup_kb >"$out.$b" &
    done
    wait
    for b in $(seq "$MEMORY_BACKENDS"); do sed "s/^/backend $b: /" "$out.$b"; rm -f "$out.$b"; done
    rm -f "$out"
}
echo "$(basename "$MANIFEST"):"; memory_of_backends
if [ -n "${IMGSIM_BENCH_COMPARE_MANIFEST:-}" ]; then
    echo "$(basename "$IMGSIM_BENCH_COMPARE_MANIFEST"):"
    PGOPTIONS="-c imgsim.model=$IMGSIM_BENCH_COMPARE_MANIFEST" memory_of_backends
fi

begin "Python reference (Pillow + onnxruntime, 1 thread), same images, split by stage"
"$VENV/bin/python" "$REPO_ROOT/bench/embed_python.py" --manifest "$MANIFEST" --threads 1 "$IMAGES"

if [ -z "${IMGSIM_BENCH_NO_RUST:-}" ]; then
    begin "the same Rust pipeline outside Postgres, split by stage"
    (cd "$REPO_ROOT" && cargo run --release -q -p imgsim-embed --example bench_embed -- \
        "$MANIFEST" "$("$PG_CONFIG" --pkglibdir)/imgsim/libonnxruntime.so" "$IMAGES")
fi
cluster_stop "$PGDATA_BENCH"
CURRENT_STEP=done
