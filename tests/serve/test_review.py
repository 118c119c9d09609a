"""The review queue (visor.serve.review): policy, decisions, persistence and dataset export."""

from __future__ import annotations

import hashlib
import io
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from visor.data import ClassificationDataset, formats
from visor.data.detection import detect_format
from visor.data.formats import from_coco
from visor.errors import ConfigError, InvalidInput
from visor.serve.db import ServiceDB
from visor.serve.review import (
    ExportSummary,
    ReviewItemNotFound,
    ReviewPolicy,
    ReviewQueue,
    review_reason,
)

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"
BUS_SIZE = (640, 427)
LABELS = ["tench", "English springer", "golf ball", "school bus", "person"]


def classifications(*pairs: tuple[str, float]) -> dict:
    return {"type": "classifications", "model": "efficientnet_lite0",
            "predictions": [{"class_id": LABELS.index(lbl), "label": lbl, "confidence": c} for lbl, c in pairs]}


@pytest.fixture
def url(db_url):
    """A fresh database, once on SQLite (tmp_path/serve.db) and once on PostgreSQL (tests/serve/conftest.py)."""
    return db_url


@pytest.fixture
def queue(url):
    db = ServiceDB(url)
    yield ReviewQueue(db)
    db.close()


@pytest.fixture(scope="module")
def tench_images(shared_data) -> list[Path]:
    root = shared_data("imagenette-dev")
    return sorted((root / "val" / "n01440764").iterdir())[:3]


def add_classify(queue: ReviewQueue, path: Path, *pairs: tuple[str, float], reason: str = "low_confidence") -> int:
    return queue.add(image=path.read_bytes(), filename=path.name, media_type="image/jpeg", model="efficientnet_lite0",
                     task="classify", prediction=classifications(*pairs), labels=LABELS, reason=reason)


def add_detect(queue: ReviewQueue, detections: list[dict]) -> int:
    return queue.add(image=BUS.read_bytes(), filename="bus.jpg", media_type="image/jpeg", model="yolo",
                     task="detect", prediction={"type": "detections", "detections": detections},
                     labels=LABELS, reason="low_confidence")


# --------------------------------------------------------------------------- policy


def test_policy_validation():
    p = ReviewPolicy(threshold=0.4, thresholds={"m": 1}, labels=["person"], sample_rate=0)
    assert p.thresholds == {"m": 1.0} and p.labels == ("person",) and p.threshold_for("m") == 1.0
    assert p.threshold_for("other") == 0.4
    assert ReviewPolicy(labels="person").labels == ("person",)
    for kwargs in ({"threshold": 1.5}, {"threshold": -0.1}, {"thresholds": {"m": 2}}, {"sample_rate": 1.01},
                   {"sample_rate": float("nan")}, {"threshold": "0.5"}, {"threshold": True}, {"labels": ("",)},
                   {"thresholds": [("m", 0.5)]}):
        with pytest.raises(ConfigError):
            ReviewPolicy(**kwargs)


def test_review_reasons():
    policy = ReviewPolicy(threshold=0.5, thresholds={"strict": 0.9, "off": 0.0}, labels=("person",))
    rng = random.Random(0)
    assert review_reason(policy, "m", 0.49, "tench", rng) == "low_confidence"
    assert review_reason(policy, "m", 0.5, "tench", rng) is None  # below, not at, the threshold
    assert review_reason(policy, "strict", 0.85, "tench", rng) == "low_confidence"  # per-model wins
    assert review_reason(policy, "off", 0.01, "tench", rng) is None
    assert review_reason(policy, "m", 0.99, "person", rng) == "label_rule"
    assert review_reason(policy, "m", 0.1, "person", rng) == "low_confidence"  # the first reason given
    assert review_reason(policy, "m", None, None, rng) is None
    assert rng.random() == random.Random(0).random()  # no draw when the sample rate is 0

    sampled = ReviewPolicy(threshold=0.0, sample_rate=0.25)
    rng, twin = random.Random(7), random.Random(7)
    got = [review_reason(sampled, "m", 0.9, "tench", rng) for _ in range(1000)]
    assert got == ["sample" if twin.random() < 0.25 else None for _ in range(1000)]
    assert 200 < got.count("sample") < 300
    assert review_reason(ReviewPolicy(sample_rate=1.0), "m", 0.9, "x", random.Random(1)) == "sample"


# --------------------------------------------------------------------------- queue


def test_add_get_list_image(queue):
    before = datetime.now(UTC)
    a = add_classify(queue, BUS, ("school bus", 0.31), ("person", 0.2))
    b = add_classify(queue, BUS, ("golf ball", 0.9), reason="sample")
    assert (a, b) == (1, 2)
    item = queue.get(a)
    assert item.created_at.tzinfo is UTC and before <= item.created_at <= datetime.now(UTC)
    d = item.to_dict()
    assert d == {
        "id": 1, "created_at": item.created_at.isoformat(), "model": "efficientnet_lite0", "task": "classify",
        "image": "bus.jpg", "image_url": "/v1/review/items/1/image", "media_type": "image/jpeg",
        "reason": "low_confidence", "prediction": classifications(("school bus", 0.31), ("person", 0.2)),
        "predicted_label": "school bus", "confidence": 0.31, "labels": LABELS, "status": "pending", "label": None,
        "reviewer": None, "decided_at": None,
    }
    json.dumps(d)
    assert queue.image(a) == (BUS.read_bytes(), "image/jpeg")
    assert item.image_sha256 == hashlib.sha256(BUS.read_bytes()).hexdigest()
    assert [i.id for i in queue.list()] == [1, 2]
    assert [i.id for i in queue.list(limit=1, offset=1)] == [2]
    assert queue.list("accepted") == []
    assert queue.counts() == {"pending": 2, "accepted": 0, "corrected": 0, "rejected": 0, "reviewed": 0, "all": 2}
    with pytest.raises(ReviewItemNotFound) as e:
        queue.get(99)
    assert e.value.http_status == 404
    with pytest.raises(ReviewItemNotFound):
        queue.image(99)
    for bad in (0, -1, 2**62, True, "1"):  # out of range for an INTEGER id on PostgreSQL: not found, not an error
        with pytest.raises(ReviewItemNotFound):
            queue.get(bad)
    with pytest.raises(InvalidInput, match="Did you mean 'pending'"):
        queue.list("pendng")
    with pytest.raises(InvalidInput):
        queue.list(limit=-1)
    with pytest.raises(InvalidInput, match="Did you mean 'detect'"):
        queue.add(image=b"x", filename="a", media_type="image/png", model="m", task="detct", prediction={},
                  labels=[], reason="r")
    with pytest.raises(InvalidInput, match="image bytes"):
        queue.add(image=b"", filename="a", media_type="image/png", model="m", task="classify", prediction={},
                  labels=[], reason="r")


def test_decisions(queue):
    ids = [add_classify(queue, BUS, ("school bus", 0.3 + i / 10)) for i in range(4)]
    accepted = queue.decide(ids[0], "accept", reviewer="ann")
    assert (accepted.status, accepted.label, accepted.reviewer) == ("accepted", "school bus", "ann")
    assert accepted.decided_at.tzinfo is UTC
    corrected = queue.decide(ids[1], "correct", label="  golf ball ")
    assert (corrected.status, corrected.label, corrected.reviewer) == ("corrected", "golf ball", None)
    rejected = queue.decide(ids[2], "reject")
    assert (rejected.status, rejected.label) == ("rejected", None)
    assert queue.decide(ids[3], "accept", label="school bus").status == "accepted"  # the same label is fine
    assert queue.counts() == {"pending": 0, "accepted": 2, "corrected": 1, "rejected": 1, "reviewed": 4, "all": 4}
    assert [i.id for i in queue.list("reviewed")] == ids
    assert [i.id for i in queue.list("accepted")] == [ids[0], ids[3]]

    changed = queue.decide(ids[2], "correct", "tench", reviewer="bob")  # a decision can be changed
    assert (changed.status, changed.label, changed.reviewer) == ("corrected", "tench", "bob")
    assert queue.decide(ids[1], "accept").label == "school bus"

    with pytest.raises(InvalidInput, match=r"unknown action 'acept'.*Did you mean 'accept'\?"):
        queue.decide(ids[0], "acept")
    with pytest.raises(InvalidInput, match="'correct' needs the right label"):
        queue.decide(ids[0], "correct")
    with pytest.raises(InvalidInput, match="'correct' needs the right label"):
        queue.decide(ids[0], "correct", label="   ")
    with pytest.raises(InvalidInput, match="use 'correct'"):
        queue.decide(ids[0], "accept", label="tench")
    with pytest.raises(InvalidInput, match="boxes are for detect items"):
        queue.decide(ids[0], "correct", label="tench", boxes=[{"xyxy": [0, 0, 1, 1], "label": "tench"}])
    with pytest.raises(ReviewItemNotFound):
        queue.decide(999, "accept")
    assert queue.get(ids[0]).status == "accepted"  # failed decisions change nothing


def test_decisions_survive_restart(url, tmp_path):
    db = ServiceDB(url)
    q = ReviewQueue(db)
    a = add_classify(q, BUS, ("school bus", 0.2))
    b = add_classify(q, BUS, ("school bus", 0.2))
    c = add_classify(q, BUS, ("school bus", 0.2))
    q.decide(a, "accept", reviewer="ann")
    q.decide(b, "correct", "golf ball")
    before = [q.get(i) for i in (a, b, c)]
    db.close()

    db = ServiceDB(url)  # a new engine on the same file: a server restart
    q = ReviewQueue(db)
    assert [q.get(i) for i in (a, b, c)] == before
    assert [(i.status, i.label) for i in before] == [("accepted", "school bus"), ("corrected", "golf ball"),
                                                     ("pending", None)]
    assert q.image(b) == (BUS.read_bytes(), "image/jpeg")
    q.decide(c, "reject")
    db.close()
    db = ServiceDB(url)
    assert ReviewQueue(db).counts()["rejected"] == 1
    db.close()


# --------------------------------------------------------------------------- detect items


def test_detect_items_and_boxes(queue):
    dets = [{"xyxy": [10.0, 20.0, 300.0, 400.0], "confidence": 0.3, "class_id": 4},
            {"xyxy": [0.0, 200.0, 800.0, 900.0], "confidence": 0.8, "class_id": 3}]
    a = add_detect(queue, dets)
    item = queue.get(a)
    assert (item.task, item.predicted_label, item.confidence) == ("detect", "school bus", 0.8)
    assert item.final_boxes() == [{"xyxy": [10.0, 20.0, 300.0, 400.0], "label": "person"},
                                  {"xyxy": [0.0, 200.0, 800.0, 900.0], "label": "school bus"}]
    relabelled = queue.decide(a, "correct", "golf ball")  # the top (most confident) box gets the label
    assert relabelled.final_boxes()[1]["label"] == "golf ball" and relabelled.final_boxes()[0]["label"] == "person"
    boxes = [{"xyxy": [1, 2, 3, 4], "label": "tench"}]
    corrected = queue.decide(a, "correct", boxes=boxes)
    assert (corrected.status, corrected.label) == ("corrected", "tench")
    assert corrected.boxes == corrected.final_boxes() == [{"xyxy": [1.0, 2.0, 3.0, 4.0], "label": "tench"}]
    assert queue.decide(a, "correct", boxes=[]).final_boxes() == []
    assert queue.decide(a, "accept").boxes is None  # accepting again restores the predicted boxes
    for bad in ([{"xyxy": [3, 2, 1, 4], "label": "x"}], [{"xyxy": [0, 0, 1], "label": "x"}],
                [{"xyxy": [0, 0, 1, 1], "label": ""}], [{"xyxy": [0, 0, 1, 1]}], "boxes",
                [{"xyxy": [0, 0, 1, float("inf")], "label": "x"}]):
        with pytest.raises(InvalidInput):
            queue.decide(a, "correct", boxes=bad)
    empty = add_detect(queue, [])
    assert (queue.get(empty).predicted_label, queue.get(empty).confidence) == (None, None)


# --------------------------------------------------------------------------- export


def test_export_imagefolder_loads_as_classification_dataset(queue, tench_images, tmp_path):
    t1, t2, t3 = tench_images
    a = add_classify(queue, t1, ("tench", 0.4))
    b = add_classify(queue, BUS, ("golf ball", 0.2))
    c = add_classify(queue, t2, ("golf ball", 0.3))
    d = add_classify(queue, t3, ("tench", 0.3))
    queue.decide(a, "accept")
    queue.decide(b, "correct", "school bus")
    queue.decide(c, "reject")  # rejected and pending items stay out
    add_detect(queue, [{"xyxy": [0, 0, 5, 5], "confidence": 0.2, "class_id": 0}])
    queue.decide(5, "accept")  # an accepted detect item cannot be an image folder item
    assert d == 4

    out = tmp_path / "exported"
    summary = queue.export(out, "imagefolder")
    assert summary == ExportSummary(out, "imagefolder", 2, {"school bus": 1, "tench": 1}, skipped=1)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "manifest.jsonl", f"school bus/2_{BUS.name}", f"tench/1_{t1.name}"]
    assert (out / "tench" / f"1_{t1.name}").read_bytes() == t1.read_bytes()  # the bytes as uploaded

    ds = ClassificationDataset.from_folder(out)
    assert ds.classes == ("school bus", "tench")
    assert [(s.path.name, s.label) for s in ds.samples] == [(f"2_{BUS.name}", "school bus"), (f"1_{t1.name}", "tench")]
    manifest = ClassificationDataset.from_manifest(out / "manifest.jsonl")  # a visor manifest as well
    assert {(s.path, s.label) for s in manifest.samples} == {(s.path, s.label) for s in ds.samples}
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert rows[1] == {"path": f"school bus/2_{BUS.name}", "label": "school bus", "review_id": "2",
                       "model": "efficientnet_lite0", "status": "corrected", "image": "bus.jpg",
                       "image_sha256": hashlib.sha256(BUS.read_bytes()).hexdigest(), "predicted_label": "golf ball"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folders left


def test_export_coco_round_trips(queue, tench_images, tmp_path):
    t1 = tench_images[0]
    a = add_classify(queue, t1, ("golf ball", 0.4))
    det = add_detect(queue, [{"xyxy": [10.0, 20.0, 300.0, 400.0], "confidence": 0.3, "class_id": 4},
                             {"xyxy": [0.0, 200.0, 800.0, 900.0], "confidence": 0.8, "class_id": 3}])
    queue.decide(a, "correct", "tench")
    queue.decide(det, "correct", boxes=[{"xyxy": [50, 60, 250, 400], "label": "person"},
                                        {"xyxy": [0, 30, 640, 380.5], "label": "school bus"}])
    out = tmp_path / "coco"
    summary = queue.export(out, "coco")
    assert summary == ExportSummary(out, "coco", 2, {"person": 1, "school bus": 1, "tench": 1})
    assert (out / "instances.json").is_file() and detect_format(out) == "coco"

    ds = from_coco(out / "instances.json")
    assert ds.problems == ()
    assert ds.classes == ("person", "school bus", "tench")
    by_name = {im.path.name: im for im in ds.images}
    assert set(by_name) == {f"1_{t1.name}", "2_bus.jpg"}
    from PIL import Image

    with Image.open(t1) as im:
        tw, th = im.size
    tench = by_name[f"1_{t1.name}"]
    assert (tench.width, tench.height) == (tw, th)
    assert [(a.xyxy, ds.classes[a.class_id]) for a in tench.annotations] == [((0.0, 0.0, tw, th), "tench")]
    bus = by_name["2_bus.jpg"]
    assert (bus.width, bus.height) == BUS_SIZE
    assert [(a.xyxy, ds.classes[a.class_id]) for a in bus.annotations] == [
        ((50.0, 60.0, 250.0, 400.0), "person"), ((0.0, 30.0, 640.0, 380.5), "school bus")]
    assert bus.path.read_bytes() == BUS.read_bytes()
    loaded = formats.load(out)  # what 'visor data stats OUT' and 'visor train' read
    assert loaded.class_counts() == {"person": 1, "school bus": 1, "tench": 1}


def test_coco_size_follows_exif_orientation(queue, tmp_path):
    from PIL import Image

    from visor.io import open_image

    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: visor decodes it as 30 wide, 40 high
    Image.new("RGB", (40, 30), "red").save(buf, "JPEG", exif=exif)
    data = buf.getvalue()
    assert open_image(data).size == (30, 40)
    i = queue.add(image=data, filename="rot", media_type="image/jpeg", model="m", task="classify",
                  prediction=classifications(("tench", 0.1)), labels=LABELS, reason="r")
    queue.decide(i, "accept")
    queue.export(tmp_path / "c", "coco")
    coco = json.loads((tmp_path / "c" / "instances.json").read_text())
    assert coco["images"][0]["file_name"] == "1_rot.jpg"  # an image extension is added
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (30, 40)
    assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 30.0, 40.0]


def test_export_refuses_non_empty_and_overwrites_atomically(queue, tmp_path, monkeypatch):
    a = add_classify(queue, BUS, ("school bus", 0.1), reason="r")
    with pytest.raises(InvalidInput, match="nothing to export"):
        queue.export(tmp_path / "none")
    assert not (tmp_path / "none").exists()
    queue.decide(a, "accept")

    out = tmp_path / "out"
    out.mkdir()
    queue.export(out)  # an empty folder is fine
    with pytest.raises(InvalidInput, match="not empty"):
        queue.export(out, "coco")
    assert queue.export(out, "coco", overwrite=True).items == 1
    assert sorted(p.name for p in out.iterdir()) == ["images", "instances.json"]  # replaced, not merged

    import visor.serve.review as review

    def broken(data):
        raise InvalidInput("cannot read the size")

    monkeypatch.setattr(review, "_image_size", broken)
    with pytest.raises(InvalidInput, match="cannot read the size"):
        queue.export(out, "coco", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["images", "instances.json"]  # the old export is intact
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("serve.db")) == ["out"]

    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="not a folder"):
        queue.export(tmp_path / "file")
    with pytest.raises(ConfigError, match="Did you mean 'coco'"):
        queue.export(tmp_path / "x", "cocoo")


# --------------------------------------------------------------------------- export: data safety


def _accepted_item(db: ServiceDB, label: str = "school bus", filename: str = "bus.jpg") -> int:
    queue = ReviewQueue(db)
    item = queue.add(image=BUS.read_bytes(), filename=filename, media_type="image/jpeg", model="m", task="classify",
                     prediction=classifications(("school bus", 0.1)), labels=LABELS, reason="low_confidence",
                     predicted_label=label)
    queue.decide(item, "accept")
    return item


def test_export_never_deletes_the_service_data(tmp_path, monkeypatch, capsys):
    from visor.cli.main import main
    from visor.errors import OutputConflict

    home = tmp_path / "home"
    monkeypatch.setenv("VISOR_HOME", str(home))
    with ServiceDB() as db:  # the default: home/serve.db
        _accepted_item(db)
        (home / "faces.db").write_bytes(b"collections")
        queue = ReviewQueue(db)
        for out, relation in ((home, "is visor's data folder"), (tmp_path, "contains visor's data folder"),
                              (home / "exports", "is inside visor's data folder")):
            with pytest.raises(OutputConflict, match=f"^export folder {out} {relation} {home}; choose a folder"):
                queue.export(out, overwrite=True)
        assert queue.counts()["accepted"] == 1
    assert sorted(p.name for p in home.iterdir())[:2] == ["faces.db", "serve.db"]
    assert (home / "faces.db").read_bytes() == b"collections"

    # a database elsewhere (--db): the export may not be or hold its folder
    custom = tmp_path / "custom" / "serve.db"
    with ServiceDB(str(custom)) as db:
        _accepted_item(db)
    assert main(["review", "export", str(custom.parent), "--overwrite", "--db", str(custom)]) == 2
    err = capsys.readouterr().err
    assert err == (f"visor: error: OutputConflict: export folder {custom.parent} contains the database {custom}; "
                   "choose a folder outside it\n")
    assert main(["review", "export", str(tmp_path / "custom" / "ds"), "--db", str(custom)]) == 0
    with ServiceDB(str(custom)) as db:
        assert ReviewQueue(db).counts()["accepted"] == 1


def test_export_cuts_long_names_by_bytes(queue, tmp_path):
    label = "日" * 86  # 258 bytes in UTF-8: one byte too many for a file name
    first = _accepted_item(queue.db, label, filename="写真" * 60 + ".png")
    second = _accepted_item(queue.db, "é" * 200, filename="x" * 300)
    summary = queue.export(tmp_path / "ds")
    assert summary.items == 2 and summary.labels == {label: 1, "é" * 200: 1}
    rows = [json.loads(line) for line in (tmp_path / "ds" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in rows] == [label, "é" * 200]  # the manifest keeps the whole label
    assert rows[0]["path"] == "日" * 50 + f"/{first}_" + "写真" * 24 + ".png"
    assert rows[1]["path"] == "é" * 75 + f"/{second}_" + "x" * 146 + ".jpg"
    for row in rows:
        assert all(len(part.encode()) <= 160 for part in row["path"].split("/"))
        assert (tmp_path / "ds" / row["path"]).read_bytes() == BUS.read_bytes()
    coco = queue.export(tmp_path / "coco", "coco")
    assert coco.items == 2
    names = sorted(p.name for p in (tmp_path / "coco" / "images").iterdir())
    assert names == sorted(r["path"].split("/")[1] for r in rows)


def test_exported_files_are_private(queue, tmp_path):
    import os
    import stat

    _accepted_item(queue.db)
    queue.export(tmp_path / "ds")
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(os.stat(p).st_mode)
             for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o600} and len(modes) == 2
    assert stat.S_IMODE(os.stat(tmp_path / "ds").st_mode) == 0o700


def test_review_tasks_come_from_the_task_registry(tmp_path):
    """The queue's tasks and how each is reviewed follow the task registry: a new task whose result is
    Detections is reviewed (and corrected) box by box under its batch-task name."""
    from visor.models.tasks import TaskSpec, builtin_tasks
    from visor.serve.review import review_tasks, reviewable

    assert review_tasks() == {"classify": "label", "detect": "boxes"}
    assert reviewable("detect") and not reviewable("faces") and not reviewable("read_text")
    parts = TaskSpec(name="part_detection", verb="detect_parts", predictor="visor.models.detector:Detector",
                     result="visor.types.detections:Detections", batch_task="parts")
    tasks = builtin_tasks().with_tasks(parts)
    assert review_tasks(tasks) == {"classify": "label", "detect": "boxes", "parts": "boxes"}
    db = ServiceDB(f"sqlite:///{tmp_path / 'review.db'}")
    try:
        queue = ReviewQueue(db, tasks=tasks)
        prediction = {"type": "detections", "detections": [{"xyxy": [0, 30, 640, 380.5], "confidence": 0.7,
                                                            "class_id": 1}]}
        i = queue.add(image=BUS.read_bytes(), filename="bus.jpg", media_type="image/jpeg", model="parts-v1",
                      task="parts", prediction=prediction, labels=["door", "wheel"], reason="sample")
        item = queue.get(i)
        assert (item.task, item.predicted_label, item.confidence) == ("parts", "wheel", 0.7)
        decided = queue.decide(i, "correct", boxes=[{"xyxy": [1, 2, 30, 40], "label": "door"}])
        assert decided.final_boxes() == [{"xyxy": [1.0, 2.0, 30.0, 40.0], "label": "door"}]
        with pytest.raises(InvalidInput, match=r"unknown task 'parts'; expected one of classify, detect"):
            ReviewQueue(db).add(image=b"x", filename="a", media_type="image/png", model="m", task="parts",
                                prediction={}, labels=[], reason="sample")
    finally:
        db.close()
