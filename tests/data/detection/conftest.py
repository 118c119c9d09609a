"""Helpers for the detection dataset tests: tiny images on disk and a field-by-field dataset comparison."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from visor.data import DetectionDataset


def _make_image(path: Path, width: int, height: int, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (40, 80, 120)).save(path, format=fmt)
    return path


@pytest.fixture
def make_image():
    """``make_image(path, width, height)`` writes a small solid image and returns its path."""
    return _make_image


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0)


def _assert_same(a: DetectionDataset, b: DetectionDataset, *, ids: bool = True, segmentation: bool = True) -> None:
    assert a.classes == b.classes
    if ids:
        assert a.category_ids == b.category_ids
    by_name = {im.name: im for im in b.images}
    assert sorted(by_name) == sorted(im.name for im in a.images)
    for x in a.images:
        y = by_name[x.name]
        assert (x.width, x.height, x.split) == (y.width, y.height, y.split), x.name
        if ids:
            assert x.id == y.id, x.name
        assert len(x.annotations) == len(y.annotations), x.name
        for p, q in zip(x.annotations, y.annotations, strict=True):
            where = f"{x.name} annotation {p.id}"
            assert all(_close(u, v) for u, v in zip(p.xyxy, q.xyxy, strict=True)), (where, p.xyxy, q.xyxy)
            assert (p.class_id, p.iscrowd, p.attributes) == (q.class_id, q.iscrowd, q.attributes), where
            if ids:
                assert (p.id, p.area, p.rle) == (q.id, q.area, q.rle), where
            if segmentation:
                assert [len(s) for s in p.segmentation] == [len(s) for s in q.segmentation], where
                for s, t in zip(p.segmentation, q.segmentation, strict=True):
                    assert all(_close(u, v) for u, v in zip(s, t, strict=True)), where


@pytest.fixture
def assert_same_dataset():
    """``assert_same_dataset(a, b, ids=True, segmentation=True)``: equal up to 1e-6 relative on coordinates."""
    return _assert_same
