"""What the segmentation tests share (a module of its own, imported by name, as tests/zoo.py):

- a tiny visor-style segmentation run folder made by the test (PyTorch -> ONNX + card.json), for
  ``visor.load(RUN)`` / ``visor segment --model RUN``: seeded and small (two convolutions, output at half the
  input's resolution, 3 classes), exported with a dynamic batch axis, NCHW, ImageNet mean/std, squash to a
  non-square input: the layout of the cards ``visor train segment`` writes;
- COCO's person polygons of coco128 rasterised with pycocotools (the reference for person IoU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

CLASSES = ("background", "thing", "stuff")
INPUT_SIZE = (48, 64)  # (height, width)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_torch_model():
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, len(CLASSES), 1))
    with torch.no_grad():  # a colour-driven model: classes follow the image's colours, so masks have regions
        model[2].weight.mul_(4.0)
    return model.eval()


def make_run_folder(folder: Path):
    """Write ``model.onnx`` + ``card.json`` into ``folder``; returns the torch model (the reference)."""
    from visor.models.card import ModelCard, Preprocess, WeightsSource
    from visor.models.export import export_onnx
    from visor.models.weights import sha256_file

    model = build_torch_model()
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, folder / "model.onnx", INPUT_SIZE)
    ModelCard(
        name="tiny_segfpn",
        task="segmentation",
        architecture="tiny_conv",
        weights=WeightsSource(kind="path", location="model.onnx", sha256=sha256_file(onnx_path), format="onnx"),
        labels=CLASSES,
        preprocess=Preprocess(input_size=INPUT_SIZE, resize="squash", interpolation="bilinear", mean=IMAGENET_MEAN,
                              std=IMAGENET_STD, layout="nchw"),
        output_format="segmentation_logits",
        license="Apache-2.0",
    ).save(folder)
    return model


def coco_person_masks(coco128: Path) -> dict[str, np.ndarray]:
    """COCO's person polygons (and crowd RLEs) rasterised with pycocotools (a test-only dependency), merged per
    image: {file name: bool (H, W)}."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    data = json.loads((coco128 / "instances.json").read_text())
    person = next(c["id"] for c in data["categories"] if c["name"] == "person")
    images = {im["id"]: im for im in data["images"]}
    out: dict[str, np.ndarray] = {}
    for ann in data["annotations"]:
        if ann["category_id"] != person:
            continue
        im = images[ann["image_id"]]
        h, w = im["height"], im["width"]
        seg = ann["segmentation"]
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = seg
        gt = out.setdefault(im["file_name"], np.zeros((h, w), bool))
        gt |= mask_utils.decode(rle).astype(bool)
    return out
