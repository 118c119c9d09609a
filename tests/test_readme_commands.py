"""Every ``visor`` command shown in README.md, run as written in a fresh process on real data.

The README's commands are read from its ```bash blocks (``\\`` continuations joined, ``# comments``
and ``&&`` chains split off). ``CASES`` holds, for each of them verbatim, what to run it on and what
to check: the command runs in a workspace whose files carry the README's names (``photos/``,
``photo.jpg``, ``bccd/``, ``runs/mine``...), made from ../shared/data and assets/bus.jpg, with only
speed-limiting flags added (``--epochs 1``, ``--resamples 50``...), a free port for ``visor serve``,
and ``VISOR_HOME`` in a temporary folder; models come from the session's cache (tests/conftest.py).

``test_every_readme_command_has_a_case`` fails when README.md gains a ``visor`` command that
``CASES`` does not cover, or when ``CASES`` holds one README.md no longer shows: a new command in
the README comes with its case here.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SAMPLE = REPO / "assets" / "bus.jpg"
TIMEOUT = 300  # seconds for one command: a hang fails instead of blocking the suite


# ------------------------------------------------------------------------------ reading README.md


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_shell_commands(text: str) -> list[str]:
    """Every command of the README's bash blocks, one string each, whitespace collapsed."""
    commands = []
    for block in _code_blocks(text, "bash"):
        logical, pending = [], ""
        for raw in block.splitlines():
            line = _strip_comment(raw)
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            logical.append(pending + line)
            pending = ""
        for line in logical:
            for part in line.split("&&"):
                part = " ".join(part.split())
                if part:
                    commands.append(part)
    return commands


def readme_visor_commands() -> list[str]:
    return [c for c in readme_shell_commands(README.read_text()) if c.split()[0] == "visor"]


def readme_rules() -> dict:
    """The README's rules file (its one ```yaml block)."""
    (block,) = [b for b in _code_blocks(README.read_text(), "yaml") if b.startswith("# rules.yaml")]
    return yaml.safe_load(block)


def readme_curl_line() -> str:
    (line,) = [c for c in readme_shell_commands(README.read_text()) if c.startswith("curl ")]
    return line


def test_command_extraction():
    text = """
```bash
python3 -m venv .venv && . .venv/bin/activate && visor classify a.jpg  # a comment
visor evaluate --model runs/mine photos.csv --by lighting \\
    --corruptions --report 'x # y.html'   # exit 3 on drift
```

```text
visor not-a-command
```
"""
    assert readme_shell_commands(text) == [
        "python3 -m venv .venv", ". .venv/bin/activate", "visor classify a.jpg",
        "visor evaluate --model runs/mine photos.csv --by lighting --corruptions --report 'x # y.html'",
    ]


# ------------------------------------------------------------------------------ the workspace


@dataclass
class Case:
    """How one README command is run: ``extra`` flags appended, the exit status expected, the
    README commands it needs run first, then ``check(result, ws)``; ``run`` replaces the plain run
    (``visor serve``)."""

    readme: str
    check: Callable[[subprocess.CompletedProcess, Workspace], None]
    extra: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    status: tuple[int, ...] = (0,)
    run: Callable[[Case, Workspace], subprocess.CompletedProcess] | None = None


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    results: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def argv(self, case: Case) -> list[str]:
        return [sys.executable, "-m", "visor", *shlex.split(case.readme)[1:], *case.extra]

    def once(self, readme: str) -> subprocess.CompletedProcess:
        """Run the README command ``readme`` (after what it needs) unless it ran already; check it."""
        if readme in self.failed:
            pytest.fail(f"{readme!r} failed earlier: {self.failed[readme]}")
        if readme in self.results:
            return self.results[readme]
        case = CASES[readme]
        for need in case.needs:
            self.once(need)
        try:
            if case.run is not None:
                result = case.run(case, self)
            else:
                result = subprocess.run(self.argv(case), cwd=self.root, env=self.env, capture_output=True, text=True,
                                        timeout=TIMEOUT)
            assert result.returncode in case.status, (
                f"{readme!r} exited {result.returncode}, expected {case.status}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
            assert "Traceback" not in result.stderr, result.stderr[-3000:]
            case.check(result, self)
        except BaseException as e:
            self.failed[readme] = f"{type(e).__name__}: {str(e)[:300]}"
            raise
        self.results[readme] = result
        return result


def _image_classes(shared_data) -> dict[str, list[Path]]:
    """imagenette-dev images of three classes, by the default model's label names."""
    root = shared_data("imagenette-dev")
    classes = json.loads((root / "classes.json").read_text())
    out = {}
    for synset in ("n01440764", "n03445777", "n03888257"):  # tench, golf ball, parachute
        name = classes[synset]["name"]
        out[name] = sorted((root / "train" / synset).iterdir())[:10] + sorted((root / "val" / synset).iterdir())[:4]
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _bccd_subset(src: Path, dst: Path, n_train: int = 6, n_val: int = 2) -> None:
    """A small Pascal VOC copy of BCCD with its own ImageSets."""
    main = dst / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_val)):
        ids = (src / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
        for i in ids:
            _copy(src / "Annotations" / f"{i}.xml", dst / "Annotations" / f"{i}.xml")
            _copy(src / "JPEGImages" / f"{i}.jpg", dst / "JPEGImages" / f"{i}.jpg")
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


def _camvid_subset(src: Path, dst: Path, n_train: int = 8, n_val: int = 4) -> None:
    """A small CamVid copy (SegNet layout: train/ + trainannot/, val/ + valannot/) with its classes.txt."""
    from visor.data.segmentation import CAMVID_CLASSES

    for split, n in (("train", n_train), ("val", n_val)):
        for image in sorted((src / split).glob("*.jpg"))[:n]:
            _copy(image, dst / split / image.name)
            _copy(src / f"{split}annot" / f"{image.stem}.png", dst / f"{split}annot" / f"{image.stem}.png")
    (dst / "classes.txt").write_text("\n".join(CAMVID_CLASSES) + "\n")


def _coco_subset(src: Path, dst: Path, n: int = 8) -> None:
    data = json.loads((src / "instances.json").read_text())
    images = data["images"][:n]
    ids = {im["id"] for im in images}
    data["images"] = images
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    for im in images:
        _copy(src / "images" / im["file_name"], dst / "images" / im["file_name"])
    (dst / "instances.json").write_text(json.dumps(data))


@pytest.fixture(scope="module")
def ws(tmp_path_factory, shared_data, classifier, zoo_cache) -> Workspace:
    """The README's files, made from real data; ``classifier`` and ``zoo_cache`` filled the session's model cache."""
    from PIL import Image

    root = tmp_path_factory.mktemp("readme")
    classes = _image_classes(shared_data)
    for name, paths in classes.items():
        folder = name.replace(" ", "_")
        for i, p in enumerate(paths[:10]):
            _copy(p, root / "photos" / folder / f"{i}.jpg")
            if i < 6:
                _copy(p, root / "catalogue" / folder / f"{i}.jpg")
                _copy(p, root / "dataset" / folder / f"{i}.jpg")
            if i < 2:
                _copy(p, root / "labelled" / name / f"{i}.jpg")  # the model's own label names
        for i, p in enumerate(paths[10:]):
            _copy(p, root / "incoming" / f"{folder}{i}.jpg")
    _copy(root / "dataset" / "tench" / "0.jpg", root / "dataset" / "tench" / "copy.jpg")  # an exact duplicate
    with Image.open(classes["golf ball"][12]) as im:
        (root / "shots" / "a").mkdir(parents=True)
        im.convert("RGB").save(root / "shots" / "a" / "one.png")
    with Image.open(classes["parachute"][12]) as im:
        (root / "shots" / "b" / "c").mkdir(parents=True)
        im.convert("RGB").save(root / "shots" / "b" / "c" / "two.png")
    _copy(classes["golf ball"][13], root / "new.jpg")
    _copy(root / "catalogue" / "parachute" / "3.jpg", root / "query.jpg")
    for name in ("assets/bus.jpg", "photo.jpg", "upload.jpg"):
        _copy(SAMPLE, root / name)
    faces = shared_data("faces")
    _copy(faces / "known" / "biden" / "biden.jpg", root / "ada1.jpg")
    _copy(faces / "known" / "biden" / "biden2.jpg", root / "ada2.jpg")
    _copy(faces / "unknown" / "obama_and_biden.jpg", root / "group.jpg")
    _copy(faces / "unknown" / "two_people.jpg", root / "street.jpg")
    _copy(shared_data("sroie-dev") / "img" / "100.jpg", root / "receipt.jpg")
    for name in ("100", "107"):  # an OCR set in SROIE's layout: img/ and box/
        _copy(shared_data("sroie-dev") / "img" / f"{name}.jpg", root / "sroie" / "img" / f"{name}.jpg")
        _copy(shared_data("sroie-dev") / "box" / f"{name}.csv", root / "sroie" / "box" / f"{name}.csv")
    _bccd_subset(shared_data("bccd"), root / "bccd")
    _copy(shared_data("bccd") / "JPEGImages" / "BloodImage_00000.jpg", root / "blood.jpg")
    val_ids = (root / "bccd" / "ImageSets" / "Main" / "val.txt").read_text().split()  # two images: one per scanner
    (root / "scans.csv").write_text("file_name,scanner\n" + "".join(
        f"{image_id}.jpg,{'AB'[i % 2]}\n" for i, image_id in enumerate(val_ids)))
    _coco_subset(shared_data("coco128"), root / "coco")
    _camvid_subset(shared_data("camvid"), root / "camvid")
    videos = shared_data("videos")
    _copy(videos / "bikes.mp4", root / "street.mp4")
    for name in ("gt.txt", "test.txt"):
        _copy(videos / "mot15-gt" / "TUD-Campus" / name, root / "TUD-Campus" / name)
    rules = readme_rules()
    (root / "rules.yaml").write_text(yaml.safe_dump(rules))
    (root / "zones.yaml").write_text(yaml.safe_dump({k: rules[k] for k in ("zones", "lines")}))
    import nudenet  # a test dependency: its 320n.onnx is a real YOLOv8n export (AGPL-3.0 weights)

    _copy(Path(nudenet.__file__).parent / "320n.onnx", root / "yolov8n.onnx")

    env = {**os.environ, "VISOR_HOME": str(root / "home"), "NO_COLOR": "1"}
    env.pop("VISOR_FACES_DB", None)
    return Workspace(root, env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ checks


def _lines(r: subprocess.CompletedProcess) -> list[str]:
    return r.stdout.splitlines()


def _readme_text_block() -> str:
    return _code_blocks(README.read_text(), "text")[0]


def check_setup_classify(r, ws):
    assert r.stdout == _readme_text_block()  # the README's output, digit for digit


def check_classify_photo(r, ws):
    lines = _lines(r)
    assert lines[0] == "photo.jpg" and len(lines) == 6 and "school bus (779)" in lines[1]


def check_classify_folder(r, ws):
    lines = _lines(r)
    images = [line for line in lines if not line.startswith(" ")]
    assert len(images) == 30 and len(lines) == 30 * 4
    assert sorted(images)[0] == os.path.join("photos", "golf_ball", "0.jpg")


def check_classify_glob(r, ws):
    records = [json.loads(line) for line in _lines(r)]
    assert sorted(rec["image"] for rec in records) == ["shots/a/one.png", "shots/b/c/two.png"]
    assert all(len(rec["classifications"]["predictions"]) == 5 for rec in records)


def check_models(r, ws):
    assert any(line.startswith("efficientnet_lite0  classification") for line in _lines(r)[1:])  # sorted by name


def check_classify_help(r, ws):
    assert "--top-k" in r.stdout and "exit" in r.stdout


def check_data_stats_photos(r, ws):
    lines = _lines(r)
    assert [line.split() for line in lines[1:5]] == [["golf_ball", "10"], ["parachute", "10"], ["tench", "10"],
                                                       ["total", "30"]]
    assert "no problems found" in lines


def check_data_split(r, ws):
    with open(ws.root / "photos.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 30
    splits = {s: sum(row["split"] == s for row in rows) for s in ("train", "val", "test")}
    assert splits == {"train": 24, "val": 3, "test": 3}
    # The README's next evaluation groups by two columns the user supplies: add them.
    for i, row in enumerate(rows):
        row["lighting"] = ("day", "night")[i % 2]
        row["camera"] = ("a", "b", "c")[i % 3]
    with open(ws.root / "photos.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def check_train_classify(r, ws):
    run = ws.root / "runs" / "mine"
    for name in ("card.json", "model.onnx", "metrics.json"):
        assert (run / name).is_file(), name
    card = json.loads((run / "card.json").read_text())
    assert sorted(card["labels"]) == ["golf_ball", "parachute", "tench"]
    ws.trained_onnx = (run / "model.onnx").read_bytes()


def check_evaluate_test(r, ws):
    assert (ws.root / "runs" / "mine" / "test" / "report.json").is_file()
    assert "samples: 3   classes: 3" in _lines(r)


def check_classify_run(r, ws):
    lines = _lines(r)
    assert lines[0] == "new.jpg" and len(lines) == 4  # three classes
    assert {line.rsplit(" (", 1)[0].split()[-1] for line in lines[1:]} == {"golf_ball", "parachute", "tench"}


def check_resume(r, ws):
    assert (ws.root / "runs" / "mine" / "model.onnx").read_bytes() == ws.trained_onnx  # finished: unchanged


def check_evaluate_full(r, ws):
    out = ws.root / "runs" / "mine"
    assert (out / "test" / "report.html").stat().st_size > 10_000
    assert (out / "test" / "model_card.md").is_file()
    assert (out / "profile.safetensors").is_file()
    assert "lighting" in r.stdout and "camera" in r.stdout and "gaussian_noise" in r.stdout


def check_monitor(r, ws):
    lines = _lines(r)
    assert "recent images: 12   reference images: 3" in lines
    assert lines[-1].startswith("ALERT: no")  # exit 0: 12 images are too few to judge


def check_convert(r, ws):
    yolo = ws.root / "yolo"
    assert (yolo / "data.yaml").is_file()
    assert len(list((yolo / "labels").rglob("*.txt"))) == 8


def check_data_stats_bccd(r, ws):
    assert "images: 8 (train 6, val 2); boxes: 145" in _lines(r)
    assert [line.split()[0] for line in _lines(r)[1:5]] == ["Platelets", "RBC", "WBC", "total"]


def check_train_detect(r, ws):
    run = ws.root / "runs" / "cells"
    assert (run / "model.onnx").is_file()
    assert json.loads((run / "card.json").read_text())["labels"] == ["Platelets", "RBC", "WBC"]
    assert "val AP50" in r.stdout


def check_evaluate_detector(r, ws):
    assert "AP50" in r.stdout and "scanner" in r.stdout
    assert re.search(r"^\s*A\s+1\b", r.stdout, re.M) and re.search(r"^\s*B\s+1\b", r.stdout, re.M), r.stdout


def check_detect_default(r, ws):
    """No --model: the built-in yolox_nano (its weights imported from ../shared/models) finds the bus."""
    rows = [line.split() for line in _lines(r)]
    assert rows[0][:2] == ["assets/bus.jpg", "bus"] and float(rows[0][2]) > 0.9, r.stdout
    assert all(float(row[2]) < 0.3 for row in rows[1:]), r.stdout


def check_detect_run(r, ws):
    assert [p.name for p in (ws.root / "out").iterdir()] == ["blood.jpg"]


def check_detect_onnx(r, ws):
    (line,) = _lines(r)
    record = json.loads(line)
    assert record["image"] == "street.jpg"
    names = {d.get("class_name") for d in record["detections"]["detections"]}
    assert any(str(n).startswith("FACE_") for n in names), names
    assert "AGPL" in r.stderr  # the licence warning


def check_enroll(r, ws):
    assert _lines(r)[-1] == "enrolled 2 photo(s) of ada in staff"


def check_identify(r, ws):
    lines = _lines(r)
    assert lines[0] == "group.jpg  3 face(s)"
    assert sorted(line.split()[0] for line in lines[1:]) == ["ada", "unknown", "unknown"]  # Biden is "ada"


def check_anonymize(r, ws):
    assert len(list((ws.root / "blurred").rglob("*.jpg"))) == 30


def check_segment_default(r, ws):
    """No --model: the built-in deeplabv3_voc (imported from ../shared/models) finds the bus's pixels."""
    rows = [line.split() for line in _lines(r)]
    assert [row[:2] for row in rows] == [["assets/bus.jpg", "background"], ["assets/bus.jpg", "bus"]], r.stdout
    assert rows[1][-1] == "70728", r.stdout


def check_segment_folder(r, ws):
    masks = sorted(p.relative_to(ws.root / "masks") for p in (ws.root / "masks").rglob("*.png"))
    photos = sorted(p.relative_to(ws.root / "photos") for p in (ws.root / "photos").rglob("*.jpg"))
    assert [m for m in masks if not m.stem.endswith("_overlay")] == [p.with_suffix(".png") for p in photos]
    assert len(list((ws.root / "masks").rglob("*_overlay.*"))) == len(photos)


def check_convert_masks(r, ws):
    out = ws.root / "coco-masks"
    assert len(list((out / "masks").glob("*.png"))) == 8
    assert (out / "classes.txt").read_text().splitlines()[:2] == ["background", "person"]


def check_data_stats_camvid(r, ws):
    assert "samples: 12 (train 8, val 4); loaded: 12; classes: 11; ignore index on disk: 11" in r.stdout, r.stdout
    assert re.search(r"^\s*3\s+Road\s+12\.87%\s+28\.11%\s+18\.15%\s+12$", r.stdout, re.M), r.stdout
    assert "no problems found" in r.stdout


def check_train_segment(r, ws):
    run = ws.root / "runs" / "roads"
    assert (run / "model.onnx").is_file()
    card = json.loads((run / "card.json").read_text())
    assert card["task"] == "segmentation" and card["labels"][:3] == ["Sky", "Building", "Pole"]
    assert "val mIoU" in r.stdout and "use it: visor segment --model" in r.stdout


def check_evaluate_segmenter(r, ws):
    assert "mIoU" in r.stdout and "Road" in r.stdout, r.stdout
    assert (ws.root / "roads.html").read_text().startswith("<!DOCTYPE html>")


def check_segment_run(r, ws):
    (line,) = _lines(r)
    record = json.loads(line)
    assert record["image"] == "street.jpg"
    assert record["segmentation"]["class_names"][:2] == ["Sky", "Building"], record


def check_anonymize_people(r, ws):
    assert len(list((ws.root / "hidden").rglob("*.jpg"))) == 30


def check_text(r, ws):
    assert "GIN KEE" in r.stdout.upper() and "7.42" in r.stdout


def check_receipt(r, ws):
    rows = {line.split()[0]: line.split(None, 1)[1] for line in _lines(r)}
    assert list(rows) == ["company", "date", "address", "total"]
    assert rows["date"].startswith("02/12/2017  (") and rows["total"].startswith("7.42  (")


def check_evaluate_ocr(r, ws):
    assert "word" in r.stdout and "F1" in r.stdout and "2 pages" in r.stdout, r.stdout


def check_moderate(r, ws):
    assert r.stdout == "upload.jpg  adult=VERY_UNLIKELY  racy=VERY_UNLIKELY\n"


def check_properties(r, ws):
    (line,) = _lines(r)
    assert line.startswith("photo.jpg  640x427  brightness=") and "colours=#" in line


def check_annotate(r, ws):
    (line,) = _lines(r)
    doc = json.loads(line)
    assert list(doc) == ["image", "width", "height", "labels", "generic_labels", "faces", "text", "properties",
                         "crop_hints"]
    assert doc["labels"]["predictions"][0]["label"] == "school bus"
    assert all("error" not in doc[f] for f in ("labels", "faces", "text", "properties", "crop_hints")), doc


def check_keys_create(r, ws):
    key = _lines(r)[0].strip()
    assert len(key) >= 20 and " " not in key
    ws.env["KEY"] = key


def check_keys_create_aws(r, ws):
    """Two stdout lines, an ~/.aws/credentials fragment; the master key made private in VISOR_HOME."""
    first, second = _lines(r)
    assert re.fullmatch(r"aws_access_key_id = VKIA[A-Z2-7]{16}", first), first
    assert re.fullmatch(r"aws_secret_access_key = \S{40}", second), second
    master = Path(ws.env["VISOR_HOME"]) / "aws-master.key"
    assert master.is_file() and master.stat().st_mode & 0o777 == 0o600


def check_export_fp32(r, ws):
    assert (ws.root / "lite0-onnx" / "card.json").is_file() and (ws.root / "lite0-onnx" / "model.onnx").is_file()


def check_export_int8(r, ws):
    export = json.loads((ws.root / "lite0-int8" / "card.json").read_text())["metrics"]["export"]
    assert export["precision"] == "int8" and export["passed"] is True
    assert export["calibration"]["images"] == 30 and export["accuracy"]["images"] == 6  # photos/, labelled/


def check_benchmark(r, ws):
    report = json.loads((ws.root / "bench.json").read_text())
    assert [(b["backend"], b["status"], [m["batch_size"] for m in b["measurements"]]) for b in report["backends"]] == [
        (name, "ok", [1, 8, 32]) for name in ("torch", "onnx", "onnx-int8")]


def check_batch(r, ws):
    assert r.stdout.startswith("results.parquet: 30 done, 0 quarantined, 0 skipped")
    assert len(list((ws.root / "results.parquet").glob("part-*.parquet"))) == 1


def check_batch_ray(r, ws):
    assert r.stdout.startswith("results.parquet: 0 done, 0 quarantined, 30 skipped")  # the local run did them


def check_index_build(r, ws):
    assert (ws.root / "catalogue.idx").is_dir()


def check_search(r, ws):
    lines = _lines(r)
    assert len(lines) == 10 and lines[0].split()[1:] == ["parachute/3.jpg", "[parachute]"]  # itself, first
    assert float(lines[0].split()[0]) == pytest.approx(1.0, abs=1e-3)


def check_curate(r, ws):
    report = json.loads((ws.root / "curation" / "curation.json").read_text())
    assert (ws.root / "curation" / "curation.html").is_file()
    assert report["summary"]["samples"] == 19
    assert [[Path(p).name for p in group] for group in report["exact_duplicates"]] == [["0.jpg", "copy.jpg"]]


# ------------------------------------------------------------------------------ visor serve


def _serve(case: Case, ws: Workspace, query: Callable[[str, dict], None]) -> subprocess.CompletedProcess:
    """Start the README's ``visor serve`` line on a free port, wait until ready, ``query`` it, SIGTERM it."""
    import httpx

    port = _free_port()
    argv = [*ws.argv(case), "--port", str(port)]
    log = ws.root / f"serve-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=ws.root, env=ws.env, stdout=out, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, f"visor serve exited {proc.returncode}: {log.read_text()[-3000:]}"
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"not ready in 120 s: {log.read_text()[-3000:]}"
                time.sleep(0.3)
            query(base, {"X-API-Key": ws.env["KEY"]})
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
    return subprocess.CompletedProcess(argv, code, log.read_text(), "")


def run_serve_review(case, ws):
    def query(base, headers):
        curl = readme_curl_line().replace("http://127.0.0.1:8080", base)
        result = subprocess.run(["bash", "-c", curl], cwd=ws.root, env=ws.env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        body = json.loads(result.stdout)
        assert "school bus" in json.dumps(body), body

    return _serve(case, ws, query)


def run_serve_drift(case, ws):
    import httpx

    def query(base, headers):
        files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted((ws.root / "incoming").iterdir())]
        r = httpx.post(f"{base}/v1/classify", headers=headers, files=files, timeout=120)
        assert r.status_code == 200, r.text
        metrics = httpx.get(f"{base}/metrics", headers=headers, timeout=30)
        assert metrics.status_code == 200 and "visor_drift_psi" in metrics.text, metrics.text[:2000]

    return _serve(case, ws, query)


def run_serve_deepstack(case, ws):
    """The README's DeepStack line: Frigate's own request to /v1/vision/detection (form api_key), and the custom
    model on /v1/vision/custom/cells."""
    import requests

    def query(base, headers):
        jpeg = (ws.root / "photo.jpg").read_bytes()
        r = requests.post(f"{base}/v1/vision/detection", data={"api_key": ws.env["KEY"]},
                          files={"image": ("image.jpg", jpeg)}, timeout=30)
        assert r.status_code == 200 and r.json()["success"] is True, r.text
        assert r.json()["predictions"][0]["label"] == "bus", r.text
        assert set(r.json()["predictions"][0]) == {"label", "confidence", "x_min", "y_min", "x_max", "y_max"}
        blood = (ws.root / "blood.jpg").read_bytes()
        r = requests.post(f"{base}/v1/vision/custom/cells", data={"api_key": ws.env["KEY"]},
                          files={"image": ("image.jpg", blood)}, timeout=120)
        assert r.status_code == 200 and r.json()["success"] is True, r.text
        r = requests.post(f"{base}/v1/vision/detection", data={"api_key": "wrong"},
                          files={"image": ("image.jpg", jpeg)}, timeout=30)
        assert r.status_code == 401 and r.json()["success"] is False, r.text

    return _serve(case, ws, query)


def check_served(r, ws):
    assert "Finished server process" in r.stdout  # a clean shutdown after SIGTERM, its queries checked as it ran


#: After SIGTERM and a clean shutdown, ``visor serve`` exits 0.
SIGTERM_EXIT = (0,)


# ------------------------------------------------------------------------------ video


def check_track(r, ws):
    out = ws.root / "tracked"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["frames"] == 250, summary
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 250
    from visor.data.mot import read_mot
    from visor.io.video import open_video

    with open_video(out / "annotated.mp4") as reader:
        assert sum(1 for _ in reader) == 250
    scenes: dict[int, set[int]] = {}
    for line in lines:
        frame = json.loads(line)
        scenes.setdefault(frame["scene"], set()).update(d["tracker_id"] for d in frame["detections"])
    assert len(scenes) == 6  # bikes.mp4's five cuts
    ids = [i for s in scenes.values() for i in s]
    assert len(ids) == len(set(ids)), "a track id spans a scene cut"
    assert set(read_mot(out / "tracks.txt").track_ids) == set(ids)


def check_track_zones(r, ws):
    counts = json.loads((ws.root / "counted" / "counts.json").read_text())
    assert set(counts["zones"]) == {"crossing"} and set(counts["lines"]) == {"gate"}, counts
    gate = counts["lines"]["gate"]
    assert sum(gate["out"].values()) >= 1, gate  # people walk left to right across x = 400
    assert counts["zones"]["crossing"]["entries"], counts


def check_evaluate_tracks(r, ws):
    assert "MOTA" in r.stdout and "0.526462" in r.stdout and "0.557659" in r.stdout, r.stdout  # py-motmetrics'


def run_watch(case, ws):
    """The README's ``visor watch`` line against bikes.mp4 served as MJPEG on loopback, the rules file's webhook
    pointed at a local receiver that checks each signature; stopped after 150 frames."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mjpeg_server import MjpegServer  # tests/mjpeg_server.py
    from visor.video.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

    secret = "readme-secret"
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify(secret.encode(), self.headers[TIMESTAMP_HEADER], body, self.headers[SIGNATURE_HEADER])
            received.append({"verified": ok, **json.loads(body)})
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    rules = readme_rules()
    rules["webhook"]["url"] = f"http://127.0.0.1:{hook.server_address[1]}/visor"
    (ws.root / "rules-local.yaml").write_text(yaml.safe_dump(rules))
    try:
        with MjpegServer(ws.root / "street.mp4", fps=25, loop=True) as server:
            argv = [server.url if a == "http://camera.local/video.mjpg" else a for a in ws.argv(case)]
            argv = [*(a if a != "rules.yaml" else "rules-local.yaml" for a in argv), "--max-frames", "150"]
            result = subprocess.run(argv, cwd=ws.root, env={**ws.env, "VISOR_WEBHOOK_SECRET": secret},
                                    capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        hook.shutdown()
    result.received = received
    return result


def check_watch(r, ws):
    events = [json.loads(line) for line in _lines(r)]
    assert events and {e["rule"] for e in events} == {"someone-crossed"}, r.stdout + r.stderr[-2000:]
    assert [e["verified"] for e in r.received] == [True] * len(events), r.received
    assert {e["event"]["id"] for e in r.received} == {e["id"] for e in events}


# ------------------------------------------------------------------------------ the table

_TRAIN = "visor train classify photos.csv --out runs/mine"
_SPLIT = "visor data split photos/ --out photos.csv"
_EVAL_FULL = ("visor evaluate --model runs/mine photos.csv --split test --by lighting --by camera --corruptions "
              "--report runs/mine/test/report.html --profile runs/mine/profile.safetensors")
_KEYS = "visor keys create --name ci"
_SERVE_DEEPSTACK = "visor serve --host 0.0.0.0 --port 8080 --custom cells=runs/cells"
_ENROLL = "visor faces enroll --collection staff --person ada ada1.jpg ada2.jpg"
_TRAIN_DETECT = "visor train detect bccd/ --out runs/cells --img-size 384"
_BATCH = "visor batch photos/ --task classify --out results.parquet"
_INDEX = "visor index build catalogue/ --out catalogue.idx --labels parent"
_TRAIN_SEGMENT = "visor train segment camvid/ --out runs/roads --ignore-index 11 --img-size 480 --crop-size 384"
_QUICK_EVAL = ("--resamples", "50", "--no-progress")

CASES: dict[str, Case] = {c.readme: c for c in [
    Case("visor classify assets/bus.jpg", check_setup_classify),
    Case("visor classify photo.jpg", check_classify_photo),
    Case("visor classify photos/ --top-k 3", check_classify_folder),
    Case("visor classify 'shots/**/*.png' --json", check_classify_glob),
    Case("visor models", check_models),
    Case("visor classify --help", check_classify_help),
    Case("visor data stats photos/", check_data_stats_photos),
    Case(_SPLIT, check_data_split),
    Case(_TRAIN, check_train_classify, needs=(_SPLIT,),
         extra=("--epochs", "1", "--img-size", "96", "--batch-size", "8", "--no-progress")),
    Case("visor evaluate --model runs/mine photos.csv --split test --out runs/mine/test", check_evaluate_test,
         needs=(_TRAIN,), extra=_QUICK_EVAL),
    Case("visor classify --model runs/mine new.jpg", check_classify_run, needs=(_TRAIN,)),
    Case("visor train classify --resume runs/mine", check_resume, needs=(_TRAIN,), extra=("--no-progress",)),
    Case(_EVAL_FULL, check_evaluate_full, needs=(_TRAIN,), extra=_QUICK_EVAL),
    Case("visor monitor runs/mine/profile.safetensors incoming/ --fail-on-alert", check_monitor,
         needs=(_EVAL_FULL,), extra=("--no-progress",)),
    Case("visor serve --model runs/mine --drift-profile runs/mine/profile.safetensors", check_served,
         needs=(_EVAL_FULL, _KEYS), run=run_serve_drift, status=SIGTERM_EXIT),
    Case("visor data convert coco/instances.json --from coco --to yolo yolo/", check_convert),
    Case("visor data stats bccd/", check_data_stats_bccd),
    Case(_TRAIN_DETECT, check_train_detect, extra=("--epochs", "1", "--batch-size", "4", "--no-progress")),
    Case("visor detect assets/bus.jpg", check_detect_default),
    Case("visor detect --model runs/cells blood.jpg --save-annotated out/", check_detect_run, needs=(_TRAIN_DETECT,)),
    Case("visor evaluate --model runs/cells bccd/ --split val --by scanner --metadata scans.csv",
         check_evaluate_detector, needs=(_TRAIN_DETECT,), extra=_QUICK_EVAL),
    Case("visor detect --model yolov8n.onnx street.jpg --json", check_detect_onnx),
    Case("visor segment assets/bus.jpg", check_segment_default),
    Case("visor segment photos/ --out masks/ --overlay", check_segment_folder, extra=("--no-progress",)),
    Case("visor data convert coco/instances.json --to masks coco-masks/", check_convert_masks),
    Case("visor data stats camvid/ --ignore-index 11", check_data_stats_camvid),
    Case(_TRAIN_SEGMENT, check_train_segment,
         extra=("--epochs", "1", "--img-size", "96", "--crop-size", "64", "--batch-size", "4", "--no-progress")),
    Case("visor evaluate --model runs/roads camvid/ --split val --ignore-index 11 --report roads.html",
         check_evaluate_segmenter, needs=(_TRAIN_SEGMENT,), extra=_QUICK_EVAL),
    Case("visor segment --model runs/roads street.jpg --json", check_segment_run, needs=(_TRAIN_SEGMENT,)),
    Case("visor track street.mp4 --model yolox_nano --out tracked/", check_track, extra=("--no-progress",)),
    Case("visor track street.mp4 --zones zones.yaml --out counted/", check_track_zones, extra=("--no-progress",)),
    Case("visor evaluate TUD-Campus/test.txt TUD-Campus/gt.txt", check_evaluate_tracks),
    Case("visor watch http://camera.local/video.mjpg --rules rules.yaml", check_watch, run=run_watch),
    Case("visor anonymize photos/ --people --out hidden/", check_anonymize_people),
    Case(_ENROLL, check_enroll),  # creates the collection on first enrolment
    Case("visor faces identify --collection staff group.jpg", check_identify, needs=(_ENROLL,)),
    Case("visor anonymize photos/ --method blur --out blurred/", check_anonymize),
    Case("visor text receipt.jpg", check_text),
    Case("visor receipt receipt.jpg", check_receipt),
    Case("visor evaluate sroie/", check_evaluate_ocr),
    Case("visor moderate upload.jpg", check_moderate),
    Case("visor properties photo.jpg", check_properties),
    Case("visor annotate photo.jpg --features labels,faces,text,properties,crop_hints", check_annotate),
    Case(_KEYS, check_keys_create),
    Case("visor keys create --name frigate", check_keys_create),
    Case("visor keys create --name app --aws", check_keys_create_aws),
    Case(_SERVE_DEEPSTACK, check_served, needs=(_KEYS, _TRAIN_DETECT), run=run_serve_deepstack, status=SIGTERM_EXIT),
    Case("visor serve --review-threshold 0.5", check_served, needs=(_KEYS,), run=run_serve_review,
         status=SIGTERM_EXIT),
    Case("visor export --model efficientnet_lite0 --out lite0-onnx", check_export_fp32),
    Case("visor export --model efficientnet_lite0 --int8 --calibration photos/ --labelled labelled/ --out lite0-int8",
         check_export_int8),
    Case("visor benchmark --model efficientnet_lite0 --backends torch,onnx,onnx-int8 --batch-sizes 1,8,32 "
         "--json bench.json", check_benchmark,
         extra=("--seconds", "0.05", "--warmup", "0", "--peak-size", "128", "--quiet")),
    Case(_BATCH, check_batch),
    Case("visor batch photos/ --task classify --out results.parquet --engine ray --workers 2", check_batch_ray,
         needs=(_BATCH,)),
    Case(_INDEX, check_index_build),
    Case("visor search catalogue.idx query.jpg -k 10", check_search, needs=(_INDEX,)),
    Case("visor curate dataset/ --out curation/", check_curate, extra=("--no-progress",)),
]}


def test_every_readme_command_has_a_case():
    """A README command without a case here (or a case for a command the README dropped) fails."""
    shown = readme_visor_commands()
    missing = [c for c in shown if c not in CASES]
    stale = [c for c in CASES if c not in shown]
    assert not missing, f"README.md shows commands with no case in tests/test_readme_commands.py: {missing}"
    assert not stale, f"tests/test_readme_commands.py has cases for commands README.md no longer shows: {stale}"


@pytest.mark.parametrize("readme", list(CASES), ids=list(CASES))
def test_readme_command(ws, readme):
    ws.once(readme)


def test_readme_first_python_snippet(ws):
    """The README's first Python lines (visor.classify on assets/bus.jpg) in a fresh interpreter."""
    block = _code_blocks(README.read_text(), "python")[0]
    head = "\n\n".join(block.split("\n\n")[:2])  # import visor; then classify, .top, .to_dict()
    assert 'visor.classify("assets/bus.jpg", top_k=3)' in head
    code = head + "\nprint(result.top[0], round(result.top[1], 2), len(result.to_dict()['predictions']))\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=ws.root, env=ws.env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "school bus 0.98 3\n"
