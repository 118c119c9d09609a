"""``visor.batch.run_batch``: results equal ``Classifier.classify``, quarantine, resume, refusal, formats, inputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import LIMIT_PIXELS, check_against_reference, make_constant_detector

from visor.batch import (
    BatchError,
    OutputLocked,
    OutputMismatch,
    iter_inputs,
    iter_results,
    part_files,
    read_params,
    read_results,
    run_batch,
)
from visor.io import ImageLimits

LIMITS = ImageLimits(max_pixels=LIMIT_PIXELS)


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory, image_folder):
    root, _, _ = image_folder
    out = tmp_path_factory.mktemp("batch-out") / "results.parquet"
    summary = run_batch(root, out=out, limits=LIMITS, chunk_size=16, batch_size=8, workers=2)
    return out, summary


def test_classify_matches_the_classifier_and_quarantines_bad_files(parquet_run, image_folder, reference):
    out, summary = parquet_run
    _, _, bad = image_folder
    check_against_reference(list(iter_results(out)), reference)
    quarantine = {r["path"]: r for r in iter_results(out, quarantine=True)}
    assert {p: r["code"] for p, r in quarantine.items()} == bad
    assert all(r["status"] == "quarantined" and r["error_type"] and r["message"] for r in quarantine.values())
    assert quarantine[next(p for p in bad if p.endswith("huge.png"))]["error_type"] == "ImageTooLarge"
    assert (summary.inputs, summary.ok, summary.quarantined, summary.skipped) == (64, 60, 4, 0)
    assert summary.processed == 64 and summary.parts == 4 == len(part_files(out))
    assert summary.images_per_second > 0 and {"decode", "preprocess", "inference"} <= set(summary.stages)
    # Plain Parquet readers see the results only; the table API agrees with the row iterator.
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.num_rows == 60 and table.column_names == list(read_results(out).column_names)
    assert read_results(out, quarantine=True).num_rows == 4
    params = read_params(out)
    assert params["task"] == "classify" and params["options"]["top_k"] == 5 and params["format"] == "parquet"
    assert params["options"]["max_pixels"] == LIMIT_PIXELS and len(params["model_sha256"]) == 64


def test_rerun_skips_everything_already_done(parquet_run, image_folder):
    out, _ = parquet_run
    root, _, _ = image_folder
    summary = run_batch(root, out=out, limits=LIMITS, chunk_size=16)
    assert (summary.processed, summary.skipped, summary.parts) == (0, 64, 0)
    assert read_results(out).num_rows == 60


def test_other_parameters_are_refused_and_overwrite_starts_over(tmp_path, image_folder, dev60):
    out = tmp_path / "r.parquet"
    run_batch(dev60[:4], out=out, top_k=5)
    with pytest.raises(OutputMismatch, match=r"options.top_k: 5 in the output, 3 now.*--overwrite"):
        run_batch(dev60[:4], out=out, top_k=3)
    with pytest.raises(OutputMismatch, match="max_pixels"):
        run_batch(dev60[:4], out=out, limits=LIMITS)
    summary = run_batch(dev60[:4], out=out, top_k=3, overwrite=True)
    assert summary.processed == 4 and len(part_files(out)) == 1
    assert all(len(r["result"]["predictions"]) == 3 for r in iter_results(out))
    assert read_params(out)["options"]["top_k"] == 3


def test_output_folder_checks(tmp_path, dev60):
    foreign = tmp_path / "mine.parquet"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    with pytest.raises(BatchError, match="not a visor batch output"):
        run_batch(dev60[:1], out=foreign, overwrite=True)
    (tmp_path / "file.jsonl").write_text("")
    with pytest.raises(BatchError, match="is a file"):
        run_batch(dev60[:1], out=tmp_path / "file.jsonl")
    with pytest.raises(BatchError, match=r"\.parquet or \.jsonl"):
        run_batch(dev60[:1], out=tmp_path / "results.csv")


def test_jsonl_output_equals_parquet(tmp_path, parquet_run, image_folder, reference):
    root, _, bad = image_folder
    out = tmp_path / "results.jsonl"
    summary = run_batch(root, out=out, limits=LIMITS, chunk_size=1000, batch_size=5, workers=1)
    assert (summary.ok, summary.quarantined, summary.parts) == (60, 4, 1)
    rows = list(iter_results(out))
    check_against_reference(rows, reference)
    lines = (out / "part-000001.jsonl").read_text().splitlines()
    assert isinstance(json.loads(lines[0])["result"], dict)  # the result is an object, not a string
    assert {r["path"]: r["code"] for r in iter_results(out, quarantine=True)} == bad
    by_path = {r["path"]: r for r in iter_results(parquet_run[0])}
    for r in rows:  # batch composition does not change a prediction
        assert r["result"] == by_path[r["path"]]["result"]
    assert read_results(out).num_rows == 60


def test_manifests_csv_jsonl_parquet(tmp_path, dev60, reference, image_folder):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, good, _ = image_folder
    rel = [os.path.relpath(p, root) for p in good[:10]]  # relative to the manifest's folder
    missing = os.path.abspath(root / "nowhere" / "gone.jpg")
    with open(root / "list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "path"])
        w.writerows([["x", p] for p in rel] + [["x", "nowhere/gone.jpg"]])
    (root / "list.jsonl").write_text("".join(json.dumps({"path": p, "extra": 1}) + "\n" for p in rel))
    pq.write_table(pa.table({"path": [good[0], good[0], "nowhere/gone.jpg"]}), root / "list.parquet")
    try:
        assert list(iter_inputs(root / "list.csv")) == [*good[:10], missing]
        for name, n_ok in (("list.csv", 10), ("list.jsonl", 10), ("list.parquet", 1)):
            out = tmp_path / f"{name}.parquet"
            summary = run_batch(root / name, out=out)
            rows = list(iter_results(out))
            check_against_reference(rows, {p: reference[p] for p in good[:n_ok]})
            quarantine = list(iter_results(out, quarantine=True))
            if name != "list.jsonl":
                assert [(r["path"], r["code"]) for r in quarantine] == [(missing, "image_not_found")]
            if name == "list.parquet":  # a path listed twice runs once
                assert summary.skipped == 1 and summary.processed == 2
    finally:
        for name in ("list.csv", "list.jsonl", "list.parquet"):
            (root / name).unlink()


def test_bad_manifest_is_a_config_error(tmp_path):
    from visor.errors import ConfigError

    (tmp_path / "m.csv").write_text("file,label\na.jpg,x\n")
    with pytest.raises(ConfigError, match="'path' column"):
        list(iter_inputs(tmp_path / "m.csv"))
    (tmp_path / "m.jsonl").write_text('{"path": ""}\n')
    with pytest.raises(ConfigError, match="non-empty"):
        list(iter_inputs(tmp_path / "m.jsonl"))


def test_glob_and_file_inputs(image_folder):
    root, good, _ = image_folder
    first_class = Path(good[0]).parent
    assert list(iter_inputs(str(first_class / "*.JPEG"))) == [p for p in good if p.startswith(str(first_class))]
    assert list(iter_inputs([good[1], good[0]])) == [good[1], good[0]]
    assert list(iter_inputs(str(root / "none-*.jpg"))) == [os.path.abspath(root / "none-*.jpg")]


def test_half_committed_chunk_and_temporaries(tmp_path, image_folder):
    """A run killed between a chunk's quarantine and results renames, or mid-write, redoes exactly that."""
    root, good, bad = image_folder
    out = tmp_path / "r.parquet"
    run_batch(root, out=out, limits=LIMITS, chunk_size=64)  # one chunk: 60 results + 4 quarantined
    (out / "part-000001.parquet").unlink()  # as if killed before the results rename
    (out / ".part-000002.parquet.999.tmp").write_bytes(b"half a part")
    summary = run_batch(root, out=out, limits=LIMITS, chunk_size=64)
    assert (summary.processed, summary.skipped, summary.quarantined) == (60, 4, 0)
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    assert sorted(r["path"] for r in iter_results(out)) == good
    assert sorted(r["path"] for r in iter_results(out, quarantine=True)) == sorted(bad)


def test_a_second_writer_is_refused(tmp_path, dev60):
    from visor.batch.store import ResultStore

    out = tmp_path / "r.jsonl"
    identity = {"task": "classify", "model": "m", "model_sha256": "0", "card_sha256": "0", "options": {}}
    with ResultStore.open(out, identity), pytest.raises(OutputLocked):
        ResultStore.open(out, identity)
    ResultStore.open(out, identity).close()  # released


def test_importing_visor_batch_imports_neither_ray_nor_pyarrow():
    code = ("import sys, visor.batch, visor.cli.batch; "
            "print(sorted(m for m in ('ray', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ray_engine_without_ray_says_how_to_install(monkeypatch, dev60, tmp_path):
    from visor.batch import MissingDependency

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependency, match=r"pip install 'visor-vision\[ray\]'"):
        run_batch(dev60[:1], out=tmp_path / "r.parquet", engine="ray")
    assert not (tmp_path / "r.parquet").exists()  # refused before anything was written


def test_detect_task(tmp_path, image_folder):
    """A constant-output ONNX detector: one box per image, rows carry the best box."""
    _, good, bad = image_folder
    pets = make_constant_detector(tmp_path / "pets.onnx")
    out = tmp_path / "boxes.jsonl"
    summary = run_batch(good[:5] + sorted(bad)[:2], task="detect", model=str(pets), out=out,
                        limits=LIMITS, batch_size=4)
    assert (summary.ok, summary.quarantined) == (5, 2)
    rows = list(iter_results(out))
    assert all(r["label"] == "cat" and r["count"] == 1 and r["class_id"] == 0 for r in rows)
    assert all(abs(r["confidence"] - 0.9) < 1e-6 and r["result"]["type"] == "detections" for r in rows)
    assert all(r["model"] == "pets" and r["result"]["model"] == "pets" for r in rows)


def test_detect_without_a_model_runs_the_registry_default(tmp_path, coco_images, yolox_nano):
    """``--task detect`` with no model: the task registry's default detector (yolox_nano), its options
    recorded, and the same detections as the detector itself."""
    out = tmp_path / "boxes.jsonl"
    summary = run_batch(coco_images, task="detect", out=out, batch_size=2, workers=2)
    assert (summary.ok, summary.quarantined, summary.model) == (5, 0, "yolox_nano")
    rows = {r["path"]: r for r in iter_results(out)}
    assert all(r["model"] == "yolox_nano" and r["model_sha256"] == yolox_nano.card.weights.sha256
               for r in rows.values())
    params = read_params(out)
    assert params["task"] == "detect" and params["model"] == "yolox_nano"
    assert params["options"] == {"max_bytes": ImageLimits.max_bytes, "max_pixels": ImageLimits.max_pixels,
                                 "conf": 0.25, "iou": 0.45, "max_det": 300, "agnostic": False}
    for path, expected in zip(coco_images, yolox_nano.detect(coco_images), strict=True):
        row = rows[path]
        got = row["result"]["detections"]
        assert row["count"] == len(got) == len(expected) > 0
        assert [d["class_name"] for d in got] == expected.data["class_name"].tolist()
        assert np.allclose([d["xyxy"] for d in got], expected.xyxy, atol=2e-3)
        assert np.allclose([d["confidence"] for d in got], expected.confidence, atol=1e-5)
    bus = rows[coco_images[0]]  # the school bus photo: the bus is the best box
    assert bus["label"] == "bus" and bus["class_id"] == 5 and abs(bus["confidence"] - 0.962151) < 1e-4


def test_a_custom_task_registry_entry_flows_into_batch(tmp_path, image_folder):
    """A registry whose detection entry is the batch task "boxes", with its own default model and only the
    conf option: run_batch takes the task, the model and the options from it."""
    import dataclasses

    from visor.batch import TASKS, batch_tasks
    from visor.errors import ConfigError
    from visor.models.tasks import TaskRegistry, builtin_tasks

    pets = make_constant_detector(tmp_path / "pets.onnx")
    custom = TaskRegistry([dataclasses.replace(s, batch_task="boxes", default_model=str(pets), options=("conf",))
                           if s.name == "detection" else s for s in builtin_tasks()])
    assert batch_tasks(custom) == ("classify", "boxes", "segment", "annotate") and batch_tasks() == TASKS
    _, good, _ = image_folder
    out = tmp_path / "boxes.jsonl"
    summary = run_batch(good[:3], task="boxes", tasks=custom, out=out, conf=0.5)
    assert (summary.ok, summary.model) == (3, "pets")
    assert [(r["label"], r["count"]) for r in iter_results(out)] == [("cat", 1)] * 3
    params = read_params(out)
    assert params["task"] == "boxes" and params["options"] == {
        "max_bytes": ImageLimits.max_bytes, "max_pixels": ImageLimits.max_pixels, "conf": 0.5}
    # conf above the box's 0.9: no box, the option reached the predictor
    run_batch(good[:1], task="boxes", tasks=custom, out=tmp_path / "none.jsonl", conf=0.95)
    assert [(r["label"], r["count"]) for r in iter_results(tmp_path / "none.jsonl")] == [(None, 0)]
    with pytest.raises(ConfigError, match=r"unknown task 'boxes'\. Choose one of classify, detect, segment, annotate"):
        run_batch(good[:1], task="boxes", out=tmp_path / "x.jsonl")
    with pytest.raises(ConfigError, match=r"unknown task 'detct'\. Did you mean 'detect'\?"):
        run_batch(good[:1], task="detct", out=tmp_path / "x.jsonl")


def test_annotate_task(tmp_path, dev60):
    out = tmp_path / "docs.jsonl"
    summary = run_batch(dev60[:3], task="annotate", features=["labels", "properties"], out=out, top_k=2)
    assert summary.ok == 3
    rows = list(iter_results(out))
    assert [r["path"] for r in rows] == [os.path.abspath(p) for p in dev60[:3]]
    for r in rows:
        assert r["result"]["image"] == r["path"] and r["status"] == "ok"
        assert len(r["result"]["labels"]["predictions"]) == 2 and "properties" in r["result"]
        assert r["label"] == r["result"]["labels"]["predictions"][0]["label"]
    assert read_params(out)["options"]["features"] == ["labels", "properties"]


def test_annotate_task_defaults_to_every_feature_with_the_default_models(tmp_path, coco_images, zoo_cache):
    from visor.annotator import FEATURES

    out = tmp_path / "docs.jsonl"
    summary = run_batch(coco_images[:1], task="annotate", out=out)
    assert (summary.ok, summary.model) == (1, "efficientnet_lite0+yolox_nano")
    params = read_params(out)
    assert params["options"]["features"] == list(FEATURES) and params["options"]["detector"] is None
    (row,) = iter_results(out)
    doc = row["result"]
    assert row["status"] == "ok" and set(doc) == {"image", "width", "height", "generic_labels", *FEATURES}
    assert (row["label"], row["class_id"]) == ("school bus", 779)
    assert doc["objects"]["model"] == "yolox_nano" and doc["objects"]["detections"][0]["class_name"] == "bus"
    assert [g["name"] for g in doc["generic_labels"]["labels"]] == ["Vehicle", "Motor vehicle", "Bus"]


def test_no_inputs_and_bad_manifest_write_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchError, match="no images found"):
        run_batch(tmp_path / "empty", out=tmp_path / "r.parquet")
    (tmp_path / "m.csv").write_text("file\na.jpg\n")
    from visor.errors import ConfigError

    with pytest.raises(ConfigError, match="'path' column"):
        run_batch(tmp_path / "m.csv", out=tmp_path / "r.parquet")
    assert not (tmp_path / "r.parquet").exists()
