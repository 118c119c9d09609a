"""``visor data split`` and ``visor data stats``: output, manifests, exit codes."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from visor.cli.data import register
from visor.data import ClassificationDataset
from visor.errors import ConfigError


def run(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="visor")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(list(argv))
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def photos(tmp_path) -> Path:
    """photos/<class>/: a=10, b=5, c=1 distinct PNGs."""
    root = tmp_path / "photos"
    for label, n in (("a", 10), ("b", 5), ("c", 1)):
        (root / label).mkdir(parents=True)
        for i in range(n):
            value = {"a": 0, "b": 100, "c": 200}[label] + i
            Image.new("RGB", (8, 8), (value, 0, 0)).save(root / label / f"{i}.png")
    return root


def test_split_writes_a_manifest(capsys, photos, tmp_path):
    out_file = tmp_path / "split.csv"
    code, out, err = run(capsys, "data", "split", str(photos), "--out", str(out_file), "--seed", "3")
    assert code == 0 and err == ""
    # a: 8/1/1, b: 4/0.5/0.5 -> 4/1/0, c: 1/0/0
    assert out.splitlines() == [
        f"wrote 16 samples in 3 classes to {out_file}",
        "  train  13",
        "  val    2",
        "  test   1",
    ]
    ds = ClassificationDataset.from_manifest(out_file)
    assert ds.subset("train").class_counts() == {"a": 8, "b": 4, "c": 1}
    assert ds.subset("val").class_counts() == {"a": 1, "b": 1, "c": 0}
    assert out_file.read_text().splitlines()[1].startswith("photos/")  # relative to the manifest's folder


def test_split_ratios_and_jsonl(capsys, photos, tmp_path):
    out_file = tmp_path / "m.jsonl"
    code, out, _ = run(capsys, "data", "split", str(photos), "--out", str(out_file), "--ratios", "0.6", "0.4")
    assert code == 0 and out.splitlines()[1:] == ["  train  10", "  val    6"]
    assert ClassificationDataset.load(out_file).splits == ("train", "val")


def test_split_refuses_to_overwrite(capsys, photos, tmp_path):
    out_file = tmp_path / "m.csv"
    out_file.write_text("keep me")
    code, out, err = run(capsys, "data", "split", str(photos), "--out", str(out_file))
    assert code == 1 and out == "" and "exists; use --force" in err
    assert out_file.read_text() == "keep me"
    code, _, _ = run(capsys, "data", "split", str(photos), "--out", str(out_file), "--force")
    assert code == 0 and out_file.read_text().startswith("path,label,split\n")


def test_split_errors(capsys, photos, tmp_path):
    with pytest.raises(ConfigError, match="must sum to 1"):
        run(capsys, "data", "split", str(photos), "--out", str(tmp_path / "m.csv"), "--ratios", "0.5", "0.4")
    code, _, err = run(capsys, "data", "split", str(tmp_path / "missing"), "--out", str(tmp_path / "m.csv"))
    assert code == 1 and "cannot load" in err and "no such folder or manifest" in err
    assert not (tmp_path / "m.csv").exists()


def test_stats_table_and_json(capsys, photos):
    shutil.copy(photos / "a/0.png", photos / "b/copy.png")
    (photos / "c/bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, out, err = run(capsys, "data", "stats", str(photos), "--no-progress")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[:5] == ["class  all", "a       10", "b        6", "c        2", "total   18"]
    assert "imbalance ratio: 5.00 (largest class / smallest class)" in lines
    assert f"  {photos / 'c/bad.png'}: CorruptImage: the image header is damaged" in lines
    assert lines[-1] == "2 problem(s) found"

    code, out, _ = run(capsys, "data", "stats", str(photos), "--json")
    d = json.loads(out)
    assert code == 0 and d["num_samples"] == 18 and d["imbalance_ratio"] == 5.0
    assert d["duplicates"] == [[str(photos / "a/0.png"), str(photos / "b/copy.png")]]
    assert d["label_conflicts"] == d["duplicates"] and d["cross_split_duplicates"] == []
    assert [u["path"] for u in d["unreadable"]] == [str(photos / "c/bad.png")]

    code, out, _ = run(capsys, "data", "stats", str(photos), "--json", "--no-check-images")
    assert code == 0 and json.loads(out)["unreadable"] == []


def test_stats_cannot_load(capsys, tmp_path):
    (tmp_path / "m.csv").write_text("file,class\nx.jpg,a\n")
    code, out, err = run(capsys, "data", "stats", str(tmp_path / "m.csv"))
    assert code == 1 and out == ""
    assert "ConfigError" in err and "lacks required column(s) 'path', 'label'" in err


@pytest.mark.parametrize(
    ("argv", "expected"), [(["split"], "--ratios"), (["stats"], "--no-check-images"), ([], "split")]
)
def test_help(capsys, argv, expected):
    with pytest.raises(SystemExit) as exc:
        run(capsys, "data", *argv, "--help")
    assert exc.value.code == 0 and expected in capsys.readouterr().out
