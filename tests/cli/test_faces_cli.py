"""``visor faces detect|enroll|identify|collections`` and ``visor anonymize``."""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    monkeypatch.setattr(cli_main, "build_parser", lambda command=None: parser)
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


def test_anonymize_keeps_names_and_formats_without_faces(run, faces_dir, tmp_path, capsys):
    src = [faces_dir / "unknown" / "obama-240p.jpg", faces_dir / "unknown" / "two_people.jpg"]
    out = tmp_path / "out"
    assert run(["anonymize", *map(str, src), "--method", "pixelate", "--out", str(out)]) == 0
    assert "2 face(s)" in capsys.readouterr().out
    analyzer = FaceAnalyzer()
    for path in src:
        target = out / path.name
        with Image.open(target) as im:
            assert im.format == "JPEG"
        assert len(analyzer.detect(target, embeddings=False)) == 0
        assert not np.array_equal(analyzer.decode(target), analyzer.decode(path))
    assert run(["anonymize", str(tmp_path / "none.jpg"), "--out", str(out)]) == 1


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_anonymize_never_overwrites_an_input_or_collapses_two_outputs(run, faces_dir, tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    shutil.copy(faces_dir / "unknown" / "obama-240p.jpg", photos / "a.jpg")
    Image.new("RGB", (40, 30), (90, 90, 90)).save(photos / "a.png")  # same stem, no face
    before = _digests(photos)
    # --out the input folder, inside it, or holding it: refused up front, one line, exit 2, nothing written
    for out in (photos, photos / "anon", tmp_path):
        assert run(["anonymize", str(photos), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"visor: error: OutputConflict: --out {out} ")
    assert run(["anonymize", str(photos / "a.jpg"), str(photos / "a.png"), "--out", str(photos)]) == 2
    assert "contains the input" in capsys.readouterr().err
    assert _digests(photos) == before

    out = tmp_path / "out"
    assert run(["anonymize", str(photos), "--out", str(out), "--method", "box"]) == 0
    capsys.readouterr()
    written = _digests(out)
    assert sorted(written) == ["a.jpg", "a.png"]  # two inputs, two outputs
    with Image.open(out / "a.png") as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im), np.full((30, 40, 3), 90, np.uint8))
    with Image.open(out / "a.jpg") as im:
        assert im.format == "JPEG" and im.size == (427, 240)
    # a second run keeps what is there unless --overwrite
    assert run(["anonymize", str(photos), "--out", str(out)]) == 2
    assert "already exists (and 1 more); choose an empty folder or pass --overwrite" in capsys.readouterr().err
    assert _digests(out) == written
    assert run(["anonymize", str(photos), "--out", str(out), "--overwrite", "--method", "box"]) == 0
    assert _digests(photos) == before


def test_enroll_creates_the_collection_and_reserves_unknown(run, faces_dir, tmp_path, capsys):
    db = str(tmp_path / "faces.db")
    photo = str(faces_dir / "unknown" / "obama-240p.jpg")
    # the README's first command: the collection does not exist yet
    assert run(["faces", "enroll", "--db", db, "--collection", "staff", "--person", "obama", photo]) == 0
    assert capsys.readouterr().out == "created collection staff\nenrolled 1 photo(s) of obama in staff\n"
    assert run(["faces", "enroll", "--db", db, "--collection", "staff", "--person", "obama", photo]) == 0
    assert capsys.readouterr().out == "enrolled 1 photo(s) of obama in staff\n"
    with FaceStore(db) as store:
        assert store.list_collections() == ["staff"] and store.list_people("staff") == ["obama"]
    # --no-create: a typo fails, with the way to create it
    assert run(["faces", "enroll", "--db", db, "--no-create", "--collection", "staf", "--person", "x", photo]) == 2
    err = capsys.readouterr().err
    assert err.startswith("visor: error: CollectionNotFound: no collection 'staf'.") and err.count("\n") == 1
    assert "Did you mean 'staff'" in err and "visor faces collections create staf" in err
    # 'unknown' is what identify says for no match: reserved, in any case, before any photo is read
    for name in ("unknown", "Unknown", " UNKNOWN "):
        assert run(["faces", "enroll", "--db", db, "--collection", "staff", "--person", name,
                    str(tmp_path / "missing.jpg")]) == 2
        assert "is reserved" in capsys.readouterr().err
    # a failed enrolment creates no collection
    assert run(["faces", "enroll", "--db", db, "--collection", "new", "--person", "pair",
                str(faces_dir / "unknown" / "two_people.jpg")]) == 1
    assert "two_people.jpg: MultipleFaces" in capsys.readouterr().err
    with FaceStore(db) as store:
        assert store.list_collections() == ["staff"] and store.list_people("staff") == ["obama"]
