"""Image classification with ONNX Runtime: decode, preprocess (from the card), infer, top-k."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from visor.errors import VisorError
from visor.io import ImageSource
from visor.models.batching import Outcome
from visor.models.predictor import Predictor
from visor.types import Classifications


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float32, stable for large logits."""
    z = logits.astype(np.float32) / np.float32(temperature)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class Classifier(Predictor[Classifications]):
    """An image classifier: a model card (``task="classification"``) plus an ONNX Runtime session.

    Build one with :func:`visor.load` and reuse it: loading verifies the weights and
    starts a session, which costs far more than classifying one image.
    :meth:`predict` / :meth:`classify` give :class:`Classifications` (softmax with the card's
    temperature, top-k).
    """

    task: ClassVar[str] = "classification"
    default_batch_size: ClassVar[int] = 32
    jpeg_draft: ClassVar[bool] = True  # the centre crop is resized down anyway

    # ------------------------------------------------------------------ steps

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The model input batch alone (:meth:`prepare` gives the geometry too)."""
        return self.prepare(images)[0]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits ``(N, num_classes)`` of a prepared batch (:meth:`infer`)."""
        return self.infer(batch)

    def postprocess(self, outputs: np.ndarray, metas: Sequence[Any] | int | None = None, *,
                    top_k: int = 5) -> list[Classifications]:
        """Logits to :class:`Classifications` (top ``top_k``). ``postprocess(logits, top_k)`` (the top-k
        second, as before the Predictor base) still works."""
        if isinstance(metas, (int, np.integer)) and not isinstance(metas, bool):
            top_k = int(metas)
        probs = softmax(np.asarray(outputs), self.card.temperature)
        return [Classifications.from_probabilities(p, self.labels, top_k, self.name) for p in probs]

    # ------------------------------------------------------------------ API (the names callers use)

    def classify(
        self, images: ImageSource | Iterable[ImageSource], *, top_k: int = 5, batch_size: int = 32
    ) -> Classifications | list[Classifications]:
        """Classify one image (returns :class:`Classifications`) or many (returns a list).

        The first bad image raises its typed error (:class:`~visor.errors.VisorError`).
        Use :meth:`classify_iter` to keep going past bad images.
        """
        return self.predict(images, top_k=top_k, batch_size=batch_size)

    def classify_iter(
        self, sources: Iterable[ImageSource], *, top_k: int = 5, batch_size: int = 32
    ) -> Iterator[Outcome]:
        """Classify many images, yielding an :class:`Outcome` per input, in order.

        A bad image yields its error and the rest go on. The next batch is decoded in
        a background thread while the current one is inferred.
        """
        return self.predict_iter(sources, top_k=top_k, batch_size=batch_size)

    def predict_logits(self, sources: Iterable[ImageSource], *, batch_size: int = 32) -> np.ndarray:
        """Raw logits ``(N, num_classes)`` (before temperature), for evaluation and calibration.

        The first bad image raises its typed error.
        """
        out = [np.zeros((0, self.card.num_classes), np.float32)]
        for _, decoded in self.decoded_batches(sources, batch_size):
            for d in decoded:
                if isinstance(d, VisorError):
                    raise d
            out.append(self.infer(self.prepare(decoded)[0]))
        return np.concatenate(out)

    def predict_proba(self, sources: Iterable[ImageSource], *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``(N, num_classes)`` with the card's temperature applied."""
        return softmax(self.predict_logits(sources, batch_size=batch_size), self.card.temperature)
