"""Backend CPU time per query, for builds of the extension and HNSW, on the
tables of a `bench/run_hnsw_compare.sh` run (its cluster on port 56510).

q/s on a shared 2-core machine moves with whatever else runs; the CPU time
the backend itself spends on a query (`/proc/PID/schedstat`, in ns) moves
much less, and with 2 clients on 2 cores it is what bounds q/s. Each round
installs every build in turn (an atomic rename of the library; a new
connection loads it), runs the same queries through one prepared statement,
and reads the backend's CPU time before and after; HNSW runs in every round
too. Prints the median over rounds of CPU µs per query, and recall@10 against
the exact top 10 (computed once with the index disabled, in its own statement).

usage: python bench/cpu_per_query.py --builds main=/path/a.so,new=/path/b.so \
        [--search-k 3000] [--ef-search 40] [--rounds 5] [--queries 1000]
"""

import argparse
import os
import shutil
import statistics

import psycopg

LIB = "/usr/lib/postgresql/15/lib/imgsim.so"


def backend_cpu_ns(conn):
    pid = conn.info.backend_pid
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def run(dsn, sql, gucs, queries):
    """CPU ns of the backend over the queries (after a first pass), and the
    rows each returned."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as conn:
        conn.execute("SET jit = off")
        for name, value in gucs.items():
            conn.execute(f"SET {name} = {value}")
        # A first pass warms the plan and the backend's own caches (a pooled
        # connection's state: the index's recent buffers, the relcache).
        for q in queries:
            conn.execute(sql, (q,), prepare=True).fetchall()
        before = backend_cpu_ns(conn)
        rows = [[r[0] for r in conn.execute(sql, (q,), prepare=True)] for q in queries]
        return backend_cpu_ns(conn) - before, rows


def install(path):
    tmp = LIB + ".tmp"
    shutil.copyfile(path, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, LIB)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", default="host=/tmp port=56510 user=postgres dbname=imgsim_hnsw")
    ap.add_argument("--builds", required=True, help="name=path.so,... (installed in turn)")
    ap.add_argument("--search-k", default="3000", help="annoy.search_k values, comma-separated")
    ap.add_argument("--ef-search", default="40", help="hnsw.ef_search values, comma-separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    builds = [b.split("=", 1) for b in args.builds.split(",")]
    queries = list(range(1, args.queries + 1))
    annoy_sql = "SELECT id FROM a_items ORDER BY emb <-> (SELECT emb FROM a_queries WHERE id = %s) LIMIT 10"
    hnsw_sql = "SELECT id FROM h_items ORDER BY emb <-> (SELECT emb FROM h_queries WHERE id = %s) LIMIT 10"

    install(builds[0][1])
    _, truth = run(args.dsn, annoy_sql, {"enable_indexscan": "off"}, queries)
    truth = [set(t) for t in truth]

    def recall(rows):
        return sum(len(set(r) & t) for r, t in zip(rows, truth)) / (10 * len(truth))

    points = [(f"{name} search_k {k}", path, {"annoy.search_k": k}, annoy_sql)
              for k in args.search_k.split(",") for name, path in builds]
    points += [(f"hnsw ef_search {ef}", None, {"hnsw.ef_search": ef}, hnsw_sql)
               for ef in args.ef_search.split(",")]
    cpu = {p[0]: [] for p in points}
    recalls = {}
    for r in range(args.rounds):
        for label, path, gucs, sql in points:
            if path:
                install(path)
            ns, rows = run(args.dsn, sql, gucs, queries)
            cpu[label].append(ns / len(queries) / 1e3)
            recalls[label] = recall(rows)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} µs" for k, v in cpu.items()), flush=True)
    install(builds[-1][1])
    print("\n| point | recall@10 | backend CPU µs/query (median) | rounds |")
    print("|---|---:|---:|---|")
    for label, values in cpu.items():
        print(f"| {label} | {recalls[label]:.3f} | {statistics.median(values):.0f} | "
              f"{' / '.join(f'{v:.0f}' for v in values)} |")


if __name__ == "__main__":
    main()
