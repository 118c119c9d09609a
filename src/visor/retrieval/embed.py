"""Image embeddings: L2-normalised pre-logit features of any classifier.

The classifier's ONNX graph is rewritten once to also return the features that feed its
final classification layer, and cached as ``$VISOR_CACHE/onnx/embed-<sha>/model.onnx``; so
any registry model, trained run folder or imported ONNX classifier can embed.

Two choices differ from classification, both measured on imagenette-dev (450 images, each
against a copy cropped to 80-95%, resized, re-encoded at JPEG quality 30 and brightened or
darkened up to 20%):

* the whole image is resized to the input size (no centre crop), so a cropped copy still
  shows what the original shows: near-duplicate recall@1 0.956 -> 0.993;
* when the graph pools a spatial feature map (global average pooling before the linear
  layer), the map itself is taken and pooled with GeM (generalised mean, p = 3), which
  weighs the strongest local activations more: recall@1 0.998, same-class precision@5 0.942
  (0.959 with the classifier's own preprocessing and average pooling, which finds classes
  better and near-duplicates worse).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from visor.errors import ConfigError, WeightsError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource
from visor.io.files import PUBLIC, atomic_path
from visor.models import load
from visor.models.batching import Outcome, is_batch
from visor.models.card import ModelCard, Preprocess
from visor.models.classifier import Classifier
from visor.models.predictor import Predictor
from visor.models.registry import DEFAULT_CLASSIFIER
from visor.models.runtime import OnnxSession
from visor.models.weights import cache_dir, sha256_file

FEATURES_OUTPUT = "features"
#: Bump when the rewritten graph changes, so stale cached copies are not reused.
EMBED_VERSION = 2
#: Ops that may sit between the pooled features and the logits' Gemm.
_PASS_THROUGH = {"Flatten", "Reshape", "Squeeze", "Identity", "Dropout"}
_GLOBAL_POOL = {"GlobalAveragePool", "ReduceMean"}
#: Generalised-mean pooling exponent for spatial feature maps.
GEM_P = 3.0


def spatial_tensor(model: Any, pooled: str) -> str | None:
    """The 4-D feature map that global average pooling turns into ``pooled``, if that is how it was made."""
    producers = {o: n for n in model.graph.node for o in n.output}
    node = producers.get(pooled)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producers.get(node.input[0])
    return node.input[0] if node is not None and node.op_type in _GLOBAL_POOL else None


def gem(maps: np.ndarray, p: float = GEM_P) -> np.ndarray:
    """Generalised-mean pooling of ``(N, C, H, W)`` non-negative maps to ``(N, C)``."""
    x = np.clip(np.asarray(maps, np.float32), 1e-6, None)
    return np.power(np.mean(np.power(x, p), axis=(2, 3)), 1.0 / p)


def feature_tensor(model: Any) -> str:
    """The name of the tensor feeding the final classification layer of an ONNX classifier."""
    graph = model.graph
    out = graph.output[0].name
    producers = {o: n for n in graph.node for o in n.output}
    node = producers.get(out)
    # logits may come from Gemm, or MatMul (+ Add for the bias)
    if node is not None and node.op_type == "Add":
        node = next((producers[i] for i in node.input if i in producers and producers[i].op_type == "MatMul"), None)
    if node is None or node.op_type not in ("Gemm", "MatMul"):
        found = "nothing" if node is None else node.op_type
        raise ConfigError(f"cannot find the classification layer of this ONNX graph (its output comes from {found}, "
                          "expected Gemm or MatMul): embeddings need a classifier whose last layer is linear")
    return node.input[0]


def embedding_onnx(onnx_path: str | os.PathLike, *, cache: str | os.PathLike | None = None) -> Path:
    """The classifier at ``onnx_path`` with a second output ``features`` (made once, cached)."""
    import onnx

    src = Path(onnx_path)
    key = sha256_file(src)[:24]
    target = cache_dir(cache) / "onnx" / f"embed-{key}-v{EMBED_VERSION}" / "model.onnx"
    if target.is_file():
        return target
    try:
        model = onnx.load(os.fspath(src))
    except Exception as e:  # noqa: BLE001 - protobuf and onnx raise their own errors
        raise WeightsError(f"cannot read ONNX model {src}: {e}") from None
    pooled = feature_tensor(model)
    name = spatial_tensor(model, pooled) or pooled
    model.graph.node.append(onnx.helper.make_node("Identity", [name], [FEATURES_OUTPUT], name="visor_features"))
    model.graph.output.append(onnx.helper.make_tensor_value_info(FEATURES_OUTPUT, onnx.TensorProto.FLOAT, None))
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, permissions=PUBLIC) as tmp:  # a cache other users of the folder may read
        onnx.save(model, os.fspath(tmp))
    return target


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


class Embedder(Predictor[np.ndarray]):
    """Embeds images with a classifier's pre-logit features (L2-normalised float32 vectors).

    ``Embedder("efficientnet_lite0")``, a trained run folder, or a loaded :class:`~visor.Classifier`.
    Images are decoded as the classifier decodes them and preprocessed as its card says, except
    that a centre crop becomes a resize of the whole image (see the module notes). A
    :class:`~visor.models.predictor.Predictor`: :meth:`predict` gives one ``(D,)`` vector per image.
    """

    task: ClassVar[str] = "embedding"
    card_tasks: ClassVar[tuple[str, ...]] = ("classification",)
    default_batch_size: ClassVar[int] = 32
    jpeg_draft: ClassVar[bool] = True

    def __init__(self, model: Any = DEFAULT_CLASSIFIER, *, limits: ImageLimits = DEFAULT_LIMITS,
                 threads: int | None = None, cache: str | os.PathLike | None = None, spin: bool = True) -> None:
        clf = model if isinstance(model, Classifier) else load(model, limits=limits, threads=threads,
                                                               cache_dir=cache)
        if not isinstance(clf, Classifier):
            raise ConfigError(f"{clf.card.name} is a {clf.card.task} model; embeddings need a classifier")
        self.classifier = clf
        self.path = embedding_onnx(clf.session.path, cache=cache)
        super().__init__(clf.card, OnnxSession(self.path, threads=threads, spin=spin), limits=clf.limits)
        pp_cfg = clf.card.preprocess
        self._preprocess_config = (dataclasses.replace(pp_cfg, resize="squash", crop_pct=1.0)
                                   if pp_cfg.resize == "center_crop" else pp_cfg)

    @classmethod
    def from_card(cls, card: ModelCard, *, base_dir: str | os.PathLike | None = None,
                  cache: str | os.PathLike | None = None, limits: ImageLimits = DEFAULT_LIMITS,
                  threads: int | None = None, providers: Sequence[str] | None = None, spin: bool = True,
                  warn_license: bool = True, **options: Any) -> Embedder:
        """The embedder of a classification card (the classifier is loaded first, then its graph rewritten)."""
        clf = Classifier.from_card(card, base_dir=base_dir, cache=cache, limits=limits, threads=threads,
                                   providers=providers, spin=spin, warn_license=warn_license)
        return cls(clf, limits=limits, threads=threads, cache=cache, spin=spin, **options)

    @property
    def preprocess_config(self) -> Preprocess:
        return self._preprocess_config

    @property
    def dim(self) -> int:
        return int(self.features(self.preprocess([_blank(self.card.preprocess.input_size)]))[0].shape[1])

    def decode(self, source: ImageSource) -> Image.Image:
        """Decoded as the classifier decodes (so embeddings match its features exactly)."""
        return self.classifier.decode(source)

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The model input batch alone (:meth:`prepare` gives the geometry too)."""
        return self.prepare(images)[0]

    def features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L2-normalised features, logits) for a preprocessed batch."""
        logits, feats = self.session.run_outputs([self.classifier.session.output_name, FEATURES_OUTPUT], batch)
        feats = np.asarray(feats, np.float32)
        if feats.ndim == 4:
            feats = gem(feats)
        return l2_normalize(feats), np.asarray(logits, np.float32)

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L2-normalised features, logits), as :meth:`features`."""
        return self.features(batch)

    def postprocess(self, outputs: tuple[np.ndarray, np.ndarray], metas: Sequence[Any]) -> list[np.ndarray]:
        return list(outputs[0])

    def embed(self, images: ImageSource | Iterable[ImageSource], *, batch_size: int = 32) -> np.ndarray:
        """``(D,)`` for one image or ``(N, D)`` for many; the first bad image raises its typed error."""
        if not is_batch(images):
            return self.predict(images)
        rows = self.predict(images, batch_size=batch_size)
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def embed_iter(self, sources: Iterable[ImageSource], *, batch_size: int = 32) -> Iterator[Outcome]:
        """An :class:`Outcome` per image (its vector, or its typed error), in order."""
        return self.predict_iter(sources, batch_size=batch_size)


def _blank(size: tuple[int, int]) -> Image.Image:
    h, w = size
    return Image.new("RGB", (w, h), (128, 128, 128))


def embed(images: ImageSource | Iterable[ImageSource], model: Any = DEFAULT_CLASSIFIER, *,
          embedder: Embedder | None = None, batch_size: int = 32) -> np.ndarray:
    """L2-normalised embeddings of one image ``(D,)`` or many ``(N, D)`` (see :class:`Embedder`)."""
    return (embedder or Embedder(model)).embed(images, batch_size=batch_size)


__all__ = ["Embedder", "embed", "embedding_onnx", "feature_tensor", "l2_normalize"]
