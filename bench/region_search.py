#!/usr/bin/env python3
"""Region search in PostgreSQL (issue 14): the SQL forms of README "Searching by regions" on the
edited-copies protocol of bench/eval_descriptor.py.

    python3 bench/region_search.py --dsn "host=/tmp port=56600 user=postgres dbname=postgres" \
        [--data ../shared/data] [--manifest models/efficientnet-lite0.json] [--every 1]

Stores what the evaluation stores (the 93 scene photos, as their files' bytes, and the 472
object composites, as PNG) in `artworks` with an annoy index, and every stored image's 14
image_region_embeddings in `artwork_regions` with its own annoy index. Then each edited copy
(crop a third, pasted at half size, caption bands, ... drawn with the evaluation's seeds; sent
as JPEG q95) is searched with four statements, each in its own transaction, in an order that
rotates from query to query:
  plain           ORDER BY emb <-> image_embedding($1) LIMIT 10
  query regions   (a) each of the query's 14 regions against the stored pictures, merged
  stored regions  (b) the query's picture against the stored regions, merged per picture
  both            (a) and (b) in one statement, merged
A query is found when its original scene comes first. Prints rank-1 per edit class and the
median milliseconds per query of each statement (the machine may be shared: see the load).
--every N takes every Nth scene's edits (a documented subset when time is short).
"""

import argparse
import io
import os
import statistics
import sys
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import embed_python as pipe  # noqa: E402
import eval_descriptor as ev  # noqa: E402

# The README's statements (k = 10; the stored form reads 14 x k region rows, which always hold
# k distinct pictures).
FORMS = {
    "plain": """
        SELECT id FROM artworks ORDER BY emb <-> image_embedding(%(image)s) LIMIT 10""",
    "query regions": """
        SELECT best.id FROM (
            SELECT DISTINCT ON (m.id) m.id, m.distance
            FROM image_region_embeddings(%(image)s) r
            CROSS JOIN LATERAL (
                SELECT id, emb <-> r.emb AS distance FROM artworks
                ORDER BY emb <-> r.emb LIMIT 10
            ) m
            ORDER BY m.id, m.distance
        ) best ORDER BY best.distance LIMIT 10""",
    "stored regions": """
        SELECT best.artwork_id FROM (
            SELECT DISTINCT ON (artwork_id) artwork_id, distance
            FROM (
                SELECT artwork_id, emb <-> image_embedding(%(image)s) AS distance FROM artwork_regions
                ORDER BY emb <-> image_embedding(%(image)s) LIMIT 140
            ) m
            ORDER BY artwork_id, distance
        ) best ORDER BY best.distance LIMIT 10""",
    "both": """
        WITH q AS MATERIALIZED (SELECT region, emb FROM image_region_embeddings(%(image)s))
        SELECT id FROM (
            SELECT m.id, m.distance FROM q
            CROSS JOIN LATERAL (
                SELECT id, emb <-> q.emb AS distance FROM artworks
                ORDER BY emb <-> q.emb LIMIT 10
            ) m
            UNION ALL
            SELECT artwork_id, distance FROM (
                SELECT artwork_id, emb <-> (SELECT emb FROM q WHERE region = 0) AS distance
                FROM artwork_regions
                ORDER BY emb <-> (SELECT emb FROM q WHERE region = 0) LIMIT 140
            ) s
        ) c GROUP BY id ORDER BY min(distance) LIMIT 10""",
}


def encoded(img, fmt, **options):
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def load(conn, p, data):
    """Stores the scenes (ids 0..92, their files' bytes) and the object composites; returns the
    seconds spent on whole-picture embeddings and on region embeddings."""
    stored = [open(os.path.join(data, "scenes", r["file"]), "rb").read() for r in p.scene_rows]
    stored += [encoded(img, "PNG") for img in p.on_grey + p.on_scene]
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS artwork_regions, artworks")
        cur.execute("CREATE TABLE artworks (id int PRIMARY KEY, emb vector2048)")
        cur.execute("CREATE TABLE artwork_regions (artwork_id int, region int, emb vector2048, "
                    "PRIMARY KEY (artwork_id, region))")
        whole = regions = 0.0
        for i, image in enumerate(stored):
            start = time.perf_counter()
            cur.execute("INSERT INTO artworks VALUES (%s, image_embedding(%s))", (i, image))
            middle = time.perf_counter()
            cur.execute("INSERT INTO artwork_regions SELECT %s, region, emb FROM image_region_embeddings(%s)",
                        (i, image))
            regions += time.perf_counter() - middle
            whole += middle - start
        cur.execute("CREATE INDEX ON artworks USING annoy (emb)")
        cur.execute("CREATE INDEX ON artwork_regions USING annoy (emb)")
        cur.execute("ANALYZE artworks, artwork_regions")
    return len(stored), whole, regions


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--data", default=os.path.join(here, "..", "..", "shared", "data"))
    parser.add_argument("--manifest", default=os.path.join(here, "..", "models", "efficientnet-lite0.json"))
    parser.add_argument("--every", type=int, default=1, help="use the edits of every Nth scene")
    parser.add_argument("--keep-tables", action="store_true", help="reuse artworks/artwork_regions as loaded")
    args = parser.parse_args(argv)

    p = ev.build_protocol(args.data, None, pipe.Manifest(args.manifest).background)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS imgsim")
        if args.keep_tables:
            n_stored = conn.execute("SELECT count(*) FROM artworks").fetchone()[0]
            print(f"reusing {n_stored} stored images", file=sys.stderr)
        else:
            print(f"loading {len(p.scenes)} scenes + {2 * p.n_objects} object composites ...", file=sys.stderr)
            n_stored, whole, regions = load(conn, p, args.data)
            print(f"stored {n_stored} images: image_embedding {1000 * whole / n_stored:.0f} ms/image, "
                  f"image_region_embeddings {1000 * regions / n_stored:.0f} ms/image")
        # Only the queries' bytes are kept: the protocol's decoded images take gigabytes.
        queries = [(encoded(p.hard_images[q], "JPEG", quality=95), p.hard_owners[q], p.hard_kinds[q])
                   for q, owner in enumerate(p.hard_owners) if owner % args.every == 0]
        n_scenes, n_composites, kinds = len(p.scenes), 2 * p.n_objects, list(dict.fromkeys(p.hard_kinds))
        del p
        # The tables are small enough that the planner would sort them instead; the figures are
        # for the annoy index scans a large collection gets.
        conn.execute("SET enable_seqscan = off")
        found = {form: {kind: [] for kind in kinds} for form in FORMS}
        millis = {form: [] for form in FORMS}
        names = list(FORMS)
        for n, (image, owner, kind) in enumerate(queries):
            for form in names[n % len(names):] + names[:n % len(names)]:
                start = time.perf_counter()
                first = conn.execute(FORMS[form], {"image": image}).fetchone()[0]
                millis[form].append(1000 * (time.perf_counter() - start))
                found[form][kind].append(first == owner)
            if n % 50 == 49:
                print(f"{n + 1}/{len(queries)} queries", file=sys.stderr)
        load_avg = os.getloadavg()[0]

    print(f"\n{len(queries)} edited copies of {len(queries) // len(kinds)} scenes (every {args.every}) against "
          f"{n_stored} stored images ({n_scenes} scenes + {n_composites} object composites); rank-1 "
          f"by edit class; median ms per query (load average at the end {load_avg:.1f}):\n")
    print("| SQL form | model runs / query | all | " + " | ".join(kinds) + " | ms / query |")
    print("|" + "|".join(["---"] * (len(kinds) + 4)) + "|")
    runs = {"plain": 1, "query regions": 14, "stored regions": 1, "both": 14}
    for form in FORMS:
        everything = [hit for kind in kinds for hit in found[form][kind]]
        cells = [sum(found[form][k]) / len(found[form][k]) for k in kinds]
        print(f"| {form} | {runs[form]} | {sum(everything) / len(everything):.3f} | "
              + " | ".join(f"{c:.3f}" for c in cells) + f" | {statistics.median(millis[form]):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
