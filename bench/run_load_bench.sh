#!/usr/bin/env bash
# `imgsim load` throughput at 1 and 2 connections (--jobs), on the real photos of
# ../shared/data (scenes + objects). Each load starts from an empty table, so it
# includes connecting, each backend's model start-up and the commits: what a
# user waits for. Rounds alternate which job count goes first. Figures go to
# BENCHMARKS.md.
#
# usage: bench/run_load_bench.sh [ROUNDS=5]
# Environment: IMGSIM_BENCH_PORT (55435), IMGSIM_BENCH_PGDATA (/var/tmp/imgsim/load-bench-pgdata)
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib.sh"
ROUNDS=${1:-5}
DATA="$REPO_ROOT/../shared/data"
PORT=${IMGSIM_BENCH_PORT:-55435}
PGDATA_BENCH=${IMGSIM_BENCH_PGDATA:-/var/tmp/imgsim/load-bench-pgdata}
DSN="host=/tmp port=$PORT user=postgres dbname=imgsim_load_bench"
PSQL=(psql -X -qtA -v ON_ERROR_STOP=1 "$DSN")
CLI="$REPO_ROOT/target/release/imgsim"
[ -x "$CLI" ] || die "build the client first: cargo build --release -p imgsim-cli"

count=$(ls "$DATA/scenes" "$DATA/objects" | grep -Eci '\.(png|jpe?g)$')
echo "$count images in $DATA/scenes and $DATA/objects"

begin "bench cluster on port $PORT"
cluster_start "$PGDATA_BENCH" "$PORT"
on_exit 'cluster_stop "$PGDATA_BENCH"'
psql -X -q -h /tmp -p "$PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS imgsim_load_bench" \
    -c "CREATE DATABASE imgsim_load_bench"
"${PSQL[@]}" -c "CREATE EXTENSION imgsim"

# Images per second of one load into an empty table over $1 connections.
load_rate() {
    local jobs=$1 start end loaded
    "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_load"
    start=$(date +%s.%N)
    "$CLI" load --db "$DSN" --table bench_load --jobs "$jobs" "$DATA/scenes" "$DATA/objects" 2>"$STATE_DIR/load-bench.err" \
        || { cat "$STATE_DIR/load-bench.err" >&2; die "load --jobs $jobs failed"; }
    end=$(date +%s.%N)
    loaded=$("${PSQL[@]}" -c "SELECT count(*) FROM bench_load")
    [ "$loaded" -eq "$count" ] || die "load --jobs $jobs stored $loaded of $count images"
    echo "$count / ($end - $start)" | bc -l
}
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

begin "warm-up load (file cache, first backends)"
load_rate 2 >/dev/null

begin "$ROUNDS alternating rounds of load --jobs 1 and --jobs 2"
rounds=()
for round in $(seq "$ROUNDS"); do
    if ((round % 2)); then one=$(load_rate 1); two=$(load_rate 2); else two=$(load_rate 2); one=$(load_rate 1); fi
    ratio=$(echo "$two / $one" | bc -l)
    printf 'round %d: --jobs 1 %.1f images/s, --jobs 2 %.1f images/s, ratio %.2f\n' "$round" "$one" "$two" "$ratio"
    rounds+=("$one $two $ratio")
done
for column in 1 2 3; do
    printf '%s\n' "${rounds[@]}" | awk -v c=$column '{print $c}' | median
done | paste -sd' ' | awk '{printf "median: --jobs 1 %.1f images/s, --jobs 2 %.1f images/s, ratio %.2f\n", $1, $2, $3}'
CURRENT_STEP=done
