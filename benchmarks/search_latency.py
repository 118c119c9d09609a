"""Visual search latency per query image: ``visor.search(path, image)`` in a loop, and an index opened once.

    python benchmarks/search_latency.py [--data ../shared/data/imagenette-dev] [--index-images 100] [--queries 50]

Indexes the first ``--index-images`` imagenette-dev train images, then times ``--queries``
held-out val images one at a time (embedding included: decode, preprocess, the model, the
index search and the metadata lookup). The first query of each loop is a warm-up and not timed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import visor
from visor.retrieval import VectorIndex, build_index, clear_search_cache

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "imagenette-dev")
    ap.add_argument("--index-images", type=int, default=100)
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()

    indexed = sorted((args.data / "train").rglob("*.JPEG"))[: args.index_images]
    queries = sorted((args.data / "val").rglob("*.JPEG"))[: args.queries + 1]
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "idx")
        index, failed = build_index([str(p) for p in indexed], folder)
        index.close()
        print(f"{len(indexed) - len(failed)} images indexed, {len(queries) - 1} timed queries, {os.cpu_count()} cores")

        clear_search_cache()
        visor.search(folder, queries[0], k=5)  # warm-up: opens the index and loads the model once
        start = time.perf_counter()
        for q in queries[1:]:
            visor.search(folder, q, k=5)
        print(f"visor.search(path, image) in a loop: {(time.perf_counter() - start) / (len(queries) - 1) * 1000:.1f} "
              "ms/query")

        with VectorIndex.open(folder) as index:
            index.search(queries[0], k=5)
            start = time.perf_counter()
            for q in queries[1:]:
                index.search(q, k=5)
            print(f"VectorIndex.open(path) once, then .search(image): "
                  f"{(time.perf_counter() - start) / (len(queries) - 1) * 1000:.1f} ms/query")
            vec = index.embedder.embed(queries[0])
            start = time.perf_counter()
            for _ in range(200):
                index.search_vectors(vec[None], k=5)
            print(f"  of which the index search + metadata (no embedding): "
                  f"{(time.perf_counter() - start) / 200 * 1000:.3f} ms/query")


if __name__ == "__main__":
    main()
