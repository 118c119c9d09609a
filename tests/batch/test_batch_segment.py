"""``visor batch --task segment`` on coco128 photos: one row per image with the classes present (areas and COCO
RLE), Parquet and JSON Lines alike, the library's masks exactly; annotate's segmentation feature in a batch."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from batch_helpers import VISOR_BATCH

from visor.batch import iter_results, read_params, run_batch

#: coco128 photos, the Pascal VOC classes deeplabv3_voc finds in each, and the row's label (the class covering most
#: pixels, background only when nothing else is found).
EXPECTED = {
    "000000000471.jpg": ({"background", "bus"}, "bus"),
    "000000000036.jpg": ({"background", "person"}, "person"),
    "000000000081.jpg": ({"background", "aeroplane"}, "aeroplane"),
    "000000000086.jpg": ({"background", "motorbike", "person"}, "motorbike"),
    "000000000110.jpg": ({"background", "diningtable", "person"}, "person"),
    "000000000025.jpg": ({"background"}, "background"),  # giraffes: no VOC class
}
VOC = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


@pytest.fixture(scope="module")
def photos(shared_data) -> list[str]:
    root = shared_data("coco128") / "images"
    return [os.path.abspath(root / name) for name in EXPECTED]


@pytest.fixture(scope="module")
def segmenter(zoo_cache):
    from visor.models import load

    return load("deeplabv3_voc")


@pytest.fixture(scope="module")
def reference(segmenter, photos) -> dict[str, dict]:
    return {p: segmenter.predict(p).to_dict() for p in photos}


def check_rows(rows: list[dict], photos: list[str], reference: dict[str, dict]) -> None:
    assert sorted(r["path"] for r in rows) == sorted(photos)
    for row in rows:
        classes, label = EXPECTED[os.path.basename(row["path"])]
        doc = row["result"]
        assert {s["label"] for s in doc["segments"]} == classes, row["path"]
        assert doc == reference[row["path"]]  # the library's mask: areas and RLE exactly
        assert (row["status"], row["label"], row["count"], row["confidence"]) == ("ok", label, len(classes), None)
        assert row["class_id"] == VOC.index(label)
        assert doc["class_names"] == list(VOC) and doc["model"] == "deeplabv3_voc"
        assert sum(s["area"] for s in doc["segments"]) == doc["width"] * doc["height"]
        assert row["model"] == "deeplabv3_voc" and row["model_sha256"] == (
            "48a46b346ca7e2e96760b8a10a302046a3b5a9ce55e59d4c659c36d9cbd44118")


def test_segment_task_parquet_and_jsonl(tmp_path, photos, reference):
    pytest.importorskip("pyarrow")
    out = tmp_path / "masks.parquet"
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    summary = run_batch([*photos, str(bad)], task="segment", out=out)
    assert (summary.ok, summary.quarantined, summary.model) == (len(photos), 1, "deeplabv3_voc")
    rows = list(iter_results(out))
    check_rows(rows, photos, reference)
    (q,) = iter_results(out, quarantine=True)
    assert (q["path"], q["code"]) == (str(bad), "unsupported_format")
    params = read_params(out)
    assert params["task"] == "segment" and params["model"] == "deeplabv3_voc"
    # JSON Lines: the same rows
    jsonl = tmp_path / "masks.jsonl"
    run_batch(photos, task="segment", out=jsonl, batch_size=3, streams=1)
    check_rows(list(iter_results(jsonl)), photos, reference)
    # Parquet readers see the result as a JSON string with the areas in it
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    by_path = {r["path"]: json.loads(r["result"]) for r in table}
    bus = by_path[photos[0]]
    assert {s["label"]: s["area"] for s in bus["segments"]} == {
        s["label"]: s["area"] for s in reference[photos[0]]["segments"]}


def test_segment_from_the_command_line(tmp_path, photos, reference, zoo_cache):
    out = tmp_path / "cli.jsonl"
    env = {**os.environ, "VISOR_CACHE": str(zoo_cache), "VISOR_OFFLINE": "1"}
    done = subprocess.run([*VISOR_BATCH, *photos[:2], "--task", "segment", "--out", str(out), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["ok"], summary["task"], summary["model"]) == (2, "segment", "deeplabv3_voc")
    check_rows(list(iter_results(out)), photos[:2], reference)


def test_annotate_task_with_segmentation(tmp_path, photos, segmenter):
    from visor.io import bounded_copy, open_image

    out = tmp_path / "docs.jsonl"
    summary = run_batch(photos[:2], task="annotate", features=["segmentation"], out=out)
    assert (summary.ok, summary.model) == (2, "deeplabv3_voc")
    options = read_params(out)["options"]
    assert {k: options[k] for k in ("features", "detector", "segmenter")} == {
        "features": ["segmentation"], "detector": None, "segmenter": None}
    for row in iter_results(out):
        expected = segmenter.predict(bounded_copy(open_image(row["path"]), max_side=512)).to_dict()
        assert row["result"]["segmentation"] == expected and row["status"] == "ok"
    # segmentation is opt-in: annotate's default features leave it out, and --segmenter is annotate's only
    from visor.batch import TaskSpec
    from visor.errors import ConfigError

    assert "segmentation" not in TaskSpec(task="annotate").features
    with pytest.raises(ConfigError, match="segmenter applies to --task annotate only"):
        TaskSpec(task="segment", segmenter="deeplabv3_voc")
