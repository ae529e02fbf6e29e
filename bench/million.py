"""annoy on 1 million rows: build time, peak memory, index size, recall@10
against the exact top 10 and queries/s, at the default maintenance_work_mem
and at a generous one.

Data: the hard structured set of compare_hnsw.py (clusters on a rank-128
manifold, ReLU, normalised), 1 000 000 items and 100 queries drawn like them
and not among them. The items are drawn and loaded 50 000 at a time, and the
exact top 10 of every query is kept up to date chunk by chunk, so the client
never holds more than one chunk (~400 MB) of the 8 GB of f32 data.

Peak memory is the building backend's peak anonymous memory (RssAnon of
/proc/PID/status, polled every 0.1 s: the build's own allocations, without
the shared buffers it touches), which needs the script to run on the
server's machine as root or as postgres.

usage: million.py --dsn DSN --pgbench-conn "..." [--items N] [--queries Q]
       [--generous-mem 2GB] [--sweep 1500,3000,6000] [--seconds S] [--rounds R]
"""
import argparse
import statistics
import threading
import time

import numpy as np
import psycopg

import compare_hnsw as ch

CHUNK = 50_000


def peak_anon_kib(pid, stop, peak):
    """Polls the backend's RssAnon until `stop` is set; the peak goes to peak[0]."""
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except FileNotFoundError:
            return
        time.sleep(0.1)


def load(dsn, n, queries_n):
    """Loads n items (and the queries) and returns the exact top 10 ids."""
    gen = ch.Manifold(n, seed=7)
    queries = gen.draw(queries_n).astype(np.float16).astype(np.float32)
    best_d = np.full((queries_n, 10), np.inf, np.float32)
    best_i = np.zeros((queries_n, 10), np.int64)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS m_items, m_queries")
        conn.execute("CREATE TABLE m_queries (id int PRIMARY KEY, emb vector2048)")
        with conn.cursor().copy("COPY m_queries (id, emb) FROM STDIN WITH (FORMAT binary)") as copy:
            copy.write(ch.copy_binary(queries))
        conn.execute("CREATE TABLE m_items (id int PRIMARY KEY, emb vector2048)")
        t = time.time()
        for start in range(0, n, CHUNK):
            x = gen.draw(min(CHUNK, n - start)).astype(np.float16).astype(np.float32)
            with conn.cursor().copy("COPY m_items (id, emb) FROM STDIN WITH (FORMAT binary)") as copy:
                copy.write(ch.copy_binary(x, first_id=start + 1))
            # Squared L2 up to the query's own norm, which does not change the order.
            d = (x * x).sum(1)[None, :] - 2 * queries @ x.T
            cand_d = np.concatenate([best_d, d], axis=1)
            cand_i = np.concatenate([best_i, np.arange(start, start + len(x))[None, :].repeat(queries_n, 0)], axis=1)
            keep = np.argpartition(cand_d, 10, axis=1)[:, :10]
            best_d = np.take_along_axis(cand_d, keep, 1)
            best_i = np.take_along_axis(cand_i, keep, 1)
            print(f"  loaded {start + len(x)} rows ({time.time() - t:.0f} s)", flush=True)
        conn.execute("VACUUM ANALYZE m_items")
        conn.execute("CHECKPOINT")
        size = conn.execute("SELECT pg_relation_size('m_items')").fetchone()[0]
    print(f"table: {n} rows, {size / 2**30:.1f} GiB, loaded in {time.time() - t:.0f} s", flush=True)
    return [set(row) for row in best_i.tolist()]


def build(dsn, mem):
    """CREATE INDEX at maintenance_work_mem = mem: seconds, peak KiB, bytes, notices."""
    notices = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS m_annoy")
        conn.execute("CHECKPOINT")
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        if mem == "default":
            conn.execute("RESET maintenance_work_mem")
        else:
            conn.execute(f"SET maintenance_work_mem = '{mem}'")
        setting = conn.execute("SHOW maintenance_work_mem").fetchone()[0]
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        stop, peak = threading.Event(), [0]
        poller = threading.Thread(target=peak_anon_kib, args=(pid, stop, peak))
        poller.start()
        t = time.time()
        conn.execute("CREATE INDEX m_annoy ON m_items USING annoy (emb)")
        seconds = time.time() - t
        stop.set()
        poller.join()
        size = conn.execute("SELECT pg_relation_size('m_annoy')").fetchone()[0]
        conn.execute("SELECT pg_prewarm('m_annoy')")
    return {"setting": setting, "seconds": seconds, "peak_kib": peak[0], "bytes": size, "notices": notices}


def recall(dsn, search_k, truth):
    with psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as conn:
        conn.execute(f"SET annoy.search_k = {search_k}")
        sql = "SELECT id FROM m_items ORDER BY emb <-> (SELECT emb FROM m_queries WHERE id = %s) LIMIT 10"
        found = 0
        for q, exact in enumerate(truth):
            ids = {r[0] - 1 for r in conn.execute(sql, (q + 1,), prepare=True)}
            found += len(ids & exact)
    return found / (10 * len(truth))


def throughput(pgbench, conn_args, search_k, clients, seconds, queries):
    ch.METHODS["million"] = ("m_items", "m_queries", "<->", "annoy.search_k")
    return ch.throughput(pgbench, conn_args, "million", str(search_k), clients, seconds, queries)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--pgbench", default="/usr/lib/postgresql/15/bin/pgbench")
    ap.add_argument("--pgbench-conn", required=True)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--generous-mem", default="2GB")
    ap.add_argument("--sweep", default="1500,3000,6000")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--extension", default="imgsim")
    args = ap.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE EXTENSION IF NOT EXISTS {args.extension}")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    truth = load(args.dsn, args.items, args.queries)
    conn_args = args.pgbench_conn.split()
    sweep = [int(v) for v in args.sweep.split(",")]
    rows = []
    for mem in ("default", args.generous_mem):
        b = build(args.dsn, mem)
        print(f"build at maintenance_work_mem = {b['setting']}: {b['seconds']:.0f} s, peak anonymous memory "
              f"{b['peak_kib'] / 1024:.0f} MiB, index {b['bytes'] / 2**30:.2f} GiB; notices: {b['notices']}", flush=True)
        for search_k in sweep:
            r = recall(args.dsn, search_k, truth)
            qps = {c: statistics.median([throughput(args.pgbench, conn_args, search_k, c, args.seconds, args.queries)
                                         for _ in range(args.rounds)]) for c in (1, 2)}
            print(f"  search_k {search_k}: recall@10 {r:.3f}, {qps[1]:.0f} q/s (1 client), {qps[2]:.0f} q/s (2)",
                  flush=True)
            rows.append((b, search_k, r, qps))
    print("\n| maintenance_work_mem | build | peak build memory | index size | annoy.search_k | recall@10 "
          "| q/s, 1 client | q/s, 2 clients |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for b, search_k, r, qps in rows:
        print(f"| {b['setting']} | {b['seconds']:.0f} s | {b['peak_kib'] / 1024:.0f} MiB | {b['bytes'] / 2**30:.2f} GiB "
              f"| {search_k} | {r:.3f} | {qps[1]:.0f} | {qps[2]:.0f} |")


if __name__ == "__main__":
    main()
