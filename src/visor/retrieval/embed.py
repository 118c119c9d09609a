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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from visor.errors import ConfigError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource
from visor.io.files import PUBLIC, atomic_path
from visor.models.batching import Outcome, is_batch, outcomes
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
    model = onnx.load(os.fspath(src))
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


class Embedder:
    """Embeds images with a classifier's pre-logit features (L2-normalised float32 vectors).

    ``Embedder("efficientnet_lite0")``, a trained run folder, or a loaded :class:`~visor.Classifier`.
    Images are preprocessed as the card says, except that a centre crop becomes a resize of
    the whole image (see the module notes).
    """

    def __init__(self, model: Any = "efficientnet_lite0", *, limits: ImageLimits = DEFAULT_LIMITS,
                 threads: int | None = None, cache: str | os.PathLike | None = None, spin: bool = True) -> None:
        import visor
        from visor.models.classifier import Classifier

        clf = model if isinstance(model, Classifier) else visor.load(model, limits=limits, threads=threads,
                                                                      cache_dir=cache)
        if not isinstance(clf, Classifier):
            raise ConfigError(f"{clf.card.name} is a {clf.card.task} model; embeddings need a classifier")
        self.classifier = clf
        self.path = embedding_onnx(clf.session.path, cache=cache)
        self._session = OnnxSession(self.path, threads=threads, spin=spin)._session
        self._input = self._session.get_inputs()[0].name
        pp_cfg = clf.card.preprocess
        self.preprocess_config = (dataclasses.replace(pp_cfg, resize="squash", crop_pct=1.0)
                                  if pp_cfg.resize == "center_crop" else pp_cfg)

    @property
    def name(self) -> str:
        return self.classifier.name

    @property
    def dim(self) -> int:
        return int(self.features(self.preprocess([_blank(self.classifier.card.preprocess.input_size)]))[0].shape[1])

    def preprocess(self, images: list) -> np.ndarray:
        from visor.models import preprocess as pp

        return pp.preprocess(images, self.preprocess_config)

    def features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L2-normalised features, logits) for a preprocessed batch."""
        logits, feats = self._session.run([self.classifier.session.output_name, FEATURES_OUTPUT],
                                          {self._input: batch})
        feats = np.asarray(feats, np.float32)
        if feats.ndim == 4:
            feats = gem(feats)
        return l2_normalize(feats), np.asarray(logits, np.float32)

    def _run(self, images: list) -> list[np.ndarray]:
        feats, _ = self.features(self.preprocess(images))
        return list(feats)

    def embed(self, images: ImageSource | Iterable[ImageSource], *, batch_size: int = 32) -> np.ndarray:
        """``(D,)`` for one image or ``(N, D)`` for many; the first bad image raises its typed error."""
        if not is_batch(images):
            return self._run([self.classifier.decode(images)])[0]
        rows = []
        for outcome in self.embed_iter(images, batch_size=batch_size):
            if outcome.error is not None:
                raise outcome.error
            rows.append(outcome.result)
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def embed_iter(self, sources: Iterable[ImageSource], *, batch_size: int = 32) -> Iterator[Outcome]:
        """An :class:`Outcome` per image (its vector, or its typed error), in order."""
        return outcomes(self.classifier.decode, self._run, sources, batch_size)


def _blank(size: tuple[int, int]):
    from PIL import Image

    h, w = size
    return Image.new("RGB", (w, h), (128, 128, 128))


def embed(images: ImageSource | Iterable[ImageSource], model: Any = "efficientnet_lite0", *,
          embedder: Embedder | None = None, batch_size: int = 32) -> np.ndarray:
    """L2-normalised embeddings of one image ``(D,)`` or many ``(N, D)`` (see :class:`Embedder`)."""
    return (embedder or Embedder(model)).embed(images, batch_size=batch_size)


__all__ = ["Embedder", "embed", "embedding_onnx", "feature_tensor", "l2_normalize"]
