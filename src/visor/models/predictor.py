"""The one inference pipeline every visor model family shares.

A :class:`Predictor` is a model card plus an ONNX Runtime session, and four steps:

``decode(source)``
    one image source (path, bytes, file, ndarray, PIL) to an RGB PIL image, through
    :func:`visor.io.open_image` with the predictor's limits (JPEG draft decoding when the family
    allows it: ``jpeg_draft``);
``prepare(images) -> (batch, metas)``
    the model input built only from ``card.preprocess`` (centre crop / squash / letterbox,
    mean/std, ``channel_order``, ``layout``), and per image its
    :class:`~visor.models.preprocess.Geometry` (how its pixels map into the input);
``infer(batch)``
    the model outputs (ONNX Runtime; a graph with a fixed batch size is fed in slices);
``postprocess(outputs, metas, **options) -> list[R]``
    one result per image: the only step a family must write.

On top: :meth:`Predictor.predict` (one source -> one result, a list -> a list; the first bad
image raises its typed error), :meth:`Predictor.predict_iter` (an :class:`Outcome` per source, in
order, going past bad inputs while the next batch is decoded and prepared in a thread) and
:meth:`Predictor.from_card` (weights resolved and verified, PyTorch weights exported to ONNX once,
cached, rebuilt once when the cached export is damaged).

A new family is one subclass (``task``, ``postprocess``, perhaps ``check_card``) and one entry in
the task registry (:mod:`visor.models.tasks`); :func:`visor.load` then builds it from any card of
that task.

``prepare`` is the pipeline's preprocessing step; the older name ``preprocess`` stays what it was
on each family (the classifier's returns the batch alone, the detector's the batch and its
geometry) for the callers that use it.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from PIL import Image

from visor.config import suggest
from visor.errors import ConfigError, WeightsError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, open_image
from visor.models import preprocess as pp
from visor.models import weights as weights_mod
from visor.models.batching import Outcome, check_batch_size, decoded_batches, is_batch, outcomes
from visor.models.card import ModelCard, Preprocess
from visor.models.onnx_import import warn_if_agpl
from visor.models.runtime import OnnxSession

R = TypeVar("R")


def onnx_weights(card: ModelCard, *, base_dir: str | os.PathLike | None = None,
                 cache: str | os.PathLike | None = None) -> tuple[Path, Callable[[], Path] | None]:
    """The card's weights as an ONNX file, and how to rebuild it (None when the weights are ONNX already).

    Weights are resolved and sha256-verified (:func:`visor.models.weights.resolve`); PyTorch or
    safetensors weights are exported to ONNX once into the cache (:func:`visor.models.export.cached_onnx`).
    The rebuild callable removes a (damaged) cached export and makes it again.
    """
    path = weights_mod.resolve(card.weights, base_dir=base_dir, cache=cache)
    if card.weights.format == "onnx":
        return path, None
    from visor.models.export import cached_onnx  # the exporter loads architectures: only for non-ONNX weights

    sha = card.weights.sha256 or weights_mod.sha256_file(path)
    cache_root = weights_mod.cache_dir(cache)
    exported = cached_onnx(card, path, sha, cache_root)

    def rebuild() -> Path:
        shutil.rmtree(exported.parent, ignore_errors=True)
        return cached_onnx(card, path, sha, cache_root)

    return exported, rebuild


class Predictor(Generic[R]):
    """A model card plus an ONNX Runtime session, run as decode -> prepare -> infer -> postprocess.

    Subclasses set ``task`` (the card task they run, a key of the task registry) and write
    :meth:`postprocess`; the rest comes from the card. Build one with :func:`visor.load` (or
    :meth:`from_card`) and reuse it: loading verifies the weights and starts a session, which costs
    far more than one prediction.
    """

    task: ClassVar[str]
    """The card task this family runs (``"classification"``, ``"detection"``...)."""
    card_tasks: ClassVar[tuple[str, ...]] = ()
    """Card tasks the constructor accepts; empty means ``(task,)``."""
    default_batch_size: ClassVar[int] = 32
    """Images per batch in :meth:`predict` and :meth:`predict_iter` unless ``batch_size`` is given."""
    jpeg_draft: ClassVar[bool] = False
    """Let the JPEG decoder shrink large images (by 1/2, 1/4, 1/8) while keeping at least the input's
    resolution: faster, but results are then in the reduced image's pixels. Families whose results
    are in image pixels (boxes, masks) leave it off."""

    def __init__(self, card: ModelCard, session: OnnxSession, *, limits: ImageLimits = DEFAULT_LIMITS,
                 max_batch: int | None = None) -> None:
        self.check_card(card)
        self._card = card
        self._session = session
        self.limits = limits
        self.max_batch = max_batch if max_batch is not None else session.fixed_batch
        """Largest batch one session run takes (the graph's fixed batch size), or None for any."""

    # ------------------------------------------------------------------ construction

    @classmethod
    def accepted_tasks(cls) -> tuple[str, ...]:
        return cls.card_tasks or (cls.task,)

    @classmethod
    def check_card(cls, card: ModelCard) -> None:
        """Refuse a card this family cannot run (:class:`ConfigError`); subclasses add their checks."""
        if card.task not in cls.accepted_tasks():
            wanted = " or ".join(cls.accepted_tasks())
            raise ConfigError(f"{card.name} is a {card.task} model, not a {wanted} model ({cls.__name__})")

    @classmethod
    def graph(cls, onnx_path: Path, *, cache: str | os.PathLike | None = None) -> Path:
        """The ONNX file the session opens, given the card's (exported) ONNX: the same file, unless a
        family rewrites the graph (the embedder adds a features output)."""
        return onnx_path

    @classmethod
    def open_session(
        cls,
        card: ModelCard,
        *,
        base_dir: str | os.PathLike | None = None,
        cache: str | os.PathLike | None = None,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        spin: bool = True,
    ) -> OnnxSession:
        """An ONNX Runtime session on the card's weights (see :func:`onnx_weights`); a cached export
        that ONNX Runtime cannot load is made again, once."""
        path, rebuild = onnx_weights(card, base_dir=base_dir, cache=cache)

        def open_(onnx_path: Path) -> OnnxSession:
            return OnnxSession(cls.graph(onnx_path, cache=cache), threads=threads, providers=providers, spin=spin)

        if rebuild is None:
            return open_(path)
        try:
            return open_(path)
        except WeightsError:  # a damaged cached export: make it again, once
            return open_(rebuild())

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
        warn_license: bool = True,
        **options: Any,
    ) -> Any:
        """Check the card, resolve and verify its weights (exporting PyTorch weights to ONNX once,
        cached), open an ONNX Runtime session and build the predictor (``options`` go to the
        constructor). ``base_dir`` is the folder the card was read from. Models under the AGPL warn
        (:class:`~visor.models.onnx_import.LicenseWarning`) unless ``warn_license=False``.
        ``spin=False`` keeps ONNX Runtime's idle threads from busy-waiting (see :class:`OnnxSession`)."""
        cls.check_card(card)
        if warn_license:
            warn_if_agpl(card, stacklevel=3)
        session = cls.open_session(card, base_dir=base_dir, cache=cache, threads=threads, providers=providers,
                                   spin=spin)
        return cls(card, session, limits=limits, **options)

    # ------------------------------------------------------------------ properties

    @property
    def card(self) -> ModelCard:
        return self._card

    @property
    def session(self) -> OnnxSession:
        return self._session

    @property
    def name(self) -> str:
        return self._card.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self._card.labels

    @property
    def preprocess_config(self) -> Preprocess:
        """How images become the model input (the card's :class:`Preprocess` unless a family changes it)."""
        return self._card.preprocess

    # ------------------------------------------------------------------ steps

    def decode(self, source: ImageSource) -> Image.Image:
        """Open one image safely (size caps, format allow-list, EXIF, RGB)."""
        draft = pp.draft_size(self.preprocess_config) if self.jpeg_draft else None
        return open_image(source, limits=self.limits, draft_size=draft)

    def prepare(self, images: Sequence[Image.Image | np.ndarray]) -> tuple[np.ndarray, list[pp.Geometry]]:
        """RGB images to ``(model input batch, geometry per image)``, from the card's preprocessing only."""
        return pp.prepare_batch(images, self.preprocess_config)

    def infer(self, batch: np.ndarray) -> Any:
        """The model output for a prepared batch (the graph's first output), in slices of ``max_batch``."""
        step = self.max_batch or len(batch) or 1
        if len(batch) <= step:
            return self._session.run(batch)
        return np.concatenate([self._session.run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def postprocess(self, outputs: Any, metas: Sequence[Any], **options: Any) -> list[R]:
        """Model outputs to one result per image. Every family writes this."""
        raise NotImplementedError(f"{type(self).__name__} must define postprocess()")

    def check_options(self, **options: Any) -> dict[str, Any]:
        """Validate the options of :meth:`predict` once, before any image is read: names :meth:`postprocess`
        does not take raise :class:`ConfigError` (with a suggestion). Families check values here too."""
        params = list(inspect.signature(self.postprocess).parameters.values())[2:]
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return options
        known = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for key in options:
            if key not in known:
                raise ConfigError(f"{type(self).__name__} has no option {key!r}.{suggest(key, known)} "
                                  f"Options: {', '.join(known) or 'none'}")
        return options

    def run(self, images: Sequence[Image.Image | np.ndarray], **options: Any) -> list[R]:
        """prepare -> infer -> postprocess for decoded images (options already checked)."""
        return self.run_prepared(self.prepare(images), **options)

    def run_prepared(self, prepared: tuple[Any, Sequence[Any]], **options: Any) -> list[R]:
        """infer -> postprocess for what :meth:`prepare` returned (options already checked)."""
        batch, metas = prepared
        return self.postprocess(self.infer(batch), metas, **options)

    # ------------------------------------------------------------------ API

    def predict(self, images: ImageSource | Iterable[ImageSource], *, batch_size: int | None = None,
                **options: Any) -> R | list[R]:
        """One image source gives one result; a list (or a 4-D array) gives a list, in order.

        The first bad image raises its typed error (:class:`~visor.errors.VisorError`); use
        :meth:`predict_iter` to keep going past bad images.
        """
        checked = self.check_options(**options)
        if not is_batch(images):
            return self.run([self.decode(images)], **checked)[0]
        out: list[R] = []
        for outcome in self._outcomes(images, batch_size, checked):
            if outcome.error is not None:
                raise outcome.error
            out.append(outcome.result)
        return out

    def predict_iter(self, sources: Iterable[ImageSource], *, batch_size: int | None = None,
                     **options: Any) -> Iterator[Outcome]:
        """An :class:`Outcome` per source, in order: its result, or the typed error that stopped it.

        A bad image yields its error and the rest go on. The next batch is decoded and prepared
        (:meth:`prepare`) in a background thread while the current one is inferred, so that with
        ONNX Runtime on fewer threads than cores, decoding and resizing take none of its time.
        """
        return self._outcomes(sources, batch_size, self.check_options(**options))

    def decoded_batches(self, sources: Iterable[ImageSource], batch_size: int | None = None):
        """(sources, decoded images or typed errors) per batch, decoding ahead in a thread."""
        return decoded_batches(self.decode, sources, check_batch_size(batch_size or self.default_batch_size))

    def _outcomes(self, sources: Iterable[ImageSource], batch_size: int | None,
                  options: dict[str, Any]) -> Iterator[Outcome]:
        size = check_batch_size(self.default_batch_size if batch_size is None else batch_size)
        return outcomes(self.decode, lambda prepared: self.run_prepared(prepared, **options), sources, size,
                        prepare=self.prepare)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, session={self._session.path!r})"


__all__ = ["Predictor", "onnx_weights"]
