"""``visor keys create|list|revoke`` and ``visor review list|export|stats``."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest

from visor.cli import keys as keys_cli
from visor.cli import review as review_cli
from visor.serve.db import ServiceDB
from visor.serve.keys import KeyStore
from visor.serve.review import EXPORT_FORMATS, LIST_STATUSES, ReviewQueue

cli_main = importlib.import_module("visor.cli.main")  # visor.cli.main the attribute is the function

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"


@pytest.fixture
def run(monkeypatch):
    """``visor.cli.main.main`` with the keys and review commands registered (whether or not main registers them)."""
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "keys" not in sub.choices:
        keys_cli.register(sub)
    if "review" not in sub.choices:
        review_cli.register(sub)
    monkeypatch.setattr(cli_main, "build_parser", lambda command=None: parser)
    return cli_main.main


@pytest.fixture
def home(tmp_path, monkeypatch):
    """VISOR_HOME in the test's folder: the default database is home/serve.db."""
    home = tmp_path / "home"
    monkeypatch.setenv("VISOR_HOME", str(home))
    return home


def test_parse_time_constants_match_the_library():
    assert review_cli._STATUSES == LIST_STATUSES
    assert review_cli._FORMATS == EXPORT_FORMATS


def test_keys_create_list_revoke(run, home, capsys):
    assert run(["keys", "create", "--name", "ci"]) == 0
    out, errs = capsys.readouterr()
    key = out.strip()
    assert key.startswith("visor_") and len(key) == 49 and out == key + "\n"
    assert "cannot be shown again" in errs and key not in errs
    with ServiceDB() as db:  # the default database, under VISOR_HOME
        assert db.url == f"sqlite:///{home / 'serve.db'}"
        assert KeyStore(db).verify(key).name == "ci"

    assert run(["keys", "create", "--name", "ci"]) == 1  # KeyExists: HTTP 409
    assert "KeyExists" in capsys.readouterr().err
    assert run(["keys", "create", "--name", "bot"]) == 0
    capsys.readouterr()

    assert run(["keys", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "PREFIX", "CREATED", "STATUS"]
    assert lines[1].split()[:3] == ["ci", "bearer", f"{key[:12]}..."] and lines[1].endswith("active")
    assert key[12:] not in "\n".join(lines)

    assert run(["keys", "revoke", "ci"]) == 0
    assert capsys.readouterr().out == f"revoked ci ({key[:12]}...)\n"
    assert run(["keys", "revoke", "nobody"]) == 2  # KeyNotFound: HTTP 404
    assert "KeyNotFound: no key named 'nobody'" in capsys.readouterr().err
    assert run(["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["name"], k["prefix"], k["revoked"], k["type"]) for k in listed] == [
        ("ci", key[:12], True, "bearer"), ("bot", listed[1]["prefix"], False, "bearer")]


def test_keys_db_option(run, tmp_path, capsys):
    db_file = tmp_path / "other.db"
    assert run(["keys", "create", "--name", "x", "--db", f"sqlite:///{db_file}"]) == 0
    key = capsys.readouterr().out.strip()
    with ServiceDB(str(db_file)) as db:  # a bare path is the same SQLite file
        assert KeyStore(db).verify(key).name == "x"
    assert run(["keys", "list", "--db", str(tmp_path / "empty.db")]) == 0
    assert "no API keys" in capsys.readouterr().out


def _queue_items(db_url: str, tench: Path) -> None:
    with ServiceDB(db_url) as db:
        q = ReviewQueue(db)
        for path, label in ((BUS, "school bus"), (tench, "golf ball"), (BUS, "tench")):
            q.add(image=path.read_bytes(), filename=path.name, media_type="image/jpeg", model="efficientnet_lite0",
                  task="classify", labels=["tench", "golf ball", "school bus"], reason="low_confidence",
                  prediction={"type": "classifications", "model": "efficientnet_lite0",
                              "predictions": [{"class_id": 0, "label": label, "confidence": 0.25}]})
        q.decide(1, "accept", reviewer="ann")
        q.decide(2, "correct", "tench")


def test_review_list_stats_export(run, home, tmp_path, shared_data, capsys):
    tench = sorted((shared_data("imagenette-dev") / "val" / "n01440764").iterdir())[0]
    db_url = f"sqlite:///{tmp_path / 'serve.db'}"
    _queue_items(db_url, tench)

    assert run(["review", "stats", "--db", db_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"pending": 1, "accepted": 1, "corrected": 1, "rejected": 0,
                                                   "reviewed": 2, "all": 3}
    assert run(["review", "stats", "--db", db_url]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["pending", "1"]

    assert run(["review", "list", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "MODEL"] and len(lines) == 2
    assert lines[1].split()[:4] == ["3", "pending", "efficientnet_lite0", "low_confidence"]
    assert run(["review", "list", "--db", db_url, "--status", "reviewed", "--json"]) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(i["id"], i["status"], i["label"], i["reviewer"]) for i in items] == [
        (1, "accepted", "school bus", "ann"), (2, "corrected", "tench", None)]
    assert run(["review", "list", "--db", db_url, "--status", "rejected"]) == 0
    assert capsys.readouterr().out == "no rejected items\n"
    with pytest.raises(SystemExit) as e:
        run(["review", "list", "--db", db_url, "--status", "done"])
    assert e.value.code == 2
    capsys.readouterr()

    out = tmp_path / "dataset"
    assert run(["review", "export", str(out), "--format", "imagefolder", "--db", db_url]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"exported 2 item(s) as imagefolder to {out}"
    assert [p.split() for p in printed[1:]] == [["school", "bus", "1", "images"], ["tench", "1", "images"]]
    assert run(["review", "export", str(out), "--db", db_url]) == 2  # not empty: InvalidInput
    assert "not empty" in capsys.readouterr().err

    # what 'visor train' and 'visor data stats' read
    assert run(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["num_samples"], stats["class_counts"]) == (2, {"all": {"school bus": 1, "tench": 1}})
    assert stats["unreadable"] == []

    coco = tmp_path / "coco"
    assert run(["review", "export", str(coco), "--format", "coco", "--db", db_url]) == 0
    assert capsys.readouterr().out.startswith(f"exported 2 item(s) as coco to {coco}")
    assert run(["data", "stats", str(coco), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["type"], stats["num_images"], stats["num_boxes"]) == ("detection", 2, 2)
    assert stats["boxes_per_class"] == {"all": {"school bus": 1, "tench": 1}}
    assert run(["review", "export", str(out), "--format", "coco", "--overwrite", "--db", db_url]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["images", "instances.json"]


def test_serve_flags_map_to_settings_and_warn_without_keys_off_loopback(capsys):
    from visor.cli.main import main

    argv = ["serve", "--print-settings", "--no-keys", "--host", "0.0.0.0", "--max-batch", "4", "--queue-size", "9",
            "--review-threshold", "0.3", "--review-model-threshold", "m=0.8", "--review-label", "cat",
            "--rate-limit", "2.5", "--db", "sqlite:///x.db", "--no-batch-calibration"]
    assert main(argv) == 0
    out = capsys.readouterr()
    settings = json.loads(out.out)
    assert settings["require_keys"] is False and settings["host"] == "0.0.0.0"
    assert (settings["max_batch"], settings["queue_size"], settings["batch_calibration"]) == (4, 9, False)
    assert settings["review_threshold"] == 0.3 and settings["review_thresholds"] == {"m": 0.8}
    assert settings["review_labels"] == ["cat"] and settings["rate_limit"] == 2.5
    assert "WARNING: API keys are OFF" in out.err
    assert main(["serve", "--print-settings", "--no-keys"]) == 0
    assert "WARNING" not in capsys.readouterr().err  # loopback: no warning
