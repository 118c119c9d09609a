"""Visual search and dataset curation: embeddings, a similarity index, near-duplicates.

``visor.embed(images)`` gives L2-normalised embeddings from a classifier's pre-logit
features; :func:`build_index` / :func:`search` store and query them (usearch HNSW, exact
below a size limit). Curation (duplicates, leakage, likely label mistakes) is in
:mod:`visor.retrieval.curate`. The package is ``retrieval`` so that ``visor.search`` can be the function.
"""

from visor.retrieval.curate import CurationReport, curate
from visor.retrieval.embed import Embedder, embed
from visor.retrieval.index import Hit, IndexNotFound, VectorIndex, add_images, build_index, search

__all__ = ["CurationReport", "Embedder", "Hit", "IndexNotFound", "VectorIndex", "add_images", "build_index", "curate",
           "embed", "search"]
