"""ClassificationDataset: folder layouts, manifests (CSV / JSON Lines), views and validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.data import ClassificationDataset, Sample
from visor.errors import ConfigError, InvalidInput


def make_image(path: Path, value: int, fmt: str | None = None) -> Path:
    """An 8x8 image of one grey level, so files with different values differ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path, format=fmt)
    return path


@pytest.fixture
def class_tree(tmp_path) -> Path:
    """root/<class>/...: a=3 (one nested, one .JPG), b=2, c=1, plus files that are not samples."""
    root = tmp_path / "photos"
    make_image(root / "a" / "1.png", 1)
    make_image(root / "a" / "2.JPG", 2, "JPEG")
    make_image(root / "a" / "nested" / "3.jpeg", 3, "JPEG")
    make_image(root / "b" / "1.png", 4)
    make_image(root / "b" / "2.webp", 5)
    make_image(root / "c" / "1.bmp", 6)
    make_image(root / "c" / ".hidden.png", 7)  # hidden file: skipped
    make_image(root / "c" / ".cache" / "x.png", 8)  # hidden folder: skipped
    make_image(root / "loose.png", 9)  # not in a class folder: skipped
    (root / "b" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()  # no images: not a class
    return root


@pytest.fixture
def split_tree(tmp_path) -> Path:
    """root/<split>/<class>/...: train a=2 b=1, val a=1 (no b), and a classes.json file."""
    root = tmp_path / "ds"
    make_image(root / "train" / "a" / "1.png", 1)
    make_image(root / "train" / "a" / "2.png", 2)
    make_image(root / "train" / "b" / "1.png", 3)
    make_image(root / "val" / "a" / "1.png", 4)
    (root / "classes.json").write_text("{}")
    return root


def rel(ds: ClassificationDataset, root: Path) -> list[str]:
    return [s.path.relative_to(root).as_posix() for s in ds.samples]


# --------------------------------------------------------------------------- folders


def test_from_folder_class_layout(class_tree):
    ds = ClassificationDataset.from_folder(class_tree)
    assert ds.classes == ("a", "b", "c")
    assert rel(ds, class_tree) == ["a/1.png", "a/2.JPG", "a/nested/3.jpeg", "b/1.png", "b/2.webp", "c/1.bmp"]
    assert [s.label for s in ds] == ["a", "a", "a", "b", "b", "c"]
    assert all(s.split is None and s.metadata == {} and s.path.is_absolute() for s in ds)
    assert len(ds) == 6 and ds.splits == ()
    assert ds.class_counts() == {"a": 3, "b": 2, "c": 1}
    assert ds.root == class_tree
    targets = ds.targets()
    assert targets.dtype == np.int64 and targets.tolist() == [0, 0, 0, 1, 1, 2]


def test_from_folder_relative_root_gives_absolute_paths(class_tree, monkeypatch):
    monkeypatch.chdir(class_tree.parent)
    ds = ClassificationDataset.from_folder("photos")
    assert ds.samples[0].path == class_tree / "a" / "1.png"


def test_from_folder_split_layout(split_tree):
    ds = ClassificationDataset.from_folder(split_tree)
    assert ds.classes == ("a", "b")
    assert ds.splits == ("train", "val")
    assert rel(ds, split_tree) == ["train/a/1.png", "train/a/2.png", "train/b/1.png", "val/a/1.png"]
    assert [s.split for s in ds] == ["train", "train", "train", "val"]
    val = ds.subset("val")
    assert val.classes == ("a", "b") and val.class_counts() == {"a": 1, "b": 0}
    assert val.targets().tolist() == [0]
    test = ds.subset("test")
    assert len(test) == 0 and test.targets().shape == (0,) and test.class_counts() == {"a": 0, "b": 0}


def test_split_names_in_canonical_order(tmp_path):
    for i, split in enumerate(("test", "train", "val")):
        make_image(tmp_path / split / "a" / "x.png", i)
    ds = ClassificationDataset.from_folder(tmp_path)
    assert [s.split for s in ds] == ["train", "val", "test"]
    assert ds.splits == ("train", "val", "test")


def test_a_folder_beside_the_splits_makes_them_classes(split_tree):
    make_image(split_tree / "other" / "x.png", 9)
    ds = ClassificationDataset.from_folder(split_tree)
    assert ds.classes == ("other", "train", "val") and ds.splits == ()
    assert ds.class_counts() == {"other": 1, "train": 3, "val": 1}


def test_from_folder_errors(tmp_path):
    with pytest.raises(InvalidInput, match="no images found"):
        ClassificationDataset.from_folder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("text")
    with pytest.raises(InvalidInput, match="no images found"):
        ClassificationDataset.from_folder(tmp_path)
    with pytest.raises(InvalidInput, match="not a folder"):
        ClassificationDataset.from_folder(tmp_path / "missing")


def test_imagenette_dev(shared_data):
    root = shared_data("imagenette-dev")
    ds = ClassificationDataset.from_folder(root)
    assert len(ds) == 450 and len(ds.classes) == 10
    assert ds.classes == tuple(sorted(json.loads((root / "classes.json").read_text())))
    assert ds.splits == ("train", "val")
    assert ds.subset("train").class_counts() == dict.fromkeys(ds.classes, 30)
    assert ds.subset("val").class_counts() == dict.fromkeys(ds.classes, 15)
    assert np.bincount(ds.targets()).tolist() == [45] * 10


# --------------------------------------------------------------------------- manifests


def test_csv_round_trip_relative_paths_and_metadata(split_tree):
    ds = ClassificationDataset.from_folder(split_tree)
    samples = list(ds.samples)
    samples[0] = Sample(samples[0].path, "a", "train", {"source": "web", "note": "x, \"quoted\""})
    samples[3] = Sample(samples[3].path, "a", None, {"source": "camera"})
    ds = ClassificationDataset.from_samples(samples, root=split_tree)
    out = ds.to_manifest(split_tree / "manifest.csv")
    assert out == split_tree / "manifest.csv"
    assert out.read_text().splitlines() == [
        "path,label,split,note,source",
        'train/a/1.png,a,train,"x, ""quoted""",web',
        "train/a/2.png,a,train,,",
        "train/b/1.png,b,train,,",
        "val/a/1.png,a,,,camera",
    ]
    back = ClassificationDataset.from_manifest(out)
    assert back == ds
    assert back.samples[0].metadata == {"source": "web", "note": 'x, "quoted"'}
    assert back.samples[1].metadata == {} and back.samples[3].split is None
    assert back.root == split_tree


def test_jsonl_round_trip(split_tree):
    ds = ClassificationDataset.from_folder(split_tree)
    samples = [Sample(s.path, s.label, s.split, {"id": str(i)} if i % 2 else {}) for i, s in enumerate(ds)]
    ds = ClassificationDataset.from_samples(samples)
    out = ds.to_manifest(split_tree / "sub" / "m.jsonl")  # parent folder created; paths outside it stay absolute
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[1] == {"path": str(split_tree / "train/a/2.png"), "label": "a", "split": "train", "id": "1"}
    assert lines[0] == {"path": str(split_tree / "train/a/1.png"), "label": "a", "split": "train"}
    assert ClassificationDataset.from_manifest(out) == ds
    assert not [p for p in out.parent.iterdir() if p.name != "m.jsonl"]  # no temp file left behind


def test_manifest_paths_resolve_against_its_folder(tmp_path, monkeypatch):
    (tmp_path / "lists").mkdir()
    manifest = tmp_path / "lists" / "m.csv"
    manifest.write_text("path,label,split\n../img/x.jpg,cat,val\nsub/y.jpg,dog,\n/abs/z.jpg,dog,test\n")
    monkeypatch.chdir("/")
    ds = ClassificationDataset.load(manifest)
    assert [s.path for s in ds] == [tmp_path / "img/x.jpg", tmp_path / "lists/sub/y.jpg", Path("/abs/z.jpg")]
    assert [s.split for s in ds] == ["val", None, "test"]
    assert ds.classes == ("cat", "dog") and ds.splits == ("val", "test")


def test_manifest_overwrite_is_atomic_replace(tmp_path):
    ds = ClassificationDataset.from_samples([Sample(tmp_path / "x.jpg", "cat")])
    out = tmp_path / "m.csv"
    out.write_text("old contents")
    ds.to_manifest(out)
    assert out.read_text() == "path,label,split\nx.jpg,cat,\n"
    assert sorted(os.listdir(tmp_path)) == ["m.csv"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", "path,split\nx.jpg,train\n", "lacks required column\\(s\\) 'label'"),
        ("m.csv", "x.jpg,cat\ny.jpg,dog\n", "'path', 'label'"),
        ("m.csv", "", "header row"),
        ("m.csv", "path,label,split\nx.jpg,cat,Train\n", "m.csv:2: unknown split.*Did you mean 'train'"),
        ("m.csv", "path,label,split\nx.jpg,cat,validation\n", "expected one of train, val, test"),
        ("m.csv", "path,label\nx.jpg,cat,extra\n", "m.csv:2: 3 fields"),
        ("m.csv", "path,label\nx.jpg,\n", "empty label"),
        ("m.csv", "path,label,label\nx.jpg,a,b\n", "repeats column"),
        ("m.jsonl", '{"path": "x.jpg", "label": "a"}\n{"path": "y.jpg"\n', "m.jsonl:2: not valid JSON"),
        ("m.jsonl", '{"path": "x.jpg"}\n', "m.jsonl:1: missing required key\\(s\\) 'label'"),
        ("m.jsonl", '{"path": "x.jpg", "label": "a", "split": "tset"}\n', "Did you mean 'test'"),
        ("m.jsonl", '{"path": "x.jpg", "label": 3}\n', "'label' must be a string"),
        ("m.jsonl", "[1, 2]\n", "expected a JSON object"),
    ],
)
def test_bad_manifests_raise_config_error(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        ClassificationDataset.from_manifest(tmp_path / name)


def test_jsonl_null_split_and_blank_lines(tmp_path):
    lines = ['{"path": "x.jpg", "label": "a", "split": null}', "", '{"path": "y.jpg", "label": "b"}']
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    ds = ClassificationDataset.from_manifest(tmp_path / "m.jsonl")
    assert [(s.path.name, s.label, s.split) for s in ds] == [("x.jpg", "a", None), ("y.jpg", "b", None)]


def test_load_dispatch_and_errors(class_tree, tmp_path):
    assert len(ClassificationDataset.load(class_tree)) == 6
    (tmp_path / "m.JSONL").write_text('{"path": "x.jpg", "label": "a"}\n')
    assert len(ClassificationDataset.load(tmp_path / "m.JSONL")) == 1
    (tmp_path / "list.txt").write_text("x.jpg a\n")
    with pytest.raises(InvalidInput, match="neither a folder nor"):
        ClassificationDataset.load(tmp_path / "list.txt")
    with pytest.raises(InvalidInput, match="no such folder or manifest"):
        ClassificationDataset.load(tmp_path / "nothing")
    with pytest.raises(InvalidInput, match="no such manifest"):
        ClassificationDataset.load(tmp_path / "nothing.csv")
    (tmp_path / "header-only.csv").write_text("path,label\n")
    with pytest.raises(InvalidInput, match="lists no samples"):
        ClassificationDataset.load(tmp_path / "header-only.csv")
    with pytest.raises(ConfigError, match=r"must end in \.csv or \.jsonl"):
        ClassificationDataset.load(class_tree).to_manifest(tmp_path / "out.json")


# --------------------------------------------------------------------------- validation


def test_sample_validation():
    s = Sample("a/x.jpg", "cat", "val", {"k": "v"})
    assert s.path == Path("a/x.jpg") and hash(s) == hash(Sample(Path("a/x.jpg"), "cat", "val"))
    meta = {"k": "v"}
    s = Sample("x.jpg", "cat", metadata=meta)
    meta["k"] = "changed"
    assert s.metadata == {"k": "v"}
    with pytest.raises(ConfigError, match="Did you mean 'val'"):
        Sample("x.jpg", "cat", "valid")
    with pytest.raises(InvalidInput, match="non-empty string"):
        Sample("x.jpg", "")
    with pytest.raises(InvalidInput, match="reserved"):
        Sample("x.jpg", "cat", metadata={"split": "train"})
    with pytest.raises(InvalidInput, match="must be strings"):
        Sample("x.jpg", "cat", metadata={"n": 1})


def test_dataset_validation():
    a, b = Sample("x.jpg", "cat"), Sample("y.jpg", "dog")
    with pytest.raises(InvalidInput, match="label 'dog', which is not among the 1 classes"):
        ClassificationDataset((a, b), ("cat",))
    with pytest.raises(InvalidInput, match="unique; repeated: 'cat'"):
        ClassificationDataset((a,), ("cat", "cat"))
    with pytest.raises(InvalidInput, match="appears more than once"):
        ClassificationDataset((a, Sample("x.jpg", "cat", "val")), ("cat",))
    ds = ClassificationDataset([b, a], ["dog", "cat", "bird"])  # explicit classes keep their order
    assert ds.samples == (b, a) and ds.classes == ("dog", "cat", "bird")
    assert ds.targets().tolist() == [0, 1] and ds.class_counts() == {"dog": 1, "cat": 1, "bird": 0}
    assert ds[1] == a
    assert ClassificationDataset.from_samples([b, a]).classes == ("cat", "dog")
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        ds.subset("dev")
