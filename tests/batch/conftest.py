"""Fixtures of the batch tests: a folder of 60 imagenette-dev images plus bad files, and the reference
predictions of ``Classifier.classify`` on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from batch_helpers import COCO_IMAGES, PER_CLASS, make_bad_files


@pytest.fixture(scope="session")
def dev60(imagenette) -> list[Path]:
    """60 imagenette-dev training images, 6 per class."""
    by_class: dict[int, list[Path]] = {}
    for path, cls in imagenette:
        if "/train/" in path.as_posix():
            by_class.setdefault(cls, []).append(path)
    return [p for cls in sorted(by_class) for p in by_class[cls][:PER_CLASS]]


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory, dev60) -> tuple[Path, list[str], dict[str, str]]:
    """(folder, absolute paths of its good images, {bad path: code}): symlinks to ``dev60`` in class
    subfolders, and the bad files at the top."""
    root = tmp_path_factory.mktemp("batch-images") / "images"
    good = []
    for p in dev60:
        link = root / p.parent.name / p.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(p)
        good.append(os.path.abspath(link))
    bad = make_bad_files(root, dev60[0])
    return root, sorted(good), bad


@pytest.fixture(scope="session")
def reference(classifier, image_folder) -> dict[str, dict]:
    """``Classifier.classify`` on the good images: {path: {"class_id", "label", "confidence"} lists}."""
    _, good, _ = image_folder
    out = {}
    for path, c in zip(good, classifier.classify(good, top_k=5), strict=True):
        out[path] = {"class_id": c.class_id.tolist(), "label": c.label.tolist(), "confidence": c.confidence.tolist()}
    return out


@pytest.fixture(scope="session")
def coco_images(shared_data) -> list[str]:
    """Absolute paths of the coco128 images of COCO_IMAGES, the school bus first."""
    root = shared_data("coco128") / "images"
    return [os.path.abspath(root / name) for name in COCO_IMAGES]
