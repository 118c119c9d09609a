"""dataset_stats: counts per split, imbalance, unreadable files, duplicates and leakage."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.data import ClassificationDataset, DatasetStats, Sample, dataset_stats, imbalance_ratio


def make_image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)
    return path


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.fixture
def tree(tmp_path) -> Path:
    """train: a=3 (a2 copies a1), b=2, c=2 (both unreadable); val: a=1, b=1 (a copy of train/a/a0)."""
    root = tmp_path / "ds"
    a0 = make_image(root / "train/a/a0.png", 10)
    a1 = make_image(root / "train/a/a1.png", 11)
    shutil.copy(a1, root / "train/a/a2.png")
    make_image(root / "train/b/b0.png", 20)
    make_image(root / "train/b/b1.png", 21)
    (root / "train/c").mkdir(parents=True)
    (root / "train/c/cut.jpg").write_bytes(truncated_jpeg())
    (root / "train/c/text.jpg").write_text("this is not an image\n")
    make_image(root / "val/a/v0.png", 30)
    (root / "val/b").mkdir(parents=True)
    shutil.copy(a0, root / "val/b/copy.png")
    return root


def test_imbalance_ratio():
    assert imbalance_ratio({"a": 4, "b": 2, "c": 3}) == 2.0
    assert imbalance_ratio({"a": 5, "b": 5}) == 1.0
    assert imbalance_ratio({"a": 5, "b": 0}) == math.inf
    assert math.isnan(imbalance_ratio({}))


def test_stats_finds_every_problem(tree):
    stats = dataset_stats(ClassificationDataset.from_folder(tree))

    def p(rel: str) -> str:
        return str(tree / rel)

    assert stats.class_counts == {
        "all": {"a": 4, "b": 3, "c": 2},
        "train": {"a": 3, "b": 2, "c": 2},
        "val": {"a": 1, "b": 1, "c": 0},
    }
    assert stats.imbalance_ratio == 2.0
    assert [path for path, _ in stats.unreadable] == [p("train/c/cut.jpg"), p("train/c/text.jpg")]
    assert stats.unreadable[0][1].startswith("CorruptImage: cannot decode the image: image file is truncated")
    assert stats.unreadable[1][1] == (
        "UnsupportedFormat: not a supported image (allowed: JPEG, PNG, WebP, BMP, GIF, TIFF)"
    )
    assert stats.duplicates == [[p("train/a/a0.png"), p("val/b/copy.png")], [p("train/a/a1.png"), p("train/a/a2.png")]]
    assert stats.cross_split_duplicates == [[p("train/a/a0.png"), p("val/b/copy.png")]]
    assert stats.label_conflicts == [[p("train/a/a0.png"), p("val/b/copy.png")]]
    assert stats.images_checked and stats.num_samples == 9 and stats.problems == 4


def test_no_check_images_still_finds_duplicates(tree):
    stats = dataset_stats(ClassificationDataset.from_folder(tree), check_images=False)
    assert stats.unreadable == [] and not stats.images_checked
    assert len(stats.duplicates) == 2 and len(stats.cross_split_duplicates) == 1


def test_missing_file_is_unreadable(tmp_path):
    good = make_image(tmp_path / "x.png", 1)
    ds = ClassificationDataset.from_samples([Sample(good, "a"), Sample(tmp_path / "gone.png", "b")])
    stats = dataset_stats(ds)
    assert stats.unreadable == [
        (str(tmp_path / "gone.png"), f"ImageNotFound: cannot read {tmp_path / 'gone.png'}: No such file or directory")
    ]
    assert stats.class_counts == {"all": {"a": 1, "b": 1}} and stats.duplicates == []


def test_to_dict_is_json(tree):
    stats = dataset_stats(ClassificationDataset.from_folder(tree).subset("val"))
    d = json.loads(json.dumps(stats.to_dict()))
    assert d["class_counts"] == {"all": {"a": 1, "b": 1, "c": 0}, "val": {"a": 1, "b": 1, "c": 0}}
    assert d["imbalance_ratio"] is None  # inf: class c has no val samples
    assert d["num_samples"] == 2 and d["unreadable"] == [] and d["duplicates"] == []
    assert d["images_checked"] is True


def test_format_table(tree):
    text = dataset_stats(ClassificationDataset.from_folder(tree)).format_table()
    lines = text.splitlines()
    assert lines[:6] == [
        "class  train  val  all",
        "a          3    1    4",
        "b          2    1    3",
        "c          2    0    2",
        "total      7    2    9",
        "",
    ]
    assert lines[6] == "imbalance ratio: 2.00 (largest class / smallest class)"
    assert lines[7] == "unreadable files: 2"
    assert lines[8].startswith(f"  {tree / 'train/c/cut.jpg'}: CorruptImage: ")
    assert f"duplicates across splits (leakage): 1\n  {tree / 'train/a/a0.png'}, {tree / 'val/b/copy.png'}" in text
    assert lines[-1] == "4 problem(s) found"


def test_format_table_clean_and_unbalanced():
    stats = DatasetStats({"all": {"cat": 3, "dog": 0}}, math.inf, [], [], [])
    assert stats.format_table().splitlines() == [
        "class  all",
        "cat      3",
        "dog      0",
        "total    3",
        "",
        "imbalance ratio: inf (no samples for dog)",
        "unreadable files: 0",
        "duplicate groups (identical bytes): 0",
        "duplicates across splits (leakage): 0",
        "duplicates with different labels: 0",
        "no problems found",
    ]


def test_unsplit_samples_get_their_own_column(tmp_path):
    a = make_image(tmp_path / "a.png", 1)
    b = make_image(tmp_path / "b.png", 2)
    ds = ClassificationDataset.from_samples([Sample(a, "x", "train"), Sample(b, "x")])
    assert dataset_stats(ds).class_counts == {"all": {"x": 2}, "train": {"x": 1}, "unsplit": {"x": 1}}


def test_progress_bar(tree, capsys):
    dataset_stats(ClassificationDataset.from_folder(tree), check_images=False, progress=True)
    assert "9/9" in capsys.readouterr().err
    dataset_stats(ClassificationDataset.from_folder(tree), check_images=False)
    assert capsys.readouterr().err == ""
