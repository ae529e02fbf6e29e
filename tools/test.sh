#!/usr/bin/env bash
# Runs every test: set-up first (idempotent), then the Rust unit tests, the
# model conversion check and the SQL tests in a fresh PostgreSQL cluster.
# Prints "N passed, N failed" for the suites at the end; exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

TEST_PGDATA="${IMGSIM_TEST_PGDATA:-/var/tmp/imgsim/test-pgdata}"
TEST_PORT="${IMGSIM_TEST_PORT:-55433}"
passed=0; failed=0; failures=()
SUITE_LOGS=$(mktemp -d); on_exit 'rm -rf "$SUITE_LOGS"'
# Each suite's output goes to a file (shown when the suite ends; no pipe, so
# a process a suite leaves behind cannot hold the run up), and the summary
# ends with the tail of every failed suite: CI shows only a run's last lines.
run_suite() {
    local name=$1; shift
    begin "test: $name"
    local log; log="$SUITE_LOGS/$((passed + failed)).log"
    local rc=0
    "$@" > "$log" 2>&1 || rc=$?
    cat "$log"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failures+=("$name"$'\t'"$log")
    fi
}

rust_unit_tests() {
    # The Python reference pipeline's descriptors of the sample photos and of
    # the large progressive and baseline JPEGs (read at 1/8 and at full scale),
    # for embed's matches_python_reference. The tests also replay the fuzz
    # corpora (crates/vector-io/fuzz, crates/embed/fuzz).
    local reference="$STATE_DIR/reference/python_descriptors.npy"
    mkdir -p "$(dirname "$reference")"
    "$VENV/bin/python" "$REPO_ROOT/bench/embed_python.py" --manifest "$REPO_ROOT/models/efficientnet-lite0.json" \
        --runs 1 --dump "$reference" "$PHOTOS_DIR" "$DERIVED_DIR/derived_astronaut_large_progressive.jpg" \
        "$DERIVED_DIR/derived_astronaut_large_baseline.jpg" >/dev/null || return 1
    # IMGSIM_REQUIRE_TEST_DATA: a missing photo, model or reference fails the
    # tests instead of skipping them.
    (cd "$REPO_ROOT" && IMGSIM_TEST_PHOTOS="$PHOTOS_DIR" IMGSIM_ONNXRUNTIME="$ORT_LIB" IMGSIM_REQUIRE_TEST_DATA=1 \
        IMGSIM_REFERENCE_DUMP="$reference" cargo test --release --workspace --exclude imgsim)
}

model_conversion_test() {
    "$VENV/bin/python" "$REPO_ROOT/models/test_conversion.py" --manifest "$REPO_ROOT/models/efficientnet-lite0.json"
}

int8_model_test() {
    "$VENV/bin/python" "$REPO_ROOT/models/test_quantization.py" --manifest "$REPO_ROOT/models/efficientnet-lite0-int8.json" \
        --float-manifest "$REPO_ROOT/models/efficientnet-lite0.json"
}

descriptor_options_test() {
    "$VENV/bin/python" "$REPO_ROOT/bench/test_descriptor_options.py" --manifest "$REPO_ROOT/models/efficientnet-lite0.json"
}

sql_regression_tests() {
    local out; out=$(mktemp -d); chmod 777 "$out"
    local tests; tests=$(cd "$REPO_ROOT/tests/pg_regress/sql" && ls *.sql | sed 's/\.sql$//')
    # pg_regress runs as postgres, so it reads a copy of the tests it can reach.
    cp -r "$REPO_ROOT/tests/pg_regress/." "$out/"
    chmod -R a+rwX "$out"
    if (cd "$out" && as_postgres env IMGSIM_TEST_PHOTOS="$SERVER_PHOTOS" \
            "$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress" \
            --host=/tmp --port="$TEST_PORT" --user=postgres --dbname=imgsim_regress \
            --inputdir=. --outputdir=. $tests); then
        return 0
    fi
    cat "$out/regression.diffs" >&2
    return 1
}

begin "test photos where the server can read them"
# The server (user postgres) reads photos with pg_read_binary_file: give it
# a copy outside the checkout, whose parents it may not be able to enter.
SERVER_PHOTOS=/var/tmp/imgsim/test-photos
as_root rm -rf "$SERVER_PHOTOS"
as_root mkdir -p "$SERVER_PHOTOS"
as_root cp -r "$PHOTOS_DIR/." "$DERIVED_DIR/." "$SERVER_PHOTOS/"
# A manifest whose descriptor is not 2048-d, for the refusal test.
"$VENV/bin/python" - "$IMGSIM_SHARE" /tmp/imgsim_manifest_1280.json <<'PY'
import json, sys
share, out = sys.argv[1:]
manifest = json.load(open(f"{share}/efficientnet-lite0.json"))
manifest["model"] = f"{share}/{manifest['model']}"
manifest["descriptor"] = {"dims": 1280, "parts": [{"output": "head", "dims": 1280, "weight": 1.0}]}
json.dump(manifest, open(out, "w"))
PY
as_root mv /tmp/imgsim_manifest_1280.json "$SERVER_PHOTOS/derived_manifest_1280.json"
as_root chmod -R a+rX "$SERVER_PHOTOS"

begin "fresh test cluster on port $TEST_PORT"
cluster_stop "$TEST_PGDATA"
as_root rm -rf "$TEST_PGDATA"
cluster_start "$TEST_PGDATA" "$TEST_PORT"
psql -X -q -h /tmp -p "$TEST_PORT" -U postgres -d postgres -c "CREATE DATABASE imgsim_cli"
psql -X -q -h /tmp -p "$TEST_PORT" -U postgres -d imgsim_cli -c "CREATE EXTENSION imgsim"
on_exit 'cluster_stop "$TEST_PGDATA"'

house_rules() {
    (cd "$REPO_ROOT" && cargo fmt --all -- --check && cargo clippy --release --workspace --all-targets -- -D warnings)
}

run_suite "formatting (rustfmt) and lints (clippy -D warnings)" house_rules
run_suite "Rust unit tests (kernels, index core, embedding)" rust_unit_tests
run_suite "model conversion (classification of real photos)" model_conversion_test
run_suite "INT8 model (classification, closeness to the float model, reproducible)" int8_model_test
run_suite "descriptor options of the evaluation (pooling, regions, best match)" descriptor_options_test
run_suite "SQL regression tests (pg_regress)" sql_regression_tests
run_suite "README SQL examples" bash "$REPO_ROOT/tests/readme_examples.sh" "$TEST_PORT" "$SERVER_PHOTOS"
run_suite "command-line loader, search and HTML page" env IMGSIM_CLI="$IMGSIM_CLI" \
    IMGSIM_TEST_DSN="host=/tmp port=$TEST_PORT user=postgres dbname=imgsim_cli" \
    IMGSIM_TEST_PHOTOS="$SERVER_PHOTOS" IMGSIM_PYTHON="$VENV/bin/python" bash "$REPO_ROOT/tests/cli/test_cli.sh"
run_suite "imgsim serve in headless Chromium (upload, more like this, errors, concurrent searches)" env \
    IMGSIM_CLI="$IMGSIM_CLI" IMGSIM_TEST_DSN="host=/tmp port=$TEST_PORT user=postgres dbname=imgsim_cli" \
    IMGSIM_TEST_PHOTOS="$SERVER_PHOTOS" "$VENV/bin/python" "$REPO_ROOT/tests/web/test_web.py"
run_suite "crash recovery: kill -9 during inserts" bash "$REPO_ROOT/tests/tap/crash_recovery.sh"
run_suite "streaming replica answers like the primary" bash "$REPO_ROOT/tests/tap/replica.sh"
run_suite "concurrent inserts, deletes, queries, VACUUM and index checks" bash "$REPO_ROOT/tests/tap/concurrency.sh"
run_suite "an index created empty rebuilds once it has rows (recall, page reuse, locks, cancel)" bash "$REPO_ROOT/tests/tap/rebuild.sh"
run_suite "updates do not bloat: VACUUM compacts (size, recall, replica, locks, kill -9)" bash "$REPO_ROOT/tests/tap/compaction.sh"
run_suite "soak: 60 s of mixed pgbench work on 2 clients" bash "$REPO_ROOT/bench/run_soak.sh" 60 2
run_suite "Citus cluster: distributed table, annoy on every shard, moves, a worker down" env IMGSIM_CLI="$IMGSIM_CLI" \
    bash "$REPO_ROOT/tests/citus/cluster.sh" "$SERVER_PHOTOS"

CURRENT_STEP="summary"
echo
for f in "${failures[@]}"; do
    echo "FAILED suite: ${f%%$'\t'*} (its last 60 lines follow)"
    tail -n 60 "${f#*$'\t'}" | sed 's/^/    /'
done
for f in "${failures[@]}"; do echo "FAILED suite: ${f%%$'\t'*}"; done
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
