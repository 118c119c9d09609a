"""Visual search and dataset curation: embeddings, a similarity index, near-duplicates.

``visor.embed(images)`` gives L2-normalised embeddings from a classifier's pre-logit
features; :func:`build_index` / :func:`search` store and query them (faiss: exact below a
size limit, HNSW above). For many queries open an index once (``VectorIndex.open(path)``,
then ``.search(image, k)``); ``visor.search(path, image)`` keeps a few opened indexes cached.
Curation (duplicates, leakage, likely label mistakes) is in :mod:`visor.retrieval.curate`.
The package is ``retrieval`` so that ``visor.search`` can be the function.
"""

from visor.retrieval.curate import CurationReport, curate
from visor.retrieval.embed import Embedder, embed
from visor.retrieval.index import (
    Hit,
    IndexNotFound,
    IndexOutdated,
    VectorIndex,
    add_images,
    build_index,
    clear_search_cache,
    search,
)

__all__ = ["CurationReport", "Embedder", "Hit", "IndexNotFound", "IndexOutdated", "VectorIndex", "add_images",
           "build_index", "clear_search_cache", "curate", "embed", "search"]
