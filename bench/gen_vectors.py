"""Clustered synthetic 2048-d vectors as a PostgreSQL binary COPY stream.

usage: gen_vectors.py N QUERIES OUT_ITEMS OUT_QUERIES [--seed S]

Items: N points around N/100 Gaussian centres with per-cluster spreads (a
structured set, not uniform noise). Queries: noisy points near random
centres, not in the set. Both files are binary COPY for a table
(id bigint, emb vector2048): the vector2048 wire format is int16 dims, int16
reserved, then 2048 big-endian half floats.
"""
import argparse
import struct

import numpy as np

DIMS = 2048


def write_copy(path, vectors, first_id):
    halves = vectors.astype(">f2")
    with open(path, "wb") as out:
        out.write(b"PGCOPY\n\xff\r\n\0" + struct.pack(">II", 0, 0))
        row_head = struct.pack(">h", 2)
        vec_head = struct.pack(">ihh", 4 + 2 * DIMS, DIMS, 0)
        for i, row in enumerate(halves):
            out.write(row_head + struct.pack(">iq", 8, first_id + i) + vec_head + row.tobytes())
        out.write(struct.pack(">h", -1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("queries", type=int)
    ap.add_argument("out_items")
    ap.add_argument("out_queries")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    clusters = max(1, args.n // 100)
    centres = rng.standard_normal((clusters, DIMS)).astype(np.float32)
    spreads = rng.uniform(0.3, 1.2, clusters).astype(np.float32)
    chunks = []
    for start in range(0, args.n, 10_000):
        count = min(10_000, args.n - start)
        which = rng.integers(0, clusters, count)
        noise = rng.standard_normal((count, DIMS)).astype(np.float32)
        chunks.append(centres[which] + noise * spreads[which, None])
    write_copy(args.out_items, np.concatenate(chunks), 1)
    which = rng.integers(0, clusters, args.queries)
    queries = centres[which] + rng.standard_normal((args.queries, DIMS)).astype(np.float32) * spreads[which, None]
    write_copy(args.out_queries, queries, 1)


if __name__ == "__main__":
    main()
