"""``visor segment``: class areas as text, JSON Lines, index PNG masks and overlays in --out, bad files, a
visor-style run folder as --model, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visor
from visor.cli.main import main
from visor.types.segmentation import SegmentationMask, palette

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def bus_mask(zoo_cache) -> SegmentationMask:
    return visor.segment(SAMPLE)


@pytest.fixture
def photos(tmp_path) -> Path:
    """bus.jpg twice (a.jpg and a copy under another folder with the same stem as a PNG) and a broken file."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE, root / "bus.jpg")
    Image.open(SAMPLE).save(root / "bus.png")  # same stem: the masks must not collide
    Image.open(SAMPLE).resize((160, 107)).save(root / "sub" / "small.webp", lossless=True)
    return root


def test_text_output_is_one_line_per_class_largest_first(capsys, bus_mask):
    code, out, err = run(capsys, "segment", str(SAMPLE))
    assert code == 0 and err == ""
    bus, background = bus_mask.areas["bus"], bus_mask.areas["background"]
    total = 640 * 427
    assert out.splitlines() == [f"{SAMPLE}  background  {100 * background / total:.2f}%  {background}",
                                f"{SAMPLE}  bus  {100 * bus / total:.2f}%  {bus}"]
    assert abs(bus - 70728) <= 20


def test_json_lines_are_the_api_json_and_masks_and_overlays_are_written(capsys, bus_mask, photos, tmp_path):
    out_dir = tmp_path / "masks"
    code, out, err = run(capsys, "segment", str(photos), "--json", "--out", str(out_dir), "--overlay")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["image"]).relative_to(photos).as_posix() for r in records] == ["bus.jpg", "bus.png",
                                                                                 "sub/small.webp"]
    assert records[0]["segmentation"] == bus_mask.to_dict()
    assert SegmentationMask.from_dict(records[0]["segmentation"]) == bus_mask
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert written == ["bus.png", "bus_2.png", "bus_overlay.jpg", "bus_overlay.png", "sub/small.png",
                       "sub/small_overlay.webp"]
    png = Image.open(out_dir / "bus.png")
    assert png.mode == "P" and png.size == (640, 427)
    assert np.array_equal(np.asarray(png), bus_mask.mask)
    assert png.getpalette()[: 3 * 21] == palette(21)[: 3 * 21]
    small = np.asarray(Image.open(out_dir / "sub" / "small.png"))
    assert small.shape == (107, 160) and set(np.unique(small)) <= {0, 6}
    overlay = np.asarray(Image.open(out_dir / "bus_overlay.png"))  # lossless: exact
    original = np.asarray(Image.open(photos / "bus.png").convert("RGB"))
    assert overlay.shape == original.shape
    background = bus_mask.mask == 0
    assert np.array_equal(overlay[background], original[background])  # background is left as it is
    assert not np.array_equal(overlay[~background], original[~background])  # the bus is coloured
    # written files are refused the second time, and replaced with --overwrite
    code, _, err = run(capsys, "segment", str(photos), "--out", str(out_dir))
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "segment", str(photos), "--out", str(out_dir), "--overwrite")
    assert code == 0, err


def test_bad_files_are_reported_and_the_rest_go_on(capsys, photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "segment", str(photos), "--out", str(out_dir))
    assert code == 1
    assert "broken.jpg: UnsupportedFormat: not a supported image" in err and "1 of 4 images failed" in err
    assert sorted(p.name for p in out_dir.rglob("*.png")) == ["bus.png", "bus_2.png", "small.png"]
    assert sum(line.split("  ")[1] == "bus" for line in out.splitlines()) == 3


def test_usage_errors(capsys, photos, tmp_path):
    code, _, err = run(capsys, "segment", str(SAMPLE), "--overlay")
    assert code == 2 and "--overlay writes into the --out folder" in err
    code, _, err = run(capsys, "segment", str(photos / "bus.jpg"), "--out", str(photos))
    assert code == 2 and f"--out {photos} contains the input {photos / 'bus.jpg'}" in err
    code, _, err = run(capsys, "segment", str(SAMPLE), "--model", "yolox_nano")
    assert code == 2 and "needs a segmentation model" in err
    code, _, err = run(capsys, "segment", str(tmp_path / "nothing-here.jpg"))
    assert code == 1


def test_a_run_folder_as_the_model(capsys, tmp_path):
    from segmentation_helpers import CLASSES, make_run_folder

    folder = tmp_path / "run"
    make_run_folder(folder)
    code, out, err = run(capsys, "segment", str(SAMPLE), "--model", str(folder), "--json", "--batch-size", "2")
    assert code == 0, err
    record = json.loads(out)["segmentation"]
    assert record["model"] == "tiny_segfpn" and record["class_names"] == list(CLASSES)
    assert record == visor.segment(SAMPLE, model=str(folder)).to_dict()
