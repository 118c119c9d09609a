"""Similarity index at 100,000 vectors: build time, query latency, recall@10 against exact search.

    python benchmarks/index_100k.py [--n 100000] [--dim 1280] [--queries 500]

Random unit vectors (the hardest case for approximate search: no cluster structure) are
added to a visor ``VectorIndex`` in batches, as ``visor index add`` does. Queries are fresh
random vectors. Exact search is visor's brute-force path over the same vectors.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from visor.retrieval.index import VectorIndex, exact_search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    paths = [f"img/{i:06d}.jpg" for i in range(args.n)]

    with tempfile.TemporaryDirectory() as tmp:
        index = VectorIndex.create(os.path.join(tmp, "idx"), model="random", model_sha256="0" * 64, dim=args.dim,
                                   exact_limit=0)  # always approximate, for the measurement
        start = time.perf_counter()
        for i in range(0, args.n, args.batch):
            index.add(vectors[i : i + args.batch], paths[i : i + args.batch])
        build = time.perf_counter() - start
        keys = np.arange(args.n, dtype=np.uint64)  # the keys visor gave, in insertion order
        t = time.perf_counter()
        own = index.estimate_recall()
        own_s = time.perf_counter() - t

        t = time.perf_counter()
        truth, _ = exact_search(vectors, keys, queries, 10)
        exact_s = (time.perf_counter() - t) / len(queries)
        sweep = []
        for expansion in (64, 128, 512, 2048):
            index.set_expansion(expansion)
            lat, approx = [], []
            for q in queries:
                t = time.perf_counter()
                hits = index.search_vectors(q[None], 10, exact=False)[0]
                lat.append(time.perf_counter() - t)
                approx.append([h.key for h in hits])
            rec = np.mean([len(set(a) & set(map(int, tr))) / 10 for a, tr in zip(approx, truth, strict=True)])
            sweep.append((expansion, float(np.percentile(np.array(lat) * 1000, 50)), rec))
        lat_ms = np.array(lat) * 1000
        recall = sweep[1][2]
        print("expansion  query p50 ms  recall@10 (fresh random queries)")
        for expansion, p50, rec in sweep:
            print(f"{expansion:9d}  {p50:12.2f}  {rec:.4f}")
        size = sum(os.path.getsize(os.path.join(tmp, "idx", f)) for f in os.listdir(os.path.join(tmp, "idx")))
        print(f"{args.n} vectors x {args.dim}-d, {os.cpu_count()} cores")
        print(f"build, {args.batch} vectors per add (atomic save after each): {build:.1f} s "
              f"({args.n / build:.0f} vectors/s)")
        print(f"query latency at expansion 2048, k=10, one at a time: p50 {np.percentile(lat_ms, 50):.2f} ms, "
              f"p99 {np.percentile(lat_ms, 99):.2f} ms (metadata lookup included)")
        print(f"exact search (numpy brute force, batched): {exact_s * 1000:.2f} ms per query")
        print(f"recall@10 vs exact on {len(queries)} fresh queries at the default expansion 128: {recall:.4f}; "
              f"the index's own estimate (200 stored vectors as queries, {own_s:.1f} s): {own:.4f}")
        print(f"on disk: {size / 1e6:.0f} MB")
        index.close()


if __name__ == "__main__":
    main()
