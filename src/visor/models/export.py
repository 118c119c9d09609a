"""A card's weights as an ONNX model, made once, into the cache.

Architectures with an ONNX builder (EfficientNet-Lite) are built from the state dict with numpy
and ``onnx.helper``, without PyTorch (:func:`visor.models.architectures.build_onnx`); the others
(FCOS from a PyTorch checkpoint) are exported with ``torch.onnx`` and need the ``train`` extra.
Training writes its own ``model.onnx`` with :func:`export_onnx`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from visor.io.files import atomic_write
from visor.models import architectures
from visor.models.card import CARD_FILENAME, ModelCard, WeightsSource
from visor.models.weights import sha256_file

#: Bump when the exported graph changes, so stale cached exports are not reused.
#: 2: EfficientNet-Lite built without PyTorch (SAME padding inside the Conv, no Pad nodes).
EXPORT_VERSION = 2
OPSET = 17
ONNX_FILENAME = "model.onnx"


def export_onnx(model, path: str | os.PathLike, input_size: tuple[int, int], *, opset: int = OPSET) -> Path:
    """Write ``model`` (a PyTorch module) as ONNX with a dynamic batch axis (input ``images``, output ``logits``)."""
    torch = architectures.require_torch("exporting a PyTorch model to ONNX")

    path = Path(path)
    h, w = input_size
    dummy = torch.zeros(1, 3, h, w)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on shape-derived padding constants
        torch.onnx.export(
            model.eval(),
            (dummy,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path


def cached_onnx(card: ModelCard, weights: Path, weights_sha256: str, cache: Path) -> Path:
    """The ONNX export of ``card`` with ``weights``, made on first use; returns its path.

    EfficientNet-Lite is built without PyTorch; an architecture without a builder is exported
    with PyTorch, and without it raises :class:`~visor.errors.ConfigError` ("... needs PyTorch:
    pip install 'visor-vision[train]'").

    Each export is a model folder, ``<cache>/onnx/<key>/`` holding ``model.onnx`` and a
    ``card.json`` that points at it, so ``visor.load(folder)`` runs it without PyTorch.
    The key carries the weights' sha256, the input size and the export version, so
    changing any of them makes a new export. The folder is written under a temporary
    name and renamed into place, so an interrupted export leaves nothing half-written.
    """
    h, w = card.preprocess.input_size
    key = f"{card.architecture}-{weights_sha256[:16]}-{h}x{w}-c{card.num_classes}-v{EXPORT_VERSION}"
    target = cache / "onnx" / key
    if (target / ONNX_FILENAME).is_file():
        return target / ONNX_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    if architectures.has_onnx_builder(card.architecture):
        proto = architectures.build_onnx(card.architecture, weights, num_classes=card.num_classes,
                                         input_size=(h, w), fmt=card.weights.format)
        how = "built as ONNX by visor (without PyTorch)"
        model = None
    else:
        architectures.require_torch(f"exporting {card.architecture} weights ({card.weights.format}) to ONNX")
        proto = None
        how = "exported to ONNX by visor"
        model = architectures.load(
            card.architecture, weights, num_classes=card.num_classes, fmt=card.weights.format
        )
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".part-"))
    try:
        if proto is not None:
            onnx_path = atomic_write(tmp / ONNX_FILENAME, proto.SerializeToString())
        else:
            onnx_path = export_onnx(model, tmp / ONNX_FILENAME, (h, w))
        exported = card.replace(
            weights=WeightsSource(kind="path", location=ONNX_FILENAME, sha256=sha256_file(onnx_path),
                                  format="onnx"),
            source="; ".join(filter(None, [card.source, f"{how} from weights {weights_sha256}"])),
        )
        exported.save(tmp / CARD_FILENAME)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / ONNX_FILENAME).is_file():  # a concurrent export won the race otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / ONNX_FILENAME
