"""``visor models``: the list with what is present, ``pull`` and ``import``, and the one message for missing
weights, in-process and in fresh processes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from visor.cli.main import main
from visor.models import get_card, weights
from visor.models.weights import cached_path, sha256_file
from zoo import SHARED_MODELS, ZOO_FILES, require_models

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"
YUNET_640 = SHARED_MODELS / "faces" / "yunet_n_640_640.onnx"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def visor_process(*argv: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISOR_CACHE": str(cache)}  # VISOR_OFFLINE=1 comes from the test session
    return subprocess.run([sys.executable, "-m", "visor", *argv], capture_output=True, text=True, env=env,
                          timeout=120)


def _weights_column(out: str) -> dict[str, str]:
    lines = out.splitlines()
    start = lines[0].index("WEIGHTS")
    return {line.split()[0]: line[start:].split()[0] if line[start:].split()[0] != "not" else "not installed"
            for line in lines[1:] if line.strip() and not line.startswith("absent")}


def test_models_lists_what_is_present_in_a_fresh_process(tmp_path, zoo_cache):
    empty = visor_process("models", cache=tmp_path / "empty")
    assert empty.returncode == 0 and empty.stderr == ""
    assert _weights_column(empty.stdout) == {"deeplabv3_voc": "absent", "efficientnet_lite0": "installed",
                                             "yolox_nano": "absent", "yunet": "absent"}
    assert empty.stdout.splitlines()[-1] == (
        "absent weights download on first use; fetch them now with `visor models pull deeplabv3_voc yolox_nano "
        "yunet`, or without internet `visor models import NAME FILE` (or a folder of files)")
    assert not (tmp_path / "empty").exists()  # listing creates nothing

    full = visor_process("models", cache=zoo_cache)
    assert full.returncode == 0 and full.stderr == ""
    assert _weights_column(full.stdout) == {"deeplabv3_voc": "present", "efficientnet_lite0": "installed",
                                            "yolox_nano": "present", "yunet": "present"}
    assert "absent" not in full.stdout
    header, *rows = full.stdout.splitlines()
    assert header.split() == ["NAME", "TASK", "ARCHITECTURE", "INPUT", "CLASSES", "LICENSE", "WEIGHTS", "REFERENCE"]
    assert rows[2].split()[:7] == ["yolox_nano", "detection", "yolox_nano", "416x416", "80", "Apache-2.0", "present"]


def test_models_json_has_present(tmp_path, capsys, monkeypatch, zoo_cache):
    code, out, _ = run(capsys, "models", "--json")
    cards = {c["name"]: c for c in json.loads(out)}
    assert code == 0 and sorted(cards) == ["deeplabv3_voc", "efficientnet_lite0", "yolox_nano", "yunet"]
    assert {n: c["present"] for n, c in cards.items()} == dict.fromkeys(cards, True)
    assert cards["yunet"]["labels"] == 1 and cards["yunet"]["weights"]["kind"] == "url"
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    code, out, _ = run(capsys, "models", "list", "--json")
    assert {c["name"]: c["present"] for c in json.loads(out)} == {
        "deeplabv3_voc": False, "efficientnet_lite0": True, "yolox_nano": False, "yunet": False}


# --------------------------------------------------------------------------- import


def test_import_name_file(tmp_path, capsys, monkeypatch):
    files = require_models("yunet")
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    target = cached_path(get_card("yunet").weights)
    code, out, err = run(capsys, "models", "import", "yunet", str(files["yunet"]))
    assert (code, out, err) == (0, f"yunet: imported {files['yunet']} -> {target}\n", "")
    assert sha256_file(target) == get_card("yunet").weights.sha256


def test_import_of_a_wrong_file_is_one_line_and_places_nothing(tmp_path, capsys, monkeypatch):
    require_models("yunet")
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    card = get_card("yunet")
    code, out, err = run(capsys, "models", "import", "yunet", str(YUNET_640))
    assert (code, out) == (1, "")
    assert err == (f"visor: error: WeightsIntegrityError: {YUNET_640} is not yunet's weights: its sha256 is "
                   f"{sha256_file(YUNET_640)}, the card's is {card.weights.sha256}; nothing was imported\n")
    assert list(tmp_path.rglob("*")) == [tmp_path / "weights"]
    code, _, err = run(capsys, "models", "import", "no_such_model", str(YUNET_640))
    assert code == 2 and err.startswith("visor: error: ModelNotFound: no model named 'no_such_model'")


def test_import_a_folder_then_load_offline_in_a_fresh_process(tmp_path, capsys, monkeypatch):
    """The air-gapped path: the folder of files fetched elsewhere is imported, then a fresh process (offline)
    detects with yolox_nano."""
    files = require_models()
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    code, out, err = run(capsys, "models", "import", str(SHARED_MODELS))
    targets = {n: cached_path(get_card(n).weights) for n in ZOO_FILES}
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"yolox_nano: imported {files['yolox_nano']} -> {targets['yolox_nano']}",
        f"yunet: imported {files['yunet']} -> {targets['yunet']}",
        f"deeplabv3_voc: imported {files['deeplabv3_voc']} -> {targets['deeplabv3_voc']}",
        f"skipped {YUNET_640}: its sha256 matches no model card",
    ]
    proc = visor_process("detect", "--model", "yolox_nano", "--json", str(SAMPLE), cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["detections"]["detections"]
    assert [d["class_name"] for d in found if d["confidence"] > 0.5] == ["bus"]


def test_import_one_file_by_its_sha256_and_a_folder_of_nothing(tmp_path, capsys, monkeypatch):
    files = require_models("yolox_nano")
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path / "cache"))
    code, out, _ = run(capsys, "models", "import", str(files["yolox_nano"]))
    assert (code, out) == (0, f"yolox_nano: imported {files['yolox_nano']} -> "
                              f"{cached_path(get_card('yolox_nano').weights)}\n")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.bin").write_bytes(b"nothing")
    code, out, err = run(capsys, "models", "import", str(tmp_path / "junk"))
    assert code == 1
    assert out == f"skipped {tmp_path / 'junk' / 'a.bin'}: its sha256 matches no model card\n" \
                  "still absent: deeplabv3_voc, yunet\n"
    assert err == f"visor: error: nothing was imported from {tmp_path / 'junk'}: no file in it is the weights of a " \
                  "model card\n"
    with pytest.raises(SystemExit) as exc:
        main(["models", "import", "a", "b", "c"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- pull


class _Served:
    """urlopen serving fixed bytes for any https URL (no Range support: a 200 with the whole body)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.urls = data, []

    def __call__(self, request, timeout):
        self.urls.append(request.full_url)
        resp = io.BytesIO(self.data)
        resp.status, resp.headers = 200, {"Content-Length": str(len(self.data))}
        return resp


def test_pull_downloads_verifies_and_places(tmp_path, capsys, monkeypatch):
    files = require_models("yunet")
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    monkeypatch.delenv(weights.OFFLINE_ENV)
    served = _Served(files["yunet"].read_bytes())
    monkeypatch.setattr(urllib.request, "urlopen", served)
    card = get_card("yunet")
    code, out, err = run(capsys, "models", "pull", "yunet", "--no-progress")
    assert (code, out, err) == (0, f"yunet: in the cache at {cached_path(card.weights)}\n", "")
    assert served.urls == [card.weights.location]
    assert sorted(p.name for p in cached_path(card.weights).parent.iterdir()) == ["yunet_n_dynamic.onnx"]
    code, out, err = run(capsys, "models", "pull", "yunet", "--progress")  # present: nothing downloaded
    assert (code, err) == (0, "") and len(served.urls) == 1
    cached_path(card.weights).unlink()
    code, out, err = run(capsys, "models", "pull", "yunet", "--progress")  # a bar, even off a terminal
    assert code == 0 and "downloading yunet_n_dynamic.onnx:   0%|          | 0.00/315k" in err
    assert len(served.urls) == 2


def test_pull_of_a_wrong_file_exits_1_with_one_line_and_nothing_placed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    monkeypatch.delenv(weights.OFFLINE_ENV)
    monkeypatch.setattr(urllib.request, "urlopen", _Served(b"not the weights"))
    card = get_card("yolox_nano")
    code, out, err = run(capsys, "models", "pull", "yolox_nano", "--no-progress")
    assert (code, out) == (1, "")
    got = hashlib.sha256(b"not the weights").hexdigest()
    assert err == (f"visor: error: yolox_nano: WeightsIntegrityError: sha256 mismatch for {card.weights.location}: "
                   f"expected {card.weights.sha256}, got {got}; refusing to use it\n")
    assert list(cached_path(card.weights).parent.iterdir()) == []  # no file, no part


def test_pull_usage_and_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VISOR_CACHE", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("offline: no download"))
    for argv in (["models", "pull"], ["models", "pull", "--all", "yunet"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()
    code, out, err = run(capsys, "models", "pull", "yunet", "no_such_model")
    assert code == 2 and out == "" and err.startswith("visor: error: ModelNotFound: no model named 'no_such_model'")
    code, out, err = run(capsys, "models", "pull", "--all")  # offline (VISOR_OFFLINE=1 in the tests)
    assert code == 1
    assert out.splitlines() == [f"efficientnet_lite0: from the package at "
                                f"{weights.resolve(get_card('efficientnet_lite0').weights)}"]
    assert err.splitlines() == [
        f"visor: error: {n}: WeightsNotCached: downloads are off (VISOR_OFFLINE is set): unset it to pull {n}, or "
        f"on a machine without internet `visor models import {n} FILE`"
        for n in ("deeplabv3_voc", "yolox_nano", "yunet")
    ]


# --------------------------------------------------------------------------- missing weights


def test_a_missing_model_gives_one_line_naming_both_commands(tmp_path):
    proc = visor_process("detect", "--model", "yolox_nano", str(SAMPLE), cache=tmp_path)
    target = tmp_path / "weights" / get_card("yolox_nano").weights.sha256 / "yolox_nano.onnx"
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"visor: error: WeightsNotCached: yolox_nano's weights are not in the cache ({target}) and downloads are off "
        "(VISOR_OFFLINE is set): run `visor models pull yolox_nano`, or on a machine without internet "
        "`visor models import yolox_nano FILE`\n")
