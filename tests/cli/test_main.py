"""The visor command: output formats, folders and globs, per-file errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import visor
from visor.cli.main import main

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder tree with three good images and a text file that folder expansion skips."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    data = SAMPLE.read_bytes()
    for name in ("one.jpg", "a/two.JPG", "a/b/three.jpeg"):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    return tmp_path


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    ihdr = b"IHDR" + (30000).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    bomb = (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\r" + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
            + b"\x00\x00\x00\x00IEND\xaeB`\x82")  # declares 30000x30000, holds no pixels
    files = {
        "CorruptImage": ("cut.jpg", SAMPLE.read_bytes()[:4000]),
        "UnsupportedFormat": ("text.jpg", b"just some text\n"),
        "ImageTooLarge": ("bomb.png", bomb),
    }
    out = {}
    for kind, (name, data) in files.items():
        (tmp_path / name).write_bytes(data)
        out[kind] = tmp_path / name
    out["ImageNotFound"] = tmp_path / "missing.jpg"
    return out


def test_classify_sample_text_output(capsys):
    code, out, err = run(capsys, "classify", str(SAMPLE), "--top-k", "3")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == str(SAMPLE)
    assert len(lines) == 4 and "school bus (779)" in lines[1]


def test_json_output_is_the_api_json(capsys, classifier):
    code, out, _ = run(capsys, "classify", str(SAMPLE), "--json", "--top-k", "4")
    assert code == 0
    record = json.loads(out)
    assert record["image"] == str(SAMPLE)
    assert record["classifications"] == visor.classify(SAMPLE, top_k=4, model=classifier).to_dict()


def test_folders_recurse_and_globs_expand(capsys, photos):
    code, out, _ = run(capsys, "classify", str(photos), "--json", "--batch-size", "2", "--top-k", "1")
    assert code == 0
    images = [json.loads(line)["image"] for line in out.splitlines()]
    assert [Path(i).relative_to(photos).as_posix() for i in images] == ["a/b/three.jpeg", "a/two.JPG", "one.jpg"]
    code, out, _ = run(capsys, "classify", str(photos / "**" / "*.jpeg"), "--json")
    assert code == 0 and len(out.splitlines()) == 1


def test_progress_bar_for_folders(capsys, photos):
    code, _, err = run(capsys, "classify", str(photos), "--progress", "--top-k", "1")
    assert code == 0 and "3/3" in err
    code, _, err = run(capsys, "classify", str(photos), "--no-progress", "--top-k", "1")
    assert code == 0 and err == ""


@pytest.mark.parametrize("kind", ["CorruptImage", "UnsupportedFormat", "ImageTooLarge", "ImageNotFound"])
def test_each_bad_file_gives_one_line_and_exit_1(capsys, bad_files, kind):
    path = bad_files[kind]
    code, out, err = run(capsys, "classify", str(path))
    assert code == 1 and out == ""
    assert err.splitlines() == [err.strip()]  # exactly one line
    assert err.startswith(f"visor: error: {path}: {kind}: ")


def test_bad_files_are_reported_and_the_rest_go_on(capsys, bad_files):
    paths = [str(SAMPLE), *map(str, bad_files.values()), str(SAMPLE)]
    code, out, err = run(capsys, "classify", *paths, "--json", "--top-k", "1")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in records] == paths
    assert [r.get("error", {}).get("type") for r in records] == [None, *bad_files.keys(), None]
    assert records[-1]["classifications"]["predictions"][0]["label"] == "school bus"
    err_lines = err.splitlines()
    assert len(err_lines) == 5 and err_lines[-1] == "visor: error: 4 of 6 images failed"


def test_configurable_limits(capsys):
    code, _, err = run(capsys, "classify", str(SAMPLE), "--max-pixels", "1000")
    assert code == 1 and "ImageTooLarge" in err
    code, _, err = run(capsys, "classify", str(SAMPLE), "--max-bytes", "1000")
    assert code == 1 and "ImageTooLarge" in err


def test_unknown_model_and_bad_options_exit_2(capsys):
    code, _, err = run(capsys, "classify", str(SAMPLE), "--model", "efficientnet-lite0")
    assert code == 2 and "Did you mean 'efficientnet_lite0'" in err and len(err.splitlines()) == 1
    for argv in (["classify", str(SAMPLE), "--top-k", "0"], ["classify"], ["frobnicate"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_models_command(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and out.splitlines()[1].startswith("efficientnet_lite0  classification")
    code, out, _ = run(capsys, "models", "--json")
    cards = json.loads(out)
    assert cards[0]["name"] == "efficientnet_lite0" and cards[0]["labels"] == 1000


def test_help_explains(capsys):
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    out = capsys.readouterr().out
    assert "folder" in out and "--top-k" in out and "exit" in out


def test_python_dash_m_exit_codes(tmp_path):
    """The real process: exit status and stderr as a shell sees them."""
    bad = tmp_path / "x.jpg"
    bad.write_text("nope")
    proc = subprocess.run([sys.executable, "-m", "visor", "classify", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"visor: error: {bad}: UnsupportedFormat: not a supported image " \
        "(allowed: JPEG, PNG, WebP, BMP, GIF, TIFF)"
