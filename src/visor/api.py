"""Top-level convenience functions."""

from __future__ import annotations

from collections.abc import Iterable

from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource
from visor.models import DEFAULT_CLASSIFIER, Classifier, load
from visor.types import Classifications


def classify(
    images: ImageSource | Iterable[ImageSource],
    *,
    top_k: int = 5,
    model: str | Classifier = DEFAULT_CLASSIFIER,
    batch_size: int = 32,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Classifications | list[Classifications]:
    """Classify one image or a list of images.

    ``images`` may be a path, bytes, a binary file object, a numpy array, a PIL image,
    or a list of them. One image gives one :class:`Classifications`; a list gives a list.
    ``model`` is a registry name, a model folder, or a loaded :class:`Classifier`
    (pass a loaded one when calling repeatedly: loading costs more than classifying).
    """
    clf = model if isinstance(model, Classifier) else load(model, limits=limits)
    return clf.classify(images, top_k=top_k, batch_size=batch_size)
