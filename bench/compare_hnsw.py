"""annoy against pgvector's HNSW in one PostgreSQL server, on the same rows.

Loads a data set into two tables (vector2048 with an annoy index, halfvec(2048)
with an HNSW index: pgvector's binary format for halfvec is the same as
vector2048's), builds both indexes (timed), computes the exact top 10 of every
query with numpy, then sweeps each index's search knob, alternating between
the two methods every round:
  * recall@10 against the exact top 10, through psycopg 3 with prepared
    statements (the query vector read from a table by id, as an app would);
  * queries/s with pgbench -M prepared, for 1 and 2 clients.
Prints the medians and, per method, the best q/s at recall >= 0.95 and 0.99.

usage: compare_hnsw.py --dsn DSN --set hard|clustered [--items N] [--queries Q]
       [--rounds R] [--seconds S] [--annoy-sweep 500,1000,...] [--hnsw-sweep 10,20,...]
"""
import argparse
import io
import os
import statistics
import struct
import subprocess
import tempfile
import time

import numpy as np
import psycopg

DIMS = 2048


class Manifold:
    """Clusters in a rank-`rank` latent space, mapped to 2048-d by one random
    linear map and ReLU, L2-normalised (n // 100 clusters for a set of n).
    Mirrors crates/forest/tests/common Manifold."""

    def __init__(self, n, rank=128, seed=42):
        self.rng = np.random.default_rng(seed)
        self.rank = rank
        self.clusters = max(10, n // 100)
        self.linear = self.rng.standard_normal((rank, DIMS)).astype(np.float32) / np.sqrt(rank)
        self.centres = self.rng.standard_normal((self.clusters, rank)).astype(np.float32)
        self.spreads = self.rng.uniform(0.4, 1.0, self.clusters).astype(np.float32)

    def draw(self, count):
        out = np.empty((count, DIMS), np.float32)
        for start in range(0, count, 10_000):
            m = min(10_000, count - start)
            c = self.rng.integers(0, self.clusters, m)
            z = self.centres[c] + self.spreads[c, None] * self.rng.standard_normal((m, self.rank)).astype(np.float32)
            x = np.maximum(z @ self.linear + 0.3, 0)
            out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def manifold_set(n, queries, rank=128, seed=42):
    """n items and `queries` queries drawn the same way (not in the set)."""
    gen = Manifold(n, rank, seed)
    return gen.draw(n), gen.draw(queries)


def copy_binary(vectors, first_id=1):
    """PostgreSQL binary COPY of (id int, emb) rows: vector2048 and halfvec
    share the wire format (int16 dims, int16 zero, big-endian halves)."""
    out = io.BytesIO()
    out.write(b"PGCOPY\n\xff\r\n\0" + struct.pack(">II", 0, 0))
    halves = vectors.astype(">f2")
    head = struct.pack(">ihh", 4 + 2 * DIMS, DIMS, 0)
    for i, row in enumerate(halves, start=first_id):
        out.write(struct.pack(">hii", 2, 4, i) + head + row.tobytes())
    out.write(struct.pack(">h", -1))
    return out.getvalue()


def load(conn, table, column_type, vectors):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, emb {column_type})")
    with conn.cursor().copy(f"COPY {table} (id, emb) FROM STDIN WITH (FORMAT binary)") as copy:
        copy.write(copy_binary(vectors))
    conn.execute(f"VACUUM ANALYZE {table}")


METHODS = {
    # method: (items table, queries table, operator, knob)
    "annoy": ("a_items", "a_queries", "<->", "annoy.search_k"),
    "hnsw": ("h_items", "h_queries", "<->", "hnsw.ef_search"),
}


def statement(method):
    items, queries, op, _ = METHODS[method]
    return f"SELECT id FROM {items} ORDER BY emb {op} (SELECT emb FROM {queries} WHERE id = %s) LIMIT 10"


def settings(method, value):
    """The GUCs of one sweep point: the method's knob, and for annoy points
    given as search_k/rerank also annoy.rerank."""
    knob = METHODS[method][3]
    if method == "annoy" and "/" in value:
        search_k, rerank = value.split("/")
        return {knob: search_k, "annoy.rerank": rerank}
    return {knob: value}


def recall(dsn, method, value, truth):
    with psycopg.connect(dsn, prepare_threshold=0, autocommit=True) as conn:
        for name, setting in settings(method, value).items():
            conn.execute(f"SET {name} = {setting}")
        conn.execute("SET jit = off")
        sql = statement(method)
        found = 0
        for q in range(len(truth)):
            ids = [r[0] - 1 for r in conn.execute(sql, (q + 1,), prepare=True)]
            found += len(set(ids) & set(truth[q]))
    return found / (10 * len(truth))


def throughput(pgbench, conn_args, method, value, clients, seconds, queries):
    script = statement(method).replace("%s", ":qid")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(f"\\set qid random(1, {queries})\n{script};\n")
        path = f.name
    gucs = "".join(f" -c {name}={setting}" for name, setting in settings(method, value).items())
    env = dict(os.environ, PGOPTIONS=f"-c jit=off{gucs}")
    out = subprocess.run(
        [pgbench, *conn_args, "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients),
         "-T", str(seconds), "-f", path],
        env=env, capture_output=True, text=True, check=True).stdout
    os.unlink(path)
    for line in out.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(out)


def insert_rates(dsn, items, base, inserts, batch=500):
    """Rows/s of single-row INSERTs (a prepared statement, one transaction
    per batch) into an indexed table of `base` rows, for both methods,
    alternating batch by batch."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, column, index in [("a_ins", "vector2048", "USING annoy (emb)"),
                                     ("h_ins", "halfvec(2048)", "USING hnsw (emb halfvec_l2_ops)")]:
            load(conn, table, column, items[:base])
            conn.execute(f"CREATE INDEX ON {table} {index}")
    seconds = {"a_ins": 0.0, "h_ins": 0.0}
    wal = {"a_ins": 0, "h_ins": 0}
    lsn = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"
    with psycopg.connect(dsn) as conn:
        for start in range(base, base + inserts, batch):
            # The text form both types accept, made before the clock starts.
            rows = [(i + 1, "[" + ",".join(f"{v:.6g}" for v in items[i]) + "]") for i in range(start, start + batch)]
            for table in seconds:
                cast = "vector2048" if table == "a_ins" else "halfvec(2048)"
                before = conn.execute(lsn).fetchone()[0]
                conn.commit()
                t = time.time()
                with conn.cursor() as cur:
                    cur.executemany(f"INSERT INTO {table} (id, emb) VALUES (%s, %s::{cast})", rows)
                conn.commit()
                seconds[table] += time.time() - t
                wal[table] += conn.execute(lsn).fetchone()[0] - before
                conn.commit()
    for table, method in [("a_ins", "annoy"), ("h_ins", "HNSW")]:
        print(f"  {method}: {wal[table] / inserts / 1024:.1f} KiB of WAL per inserted row")
    return {"annoy": inserts / seconds["a_ins"], "hnsw": inserts / seconds["h_ins"]}


def filled_after_create(dsn, items, truth, search_k):
    """The migration order: CREATE TABLE, CREATE INDEX, then the rows. Time
    of the load, index size and recall@10 at search_k, against a fresh
    build (a_annoy on a_items) on the same rows."""
    out = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS a_filled")
        conn.execute("CREATE TABLE a_filled (id int PRIMARY KEY, emb vector2048)")
        conn.execute("CREATE INDEX a_filled_annoy ON a_filled USING annoy (emb)")
        t = time.time()
        conn.execute("INSERT INTO a_filled SELECT id, emb FROM a_items ORDER BY id")
        out["load_s"] = time.time() - t
        for name, index in [("filled", "a_filled_annoy"), ("fresh", "a_annoy")]:
            out[f"{name}_bytes"] = conn.execute(f"SELECT pg_relation_size('{index}')").fetchone()[0]
    METHODS["filled"] = ("a_filled", "a_queries", "<->", "annoy.search_k")
    out["filled_recall"] = recall(dsn, "filled", str(search_k), truth)
    out["fresh_recall"] = recall(dsn, "annoy", str(search_k), truth)
    return out


def writes(args, items, truth):
    """The write measurements: insert rates of both indexes, and annoy
    created empty then filled (on a_items and a_annoy as loaded and built)."""
    inserts, base = (int(v) for v in args.inserts.split(","))
    # Each round loads and indexes both tables afresh; the ratio's median
    # over rounds is the figure (one round moved by 1.5x between runs).
    ratios = []
    for r in range(args.insert_rounds):
        rates = insert_rates(args.dsn, items, base, inserts)
        ratios.append(rates["annoy"] / rates["hnsw"])
        print(f"\n{inserts} single-row inserts into {base} indexed rows, round {r + 1}: "
              f"annoy {rates['annoy']:.0f} rows/s, hnsw {rates['hnsw']:.0f} rows/s, "
              f"annoy/hnsw {ratios[-1]:.1f}x", flush=True)
    print(f"inserts: median annoy/hnsw over {len(ratios)} rounds {statistics.median(ratios):.1f}x "
          f"(rounds: {', '.join(f'{x:.1f}x' for x in ratios)})")
    f = filled_after_create(args.dsn, items, truth, args.filled_search_k)
    print(f"index created empty, then {len(items)} rows inserted: {f['load_s']:.0f} s, "
          f"{f['filled_bytes'] / 2**20:.0f} MiB against {f['fresh_bytes'] / 2**20:.0f} MiB fresh "
          f"({f['filled_bytes'] / f['fresh_bytes']:.2f}x), recall@10 at search_k {args.filled_search_k} "
          f"{f['filled_recall']:.3f} against {f['fresh_recall']:.3f} fresh")


def filtered(args, items, queries):
    """WHERE c = $2 ORDER BY emb <-> q LIMIT 10 at 1 %, 10 % and 50 %
    selectivity: recall@10 against the exact filtered top 10 (numpy) and the
    median and mean latency of the plan PostgreSQL picks, through prepared
    statements (generic plans after five executions), against the exact plan
    (enable_indexscan off) and the index plan (enable_seqscan off), each
    prepared in a session of its own."""
    n_queries = min(100, len(queries))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        conn.execute("DROP TABLE IF EXISTS a_cat")
        conn.execute("CREATE TABLE a_cat AS SELECT id, id % 100 AS c100, id % 10 AS c10, id % 2 AS c2, emb "
                     "FROM a_items")
        conn.execute("ALTER TABLE a_cat ADD PRIMARY KEY (id)")
        conn.execute("CREATE INDEX a_cat_annoy ON a_cat USING annoy (emb)")
        conn.execute("VACUUM ANALYZE a_cat")
        conn.execute("SELECT pg_prewarm('a_cat'), pg_prewarm('a_cat_annoy')")
    ids = np.arange(1, len(items) + 1)
    sq = (items * items).sum(1)
    out = []
    for modulus, column in [(100, "c100"), (10, "c10"), (2, "c2")]:
        sql = (f"SELECT id FROM a_cat WHERE {column} = %s "
               f"ORDER BY emb <-> (SELECT emb FROM a_queries WHERE id = %s) LIMIT 10")
        truth = []
        for q in range(n_queries):
            mask = ids % modulus == (q + 1) % modulus
            d = sq[mask] - 2 * items[mask] @ queries[q]
            truth.append(set(ids[mask][np.argsort(d)[:10]].tolist()))
        result = {}
        for plan in ("chosen", "exact", "index"):
            with psycopg.connect(args.dsn, prepare_threshold=0, autocommit=True) as conn:
                conn.execute("SET jit = off")
                if plan == "exact":
                    conn.execute("SET enable_indexscan = off")
                if plan == "index":
                    conn.execute("SET enable_seqscan = off")
                found, times = 0, []
                for q in range(n_queries):
                    t = time.perf_counter()
                    got = {r[0] for r in conn.execute(sql, ((q + 1) % modulus, q + 1), prepare=True)}
                    times.append(time.perf_counter() - t)
                    found += len(got & truth[q])
                # The plan the prepared statement ends with (generic after five runs).
                name = conn.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE %s",
                                    ("%FROM a_cat%",), prepare=False).fetchone()[0]
                explain = conn.execute(f"EXPLAIN (COSTS OFF) EXECUTE {name}(0, 1)", prepare=False).fetchall()
                scan = next(r[0].strip(" ->") for r in explain if " on a_cat" in r[0])
                result[plan] = (found / (10 * n_queries), statistics.median(times) * 1e3, scan,
                                statistics.mean(times) * 1e3)
        out.append((modulus, result))
        print(f"{100 // modulus} %: " + "; ".join(
            f"{plan} plan ({r[2]}) recall@10 {r[0]:.3f}, median {r[1]:.1f} ms, mean {r[3]:.1f} ms"
            for plan, r in result.items()), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--pgbench", default="/usr/lib/postgresql/15/bin/pgbench")
    ap.add_argument("--pgbench-conn", default="-h /tmp -p 56510 -U postgres imgsim_hnsw")
    ap.add_argument("--set", choices=["hard"], default="hard")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    # search_k, or search_k/rerank to also set annoy.rerank for the point.
    ap.add_argument("--annoy-sweep", default="1000,2000,3000,4000,6000,8000,12000")
    ap.add_argument("--hnsw-sweep", default="10,20,40,60,80,120,200")
    ap.add_argument("--annoy-options", default="")
    ap.add_argument("--extension", default="imgsim", help="name the imgsim extension is installed under")
    ap.add_argument("--inserts", default="5000,20000", help="INSERTS,BASE: rows inserted into an indexed table of BASE")
    ap.add_argument("--insert-rounds", type=int, default=1,
                    help="rounds of the insert measurement (tables rebuilt each round)")
    ap.add_argument("--filled-search-k", type=int, default=1500,
                    help="annoy.search_k for the index created empty and then filled")
    ap.add_argument("--writes-only", action="store_true",
                    help="only the write measurements, on the tables and indexes of an earlier run")
    ap.add_argument("--filtered-only", action="store_true",
                    help="only the filtered-query measurements, on the tables of an earlier run")
    args = ap.parse_args()
    conn_args = args.pgbench_conn.split()

    t = time.time()
    items, queries = manifold_set(args.items, args.queries)
    items = items.astype(np.float16).astype(np.float32)
    queries = queries.astype(np.float16).astype(np.float32)
    print(f"hard set: {len(items)} items, {len(queries)} queries (rank-128 manifold, ReLU, normalised), "
          f"generated in {time.time() - t:.0f} s", flush=True)
    # Exact top 10 by L2 (ties are negligible on continuous data).
    truth = []
    sq = (items * items).sum(1)
    for start in range(0, len(queries), 100):
        q = queries[start:start + 100]
        d = sq[None, :] - 2 * q @ items.T
        truth.extend(np.argpartition(d, 10, axis=1)[:, :10].tolist())

    if args.writes_only:
        writes(args, items, truth)
        return
    if args.filtered_only:
        filtered(args, items, queries)
        return

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE EXTENSION IF NOT EXISTS {args.extension}")
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        for table, kind, data in [("a_items", "vector2048", items), ("a_queries", "vector2048", queries),
                                  ("h_items", "halfvec(2048)", items), ("h_queries", "halfvec(2048)", queries)]:
            load(conn, table, kind, data)
        conn.execute("CHECKPOINT")
        with_options = f" WITH ({args.annoy_options})" if args.annoy_options else ""
        builds = {}
        for method, sql in [("annoy", f"CREATE INDEX a_annoy ON a_items USING annoy (emb){with_options}"),
                            ("hnsw", "CREATE INDEX h_hnsw ON h_items USING hnsw (emb halfvec_l2_ops)")]:
            t = time.time()
            conn.execute(sql)
            builds[method] = time.time() - t
        sizes = {m: conn.execute(f"SELECT pg_relation_size('{i}')").fetchone()[0]
                 for m, i in [("annoy", "a_annoy"), ("hnsw", "h_hnsw")]}
    for m in ("annoy", "hnsw"):
        print(f"{m}: build {builds[m]:.1f} s, index {sizes[m] / 2**20:.0f} MiB", flush=True)

    sweeps = {"annoy": args.annoy_sweep.split(","), "hnsw": args.hnsw_sweep.split(",")}
    results = {(m, v): {"recall": None, 1: [], 2: []} for m in sweeps for v in sweeps[m]}
    for (m, v), r in results.items():
        r["recall"] = recall(args.dsn, m, v, truth)
    for rnd in range(args.rounds):
        for clients in (1, 2):
            # Alternate the methods point by point, so drift hits both alike.
            for i in range(max(len(s) for s in sweeps.values())):
                for m in ("annoy", "hnsw"):
                    if i < len(sweeps[m]):
                        v = sweeps[m][i]
                        results[(m, v)][clients].append(
                            throughput(args.pgbench, conn_args, m, v, clients, args.seconds, len(queries)))
        print(f"round {rnd + 1} of {args.rounds} done", flush=True)

    print(f"\n| method | knob | recall@10 | q/s, 1 client | q/s, 2 clients |\n|---|---:|---:|---:|---:|")
    for (m, v), r in results.items():
        knobs = ", ".join(f"{k} = {x}" for k, x in settings(m, v).items())
        print(f"| {m} | {knobs} | {r['recall']:.3f} | {statistics.median(r[1]):.0f} | "
              f"{statistics.median(r[2]):.0f} |")
    print()
    for target in (0.95, 0.99):
        for clients in (1, 2):
            best = {}
            for m in ("annoy", "hnsw"):
                ok = [statistics.median(r[clients]) for (mm, v), r in results.items()
                      if mm == m and r["recall"] >= target]
                best[m] = max(ok) if ok else None
            ratio = (f"{best['annoy'] / best['hnsw']:.2f}x" if best["annoy"] and best["hnsw"] else "n/a")
            print(f"recall >= {target}, {clients} client(s): annoy {best['annoy'] and round(best['annoy'])} q/s, "
                  f"hnsw {best['hnsw'] and round(best['hnsw'])} q/s, annoy/hnsw {ratio}")

    writes(args, items, truth)
    filtered(args, items, queries)


if __name__ == "__main__":
    main()
