"""Image classification with ONNX Runtime: decode, preprocess (from the card), infer, top-k."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from visor.errors import ConfigError, VisorError, WeightsError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, open_image
from visor.models import preprocess as pp
from visor.models import weights as weights_mod
from visor.models.batching import Outcome, decoded_batches, is_batch, outcomes
from visor.models.card import ModelCard
from visor.models.export import cached_onnx
from visor.models.runtime import OnnxSession
from visor.types import Classifications


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float32, stable for large logits."""
    z = logits.astype(np.float32) / np.float32(temperature)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class Classifier:
    """An image classifier: a model card plus an ONNX Runtime session.

    Build one with :func:`visor.load` and reuse it: loading verifies the weights and
    starts a session, which costs far more than classifying one image.
    """

    def __init__(self, card: ModelCard, session: OnnxSession, *, limits: ImageLimits = DEFAULT_LIMITS):
        if card.task != "classification":
            raise ConfigError(f"{card.name} is a {card.task} model, not a classifier")
        self.card = card
        self.session = session
        self.limits = limits

    @classmethod
    def from_card(
        cls,
        card: ModelCard,
        *,
        base_dir: str | os.PathLike | None = None,
        cache: str | os.PathLike | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        spin: bool = True,
    ) -> Classifier:
        """Resolve and verify the card's weights, export them to ONNX once (cached), and
        open an ONNX Runtime session."""
        path = weights_mod.resolve(card.weights, base_dir=base_dir, cache=cache)
        if card.weights.format == "onnx":
            return cls(card, OnnxSession(path, threads=threads, providers=providers, spin=spin), limits=limits)
        sha = card.weights.sha256 or weights_mod.sha256_file(path)
        cache_root = weights_mod.cache_dir(cache)
        onnx_path = cached_onnx(card, path, sha, cache_root)
        try:
            session = OnnxSession(onnx_path, threads=threads, providers=providers, spin=spin)
        except WeightsError:
            # A damaged cached export: make it again, once.
            shutil.rmtree(onnx_path.parent, ignore_errors=True)
            onnx_path = cached_onnx(card, path, sha, cache_root)
            session = OnnxSession(onnx_path, threads=threads, providers=providers, spin=spin)
        return cls(card, session, limits=limits)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.card.labels

    # ------------------------------------------------------------------ steps

    def decode(self, source: ImageSource) -> Image.Image:
        """Open one image safely, letting JPEG decode at reduced size when that loses nothing."""
        return open_image(source, limits=self.limits, draft_size=pp.draft_size(self.card.preprocess))

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        return pp.preprocess(images, self.card.preprocess)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(batch)

    def postprocess(self, logits: np.ndarray, top_k: int) -> list[Classifications]:
        probs = softmax(logits, self.card.temperature)
        return [Classifications.from_probabilities(p, self.labels, top_k, self.name) for p in probs]

    # ------------------------------------------------------------------ API

    def classify(
        self, images: ImageSource | Iterable[ImageSource], *, top_k: int = 5, batch_size: int = 32
    ) -> Classifications | list[Classifications]:
        """Classify one image (returns :class:`Classifications`) or many (returns a list).

        The first bad image raises its typed error (:class:`~visor.errors.VisorError`).
        Use :meth:`classify_iter` to keep going past bad images.
        """
        if not is_batch(images):
            return self._run([self.decode(images)], top_k)[0]
        out: list[Classifications] = []
        for outcome in self.classify_iter(images, top_k=top_k, batch_size=batch_size):
            if outcome.error is not None:
                raise outcome.error
            out.append(outcome.result)
        return out

    def classify_iter(
        self, sources: Iterable[ImageSource], *, top_k: int = 5, batch_size: int = 32
    ) -> Iterator[Outcome]:
        """Classify many images, yielding an :class:`Outcome` per input, in order.

        A bad image yields its error and the rest go on. The next batch is decoded in
        a background thread while the current one is inferred.
        """
        return outcomes(self.decode, lambda images: self._run(images, top_k), sources, batch_size)

    def predict_logits(self, sources: Iterable[ImageSource], *, batch_size: int = 32) -> np.ndarray:
        """Raw logits ``(N, num_classes)`` (before temperature), for evaluation and calibration.

        The first bad image raises its typed error.
        """
        out = [np.zeros((0, self.card.num_classes), np.float32)]
        for _, decoded in self.decoded_batches(sources, batch_size):
            for d in decoded:
                if isinstance(d, VisorError):
                    raise d
            out.append(self.logits(self.preprocess(decoded)))
        return np.concatenate(out)

    def predict_proba(self, sources: Iterable[ImageSource], *, batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``(N, num_classes)`` with the card's temperature applied."""
        return softmax(self.predict_logits(sources, batch_size=batch_size), self.card.temperature)

    # ------------------------------------------------------------------ internals

    def decoded_batches(self, sources: Iterable[ImageSource], batch_size: int):
        """(sources, decoded images or typed errors) per batch, decoding ahead in a thread."""
        return decoded_batches(self.decode, sources, batch_size)

    def _run(self, images: Sequence[Image.Image], top_k: int) -> list[Classifications]:
        return self.postprocess(self.logits(self.preprocess(images)), top_k)

    def __repr__(self) -> str:
        return f"Classifier({self.name!r}, session={self.session.path!r})"

