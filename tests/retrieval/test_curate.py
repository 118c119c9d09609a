"""visor curate on real imagenette-dev images: injected label flips, cross-split leakage,
exact and near duplicates, a corrupt file, the JSON + HTML output and the CLI."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.models.batching import Outcome
from visor.retrieval.curate import curate, out_of_fold_probabilities, similar_pairs, stratified_folds


class CachingEmbedder:
    """Wraps an Embedder and remembers vectors by file content, so each dev image is embedded once
    per test session however many tests copy it."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.cache: dict[str, np.ndarray] = {}

    def embed_iter(self, sources, *, batch_size: int = 32):
        sources = list(sources)
        keys = []
        for s in sources:
            try:
                keys.append(hashlib.sha256(Path(s).read_bytes()).hexdigest())
            except OSError:
                keys.append(None)
        todo = [i for i, k in enumerate(keys) if k is None or k not in self.cache]
        fresh = dict(zip(todo, self.inner.embed_iter([sources[i] for i in todo], batch_size=batch_size),
                         strict=True))
        for i, key in enumerate(keys):
            if i in fresh:
                outcome = fresh[i]
                if outcome.error is None and key is not None:
                    self.cache[key] = outcome.result
                yield outcome
            else:
                yield Outcome(sources[i], result=self.cache[key])


@pytest.fixture(scope="session")
def embedder(visor_cache):
    from visor.retrieval.embed import Embedder

    return CachingEmbedder(Embedder("efficientnet_lite0"))


@pytest.fixture(scope="session")
def dev(shared_data) -> Path:
    return shared_data("imagenette-dev")


def _link_tree(src: Path, dst: Path) -> None:
    """dst/<class>/<file> symlinks to the files of src/<class>/."""
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / folder.name).mkdir(parents=True)
        for f in sorted(folder.iterdir()):
            (dst / folder.name / f.name).symlink_to(f)


def _near_copy(src: Path, dst: Path, *, quality: int = 40, crop: float = 0.02) -> None:
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        dx, dy = int(w * crop), int(h * crop)
        im.crop((dx, dy, w - dx, h - dy)).save(dst, "JPEG", quality=quality)


# --------------------------------------------------------------------------- acceptance


def test_label_flips_rank_in_top_20(tmp_path, dev, embedder):
    root = tmp_path / "flipped"
    _link_tree(dev / "train", root)
    classes = sorted(p.name for p in root.iterdir())
    rng = np.random.default_rng(8)
    flipped = []
    for c in classes:  # one flip from every class, to a random other class
        files = sorted((root / c).iterdir())
        src = files[int(rng.integers(len(files)))]
        target = classes[(classes.index(c) + int(rng.integers(1, len(classes)))) % len(classes)]
        dst = root / target / src.name
        src.rename(dst)
        flipped.append(str(dst))
    assert len(flipped) == 10

    report = curate(root, embedder=embedder, top=20)
    top20 = [m.path for m in report.label_mistakes[:20]]
    found = len(set(top20) & set(flipped))
    print(f"\nlabel flips in the top 20 suspected mistakes: {found} of 10 "
          f"(ranks {sorted(top20.index(p) + 1 for p in flipped if p in top20)})")
    assert found >= 7
    for m in report.label_mistakes:
        if m.path in flipped:  # the suggestion is the true class
            assert m.suggested == next(c for c in classes if (dev / "train" / c / Path(m.path).name).exists())
            assert m.confidence > m.given_probability


def test_cross_split_duplicates_are_leakage(tmp_path, dev, embedder):
    root = tmp_path / "split"
    _link_tree(dev / "train", root / "train")
    _link_tree(dev / "val", root / "val")
    rng = np.random.default_rng(5)
    train_files = sorted((root / "train").glob("*/*"))
    chosen = [train_files[i] for i in rng.choice(len(train_files), 5, replace=False)]
    expected = set()
    for k, src in enumerate(chosen):
        dst = root / "val" / src.parent.name / f"copy_{src.name}"
        if k < 3:
            shutil.copyfile(src, dst)  # byte-identical
        else:
            _near_copy(src, dst, quality=75, crop=0.0)  # re-encoded: a near duplicate, not the same bytes
        expected.add((str(src), str(dst)))

    report = curate(root, embedder=embedder)
    found = {(p.path_a, p.path_b) for p in report.leakage}
    print(f"\nleakage: {len(found & expected)} of 5 injected found, {len(found - expected)} other pairs")
    assert found == expected
    assert sum(p.exact for p in report.leakage) == 3
    assert all(p.split_a == "train" and p.split_b == "val" for p in report.leakage)
    assert report.splits == {"train": 300, "val": 155}
    assert len(report.exact_duplicates) == 3


# --------------------------------------------------------------------------- small dataset, CLI, output


@pytest.fixture(scope="module")
def small(tmp_path_factory, dev):
    """Two classes of 6 images, an exact copy and a near copy of one, and a corrupt file."""
    root = tmp_path_factory.mktemp("small")
    for c in sorted(p.name for p in (dev / "train").iterdir())[:2]:
        (root / c).mkdir()
        for f in sorted((dev / "train" / c).iterdir())[:6]:
            shutil.copyfile(f, root / c / f.name)
    cls = sorted(p.name for p in root.iterdir())[0]
    original = sorted((root / cls).iterdir())[0]
    shutil.copyfile(original, root / cls / "exact_copy.JPEG")
    _near_copy(original, root / cls / "near_copy.jpg", quality=40, crop=0.02)
    (root / cls / "broken.jpg").write_bytes(original.read_bytes()[:300])  # a truncated JPEG
    return root, original


def _run_cli(argv: list[str]) -> tuple[int, str]:
    """``visor ARGV`` through visor.cli.main.main when curate is registered there, else through
    visor.cli.curate.register on a fresh parser; returns (exit status, stdout)."""
    cli_main = importlib.import_module("visor.cli.main")  # visor.cli.main is also a function's name
    sub = next(a for a in cli_main.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if "curate" in sub.choices:
            rc = cli_main.main(argv)
        else:
            from visor.cli import curate as curate_cli

            parser = argparse.ArgumentParser(prog="visor")
            curate_cli.register(parser.add_subparsers(dest="command", required=True))
            args = parser.parse_args(argv)
            rc = args.func(args)
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def cli_run(small, tmp_path_factory, visor_cache):
    root, _ = small
    out = tmp_path_factory.mktemp("curation")
    rc, printed = _run_cli(["curate", str(root), "--out", str(out), "--json", "--no-progress"])
    return rc, printed, out


def test_duplicates_cluster_and_corrupt_file_listed(small, cli_run):
    root, original = small
    rc, printed, out = cli_run
    assert rc == 0
    data = json.loads((out / "curation.json").read_text())
    assert json.loads(printed) == data

    cls = original.parent.name
    trio = {str(original), str(root / cls / "exact_copy.JPEG"), str(root / cls / "near_copy.jpg")}
    clusters = [set(c["paths"]) for c in data["near_duplicates"]]
    assert clusters == [trio]
    assert data["exact_duplicates"] == [sorted([str(original), str(root / cls / "exact_copy.JPEG")])]
    assert data["leakage"] == []  # no splits
    unreadable = {u["path"]: u["error"] for u in data["unreadable"]}
    assert list(unreadable) == [str(root / cls / "broken.jpg")]
    assert unreadable[str(root / cls / "broken.jpg")].startswith("CorruptImage")
    assert data["summary"]["samples"] == 15
    assert len(data["outliers"]) == 14  # every readable image, ranked
    assert data["folds"] == 5 and data["summary"]["oof_accuracy"] is not None


def test_html_is_self_contained(cli_run):
    rc, _, out = cli_run
    assert rc == 0
    page = (out / "curation.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('src="data:image/jpeg;base64,') >= 3
    text = re.sub(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"https?:|//[a-z0-9]|@import|url\(|<link|<script", text, re.IGNORECASE)
    assert not re.search(r"""(?:src|href)\s*=\s*["'][^"']""", text)
    assert "broken.jpg" in page


def test_cli_bad_data_exits_1(tmp_path, capsys):
    rc, _ = _run_cli(["curate", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "cannot load" in capsys.readouterr().err


def test_split_column_of_a_manifest(small, tmp_path, embedder):
    from visor.errors import ConfigError

    root, original = small
    rows = ["path,label,part"]
    for f in sorted(root.glob("*/*")):
        if f.name != "broken.jpg":
            rows.append(f"{f},{f.parent.name},{'val' if 'copy' in f.name else 'train'}")
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    report = curate(manifest, embedder=embedder, split_column="part")
    pairs = {(Path(p.path_a).name, Path(p.path_b).name, p.exact) for p in report.leakage}
    assert pairs == {(original.name, "exact_copy.JPEG", True), (original.name, "near_copy.jpg", False)}
    assert report.splits == {"train": 12, "val": 2}
    assert curate(manifest, embedder=embedder).leakage == []  # no split column: no splits
    with pytest.raises(ConfigError, match="part"):
        curate(manifest, embedder=embedder, split_column="fold")


# --------------------------------------------------------------------------- building blocks


def test_similar_pairs_and_knn():
    x = np.array([[1, 0], [0.99, 0.141], [0, 1], [-1, 0]], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs, knn = similar_pairs(x, 0.95, neighbours=1, block=3)
    assert [(a, b) for a, b, _ in pairs] == [(0, 1)]
    assert knn[3] == pytest.approx(1.0, abs=1e-5)  # its nearest neighbour is orthogonal
    assert knn[0] < 0.02


def test_folds_are_stratified_and_seeded():
    y = np.repeat(np.arange(3), [10, 7, 2])
    f = stratified_folds(y, 5, seed=1)
    assert (f == stratified_folds(y, 5, seed=1)).all()
    for c in range(3):
        counts = np.bincount(f[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_out_of_fold_probabilities_separable():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    y = np.repeat(np.arange(3), 20)
    x = centres[y] + 0.3 * rng.normal(size=(60, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    probs = out_of_fold_probabilities(x.astype(np.float32), y, 3, folds=4)
    assert probs.shape == (60, 3)
    assert np.allclose(probs.sum(axis=1), 1)
    assert (probs.argmax(axis=1) == y).mean() > 0.95
