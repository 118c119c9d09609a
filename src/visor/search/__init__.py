"""Visual search and dataset curation: embeddings, a similarity index, near-duplicates.

``visor.embed(images)`` gives L2-normalised embeddings from a classifier's pre-logit
features; :func:`build_index` / :func:`search` store and query them (usearch HNSW, exact
below a size limit). Curation (duplicates, leakage, likely label mistakes) is in
:mod:`visor.search.curate`.
"""

from visor.search.embed import Embedder, embed
from visor.search.index import Hit, IndexNotFound, VectorIndex, add_images, build_index, search

__all__ = ["Embedder", "Hit", "IndexNotFound", "VectorIndex", "add_images", "build_index", "embed", "search"]
