"""Face search latency on a Rekognition-style collection: ``FaceIndex.search`` over N indexed faces.

    python benchmarks/face_search.py [--faces 10000] [--queries 200] [--db PATH_OR_URL]

Indexes ``--faces`` synthetic 128-d embeddings (seeded, unit length, spread like dlib's) with
``add_embeddings`` (one transaction), then times ``--queries`` searches one at a time, each a stored
vector plus small noise (SearchFaces' default: up to 80 faces at similarity 80 or more). A search is
what the service does per request: the collection's version read from the database (one small
query), then the in-memory faiss search, then the records. The first search builds the vectors
from the database and is timed on its own. Prints p50/p95/max, the CPU, its load and faiss's thread count,
and the same searches through faiss's threaded search (which only collections over 100,000 faces use:
one query on busy cores waits for OpenMP's threads).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from visor.benchmark import cpu_name
from visor.faces import FaceIndex, indexed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--db", help="an SQLite file or postgresql:// URL (default: a new file in a temporary folder)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.faces, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "faces.db")
        with FaceIndex(db) as index:
            name = f"bench-{os.getpid()}"
            index.create_collection(name)
            start = time.perf_counter()
            records = index.add_embeddings(name, vectors)
            added = time.perf_counter() - start
        with FaceIndex(db) as index:  # a fresh process's view: the first search loads the vectors
            start = time.perf_counter()
            index.search(name, vectors[0])
            first = time.perf_counter() - start
            picks = rng.choice(args.faces, args.queries, replace=args.queries > args.faces)
            queries = vectors[picks] + rng.normal(scale=0.02, size=(len(picks), 128)).astype(np.float32)
            times, right = _timed(index, name, queries, [records[i].face_id for i in picks])
            limit = indexed.SEQUENTIAL_LIMIT
            indexed.SEQUENTIAL_LIMIT = 0  # faiss's own (OpenMP) search, what collections over the limit use
            try:
                threaded, _ = _timed(index, name, queries, [records[i].face_id for i in picks])
            finally:
                indexed.SEQUENTIAL_LIMIT = limit
            index.delete_collection(name)
    print(f"{args.faces} faces, {args.queries} searches; CPU: {cpu_name()}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, faiss threads {_faiss_threads()}")
    print(f"add_embeddings: {added:.2f} s ({added / args.faces * 1e6:.0f} us per face); first search (loads the "
          f"vectors): {first * 1000:.1f} ms")
    print(f"search: {_percentiles(times)}; found itself first: {right}/{len(picks)}")
    print(f"  the same with faiss's threaded search (collections over {limit:,} faces): {_percentiles(threaded)}")


def _timed(index: FaceIndex, name: str, queries: np.ndarray, expected: list[str]) -> tuple[np.ndarray, int]:
    times, right = [], 0
    for query, face_id in zip(queries, expected, strict=True):
        start = time.perf_counter()
        found = index.search(name, query)
        times.append(time.perf_counter() - start)
        right += bool(found) and found[0][0].face_id == face_id
    return np.array(times) * 1000, right


def _percentiles(ms: np.ndarray) -> str:
    return f"p50 {np.percentile(ms, 50):.3f} ms, p95 {np.percentile(ms, 95):.3f} ms, max {ms.max():.3f} ms"


def _faiss_threads() -> int:
    import faiss

    return faiss.omp_get_max_threads()


if __name__ == "__main__":
    main()
