"""Single-row INSERTs into an indexed table, for builds of the extension and
HNSW, on the tables of a `bench/run_hnsw_compare.sh` run (its cluster on
port 56510): rows/s, the backend's CPU per row (`/proc/PID/schedstat`) and
WAL bytes per row, medians over rounds.

Each round installs every build in turn (an atomic rename of the library; a
new connection loads it) and inserts the next `--rows` rows of `a_items`
into `a_ins` through one prepared statement, a transaction per 500 rows, as
`compare_hnsw.py --writes-only` does; HNSW inserts the same rows into
`h_ins` in every round too. `a_ins`/`h_ins` must exist (the `--writes-only`
run leaves them); the rows they get here are deleted at the end.

usage: python bench/insert_builds.py --builds before=/path/a.so,after=/path/b.so \
        [--rounds 3] [--rows 1000] [--checkpoint]
"""

import argparse
import statistics
import time

import psycopg

from cpu_per_query import backend_cpu_ns, install

BATCH = 500


def insert(dsn, table, rows, checkpoint):
    """(rows/s, CPU µs per row, WAL bytes per row) of inserting `rows`."""
    cast = "vector2048" if table == "a_ins" else "halfvec(2048)"
    lsn = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"
    with psycopg.connect(dsn) as conn:
        if checkpoint:
            conn.commit()
            conn.autocommit = True
            conn.execute("CHECKPOINT")
            conn.autocommit = False
        wal = conn.execute(lsn).fetchone()[0]
        conn.commit()
        cpu = backend_cpu_ns(conn)
        seconds = 0.0
        for start in range(0, len(rows), BATCH):
            t = time.perf_counter()
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} (id, emb) VALUES (%s, %s::{cast})",
                                rows[start:start + BATCH])
            conn.commit()
            seconds += time.perf_counter() - t
        cpu = backend_cpu_ns(conn) - cpu
        wal = conn.execute(lsn).fetchone()[0] - wal
        conn.commit()
    n = len(rows)
    return n / seconds, cpu / 1000 / n, float(wal) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", default="host=/tmp port=56510 user=postgres dbname=imgsim_hnsw")
    ap.add_argument("--builds", required=True, help="name=path.so,... (installed in turn)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1000, help="rows per build and round")
    ap.add_argument("--checkpoint", action="store_true",
                    help="a CHECKPOINT before each batch: every first touch of a page logs its image")
    args = ap.parse_args()
    builds = [b.split("=", 1) for b in args.builds.split(",")]
    methods = [name for name, _ in builds] + ["hnsw"]
    with psycopg.connect(args.dsn) as conn:
        base = max(conn.execute("SELECT coalesce(max(id), 0) FROM a_ins").fetchone()[0],
                   conn.execute("SELECT coalesce(max(id), 0) FROM h_ins").fetchone()[0])
        need = args.rounds * len(builds) * args.rows
        texts = [t for (t,) in conn.execute(
            "SELECT emb::text FROM a_items WHERE id > %s ORDER BY id LIMIT %s", (base, need))]
    if len(texts) < need:
        raise SystemExit(f"a_items has only {len(texts)} rows past id {base}; need {need}")
    results = {m: [] for m in methods}
    next_row = 0
    for r in range(args.rounds):
        for name, path in builds:
            install(path)
            rows = [(base + next_row + i + 1, texts[next_row + i]) for i in range(args.rows)]
            results[name].append(insert(args.dsn, "a_ins", rows, args.checkpoint))
            # HNSW gets the same rows as this build (its ids are its own).
            results["hnsw"].append(insert(args.dsn, "h_ins", rows, args.checkpoint))
            next_row += args.rows
            print(f"round {r + 1} {name}: " + "; ".join(
                f"{m} {x[0]:.0f} rows/s, {x[1]:.0f} µs CPU, {x[2] / 1024:.1f} KiB WAL a row"
                for m, x in ((name, results[name][-1]), ("hnsw", results["hnsw"][-1]))), flush=True)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM a_ins WHERE id > %s", (base,))
        conn.execute("DELETE FROM h_ins WHERE id > %s", (base,))
    hnsw_rate = statistics.median(x[0] for x in results["hnsw"])
    print(f"\nmedians over {args.rounds} rounds ({args.rows} rows each"
          f"{', a CHECKPOINT before each' if args.checkpoint else ''}):")
    print("| method | rows/s | CPU µs a row | WAL KiB a row | rows/s against HNSW |")
    print("|---|---:|---:|---:|---:|")
    for m in methods:
        rate, cpu, wal = (statistics.median(x[k] for x in results[m]) for k in range(3))
        print(f"| {m} | {rate:.0f} | {cpu:.0f} | {wal / 1024:.1f} | {rate / hnsw_rate:.1f}× |")


if __name__ == "__main__":
    main()
