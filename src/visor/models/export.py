"""Export a card's PyTorch model to ONNX, once, into the cache."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from visor.models import architectures
from visor.models.card import ModelCard

#: Bump when the exported graph changes, so stale cached exports are not reused.
EXPORT_VERSION = 1
OPSET = 17


def export_onnx(model, path: str | os.PathLike, input_size: tuple[int, int], *, opset: int = OPSET) -> Path:
    """Write ``model`` as ONNX with a dynamic batch axis (input ``images``, output ``logits``)."""
    import torch

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
    """The ONNX export of ``card`` with ``weights``, made on first use.

    The file name carries the weights' sha256, the input size and the export version,
    so changing any of them makes a new export. Writing goes through a temporary file
    and an atomic rename, so an interrupted export leaves no broken file.
    """
    h, w = card.preprocess.input_size
    key = f"{card.architecture}-{weights_sha256[:16]}-{h}x{w}-c{card.num_classes}-v{EXPORT_VERSION}"
    target = cache / "onnx" / f"{key}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    model = architectures.load(
        card.architecture, weights, num_classes=card.num_classes, fmt=card.weights.format
    )
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-", suffix=".onnx")
    os.close(fd)
    try:
        export_onnx(model, tmp, (h, w))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
