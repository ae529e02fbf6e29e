"""The design card's query through a driver that prepares statements (psycopg 3).

usage: prepared_query.py --dsn DSN --image PATH [--executions 20] [--rounds 3] [--repeat 15]

Table `items (id, emb vector2048)` with an annoy index must exist. Prints, per execution
number 1..N of `SELECT id FROM items ORDER BY emb <-> image_embedding(%s) LIMIT 10` on a fresh
connection (psycopg's defaults: server-side prepared from the 5th execution on, and
PostgreSQL's plan cache picks a generic plan after 5 custom ones), the median milliseconds
over the rounds; then, under `plan_cache_mode = force_generic_plan`, the median of `--repeat`
executions of the plain form at LIMIT 1 and LIMIT 10 and of the `(SELECT image_embedding(%s))`
form. Autocommit: each execution is its own transaction, as a pooled web request's would be.
Before timing, each connection embeds the image once in another statement, so the model is
loaded (and the session warm) and no execution pays for that.
"""
import argparse
import statistics
import time

import psycopg

PLAIN = "SELECT id FROM items ORDER BY emb <-> image_embedding(%s) LIMIT {limit}"
SUBSELECT = "SELECT id FROM items ORDER BY emb <-> (SELECT image_embedding(%s)) LIMIT {limit}"


def warm(conn, image):
    conn.execute("SELECT vector_dims(image_embedding(%s))", (image,)).fetchall()


def timed(conn, query, image):
    start = time.perf_counter()
    rows = conn.execute(query, (image,)).fetchall()
    elapsed = (time.perf_counter() - start) * 1000
    assert rows, "the query returned no row"
    return elapsed


def model_runs(conn):
    try:
        return conn.execute("SELECT imgsim_model_runs()").fetchone()[0]
    except psycopg.errors.UndefinedFunction:
        return None  # a build without the counter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--executions", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    image = open(args.image, "rb").read()

    per_execution = [[] for _ in range(args.executions)]
    runs_per_round = []
    for _ in range(args.rounds):
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            warm(conn, image)
            before = model_runs(conn)
            for n in range(args.executions):
                per_execution[n].append(timed(conn, PLAIN.format(limit=10), image))
            after = model_runs(conn)
            runs_per_round.append(None if before is None else after - before)
    print(f"psycopg {psycopg.__version__}, default prepare_threshold, image {len(image)} bytes, "
          f"median of {args.rounds} fresh connections")
    print("execution | ms (median) | each round")
    for n, times in enumerate(per_execution, 1):
        print(f"{n} | {statistics.median(times):.1f} | {' '.join(f'{t:.1f}' for t in times)}")
    print(f"model runs for {args.executions} executions, per round: {runs_per_round}")

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        warm(conn, image)
        for label, query in [("plain, LIMIT 1", PLAIN.format(limit=1)),
                             ("plain, LIMIT 10", PLAIN.format(limit=10)),
                             ("(SELECT image_embedding($1)), LIMIT 10", SUBSELECT.format(limit=10))]:
            before = model_runs(conn)
            # prepare=True: a server-side prepared statement from the first execution.
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                conn.execute(query, (image,), prepare=True).fetchall()
                times.append((time.perf_counter() - start) * 1000)
            after = model_runs(conn)
            runs = "n/a" if before is None else f"{(after - before) / args.repeat:.1f}"
            print(f"force_generic_plan, {label}: median {statistics.median(times):.1f} ms "
                  f"(min {min(times):.1f}, max {max(times):.1f}); model runs per execution {runs}")


if __name__ == "__main__":
    main()
