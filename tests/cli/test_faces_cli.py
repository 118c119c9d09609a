"""``visor faces detect|enroll|identify|collections`` and ``visor anonymize``."""

from __future__ import annotations

import argparse
import importlib
import json

import numpy as np
import pytest

from visor.cli import faces as faces_cli
from visor.faces import FaceAnalyzer, FaceStore

cli_main = importlib.import_module("visor.cli.main")  # visor.cli.main the attribute is the function


@pytest.fixture
def run(monkeypatch):
    """``visor.cli.main.main`` with the faces commands registered (whether or not main registers them)."""
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "faces" not in sub.choices:
        faces_cli.register(sub)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    return cli_main.main


@pytest.fixture(scope="module")
def faces_dir(shared_data):
    return shared_data("faces")


def test_detect_json_and_bad_files(run, faces_dir, tmp_path, capsys):
    two = faces_dir / "unknown" / "two_people.jpg"
    assert run(["faces", "detect", str(two), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["image"] == str(two) and d["faces"]["type"] == "faces" and len(d["faces"]["faces"]) == 2
    assert "embedding" not in d["faces"]["faces"][0]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff broken")
    assert run(["faces", "detect", str(bad), str(tmp_path / "missing.png"), str(two)]) == 1
    out, errs = capsys.readouterr()
    assert "two_people.jpg  2 face(s)" in out
    lines = errs.strip().splitlines()
    assert len(lines) == 3 and "bad.jpg: CorruptImage" in lines[0] and "missing.png: ImageNotFound" in lines[1]
    assert "2 of 3 images failed" in lines[2]


def test_collections_enroll_identify(run, faces_dir, tmp_path, capsys):
    db = str(tmp_path / "faces.db")
    known = faces_dir / "known"
    assert run(["faces", "collections", "--db", db, "create", "team"]) == 0
    assert run(["faces", "collections", "--db", db, "create"]) == 2
    assert run(["faces", "enroll", "--db", db, "--collection", "team", "--person", "obama",
                str(faces_dir / "unknown" / "obama-240p.jpg")]) == 0
    assert run(["faces", "enroll", "--db", db, "--collection", "team", "--person", "biden",
                str(known / "biden" / "biden2.jpg")]) == 0
    # a photo with two faces: reported, nothing enrolled, exit 1
    assert run(["faces", "enroll", "--db", db, "--collection", "team", "--person", "pair",
                str(faces_dir / "unknown" / "two_people.jpg"), str(faces_dir / "unknown" / "obama-240p.jpg")]) == 1
    assert "two_people.jpg: MultipleFaces" in capsys.readouterr().err
    assert run(["faces", "collections", "--db", db]) == 0
    assert capsys.readouterr().out == "team\t2 people\n"

    assert run(["faces", "identify", "--db", db, "--collection", "team", "--json",
                str(faces_dir / "unknown" / "two_people.jpg")]) == 0
    d = json.loads(capsys.readouterr().out)
    faces = sorted(d["faces"]["faces"], key=lambda f: f["xyxy"][0])
    assert [f["name"] for f in faces] == ["obama", "biden"]
    assert all(f["distance"] < 0.6 and f["matches"][0]["person"] == f["name"] for f in faces)

    assert run(["faces", "identify", "--db", db, "--collection", "taem", str(known / "obama" / "obama.jpg")]) == 2
    assert "Did you mean 'team'" in capsys.readouterr().err
    assert run(["faces", "collections", "--db", db, "delete", "team"]) == 0
    with FaceStore(db) as store:
        assert store.list_collections() == []


def test_default_db_under_visor_home(run, tmp_path, monkeypatch):
    monkeypatch.setenv("VISOR_HOME", str(tmp_path / "home"))
    assert run(["faces", "collections", "create", "x"]) == 0
    assert (tmp_path / "home" / "faces.db").is_file()


def test_anonymize_writes_pngs_without_faces(run, faces_dir, tmp_path, capsys):
    src = [faces_dir / "unknown" / "obama-240p.jpg", faces_dir / "unknown" / "two_people.jpg"]
    out = tmp_path / "out"
    assert run(["anonymize", *map(str, src), "--method", "pixelate", "--out", str(out)]) == 0
    assert "2 face(s)" in capsys.readouterr().out
    analyzer = FaceAnalyzer()
    for path in src:
        target = out / (path.stem + ".png")
        assert target.is_file()
        assert len(analyzer.detect(target, embeddings=False)) == 0
        assert not np.array_equal(analyzer.decode(target), analyzer.decode(path))
    assert run(["anonymize", str(tmp_path / "none.jpg"), "--out", str(out)]) == 1
