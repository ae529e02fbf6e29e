#!/usr/bin/env bash
# Runs every test: set-up first (idempotent), then the Rust unit tests, the
# model conversion check and the SQL tests in a fresh PostgreSQL cluster.
# Prints "N passed, N failed" for the suites at the end; exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

TEST_PGDATA="${IMGSIM_TEST_PGDATA:-/var/tmp/imgsim/test-pgdata}"
TEST_PORT="${IMGSIM_TEST_PORT:-55433}"
passed=0; failed=0; failures=()
run_suite() {
    local name=$1; shift
    begin "test: $name"
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}

rust_unit_tests() {
    (cd "$REPO_ROOT" && IMGSIM_TEST_PHOTOS="$PHOTOS_DIR" IMGSIM_ONNXRUNTIME="$ORT_LIB" \
        cargo test --release --workspace --exclude imgsim)
}

model_conversion_test() {
    "$VENV/bin/python" "$REPO_ROOT/models/test_conversion.py" --manifest "$REPO_ROOT/models/efficientnet-lite0.json"
}

sql_regression_tests() {
    local out; out=$(mktemp -d); chmod 777 "$out"
    local tests; tests=$(cd "$REPO_ROOT/tests/pg_regress/sql" && ls *.sql | sed 's/\.sql$//')
    # pg_regress runs as postgres, so it reads a copy of the tests it can reach.
    cp -r "$REPO_ROOT/tests/pg_regress/." "$out/"
    chmod -R a+rwX "$out"
    if (cd "$out" && as_postgres "$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress" \
            --host=/tmp --port="$TEST_PORT" --user=postgres --dbname=imgsim_regress \
            --inputdir=. --outputdir=. $tests); then
        return 0
    fi
    cat "$out/regression.diffs" >&2
    return 1
}

begin "fresh test cluster on port $TEST_PORT"
cluster_stop "$TEST_PGDATA"
as_root rm -rf "$TEST_PGDATA"
cluster_start "$TEST_PGDATA" "$TEST_PORT"
on_exit 'cluster_stop "$TEST_PGDATA"'

run_suite "Rust unit tests (kernels, index core, embedding)" rust_unit_tests
run_suite "model conversion (classification of real photos)" model_conversion_test
run_suite "SQL regression tests (pg_regress)" sql_regression_tests

CURRENT_STEP="summary"
echo
for f in "${failures[@]}"; do echo "FAILED suite: $f"; done
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
