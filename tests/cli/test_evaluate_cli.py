"""visor evaluate (subgroups, corruptions, report, model card, profile) and visor monitor, end to end."""

from __future__ import annotations

import json
import os

import pytest

from visor.cli.common import ExitCode
from visor.cli.main import main


@pytest.fixture(scope="module")
def lighting(imagenette_rows, imagenette_variant, write_manifest, tmp_path_factory):
    """The val split with a lighting column; every third image is a darkened copy."""
    val = [r for r in imagenette_rows if r["split"] == "val"]
    rows = [{**(d if i % 3 == 0 else r), "lighting": "dark" if i % 3 == 0 else "normal"}
            for i, (r, d) in enumerate(zip(val, imagenette_variant("dark"), strict=True))]
    return write_manifest(tmp_path_factory.mktemp("lighting") / "val.csv", rows)


@pytest.fixture(scope="module")
def evaluated(lighting, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluated")
    argv = ["evaluate", "--model", "efficientnet_lite0", str(lighting), "--by", "lighting", "--corruptions",
            "brightness", "--resamples", "200", "--report", str(out / "report.html"),
            "--profile", str(out / "p.safetensors"), "--json", "--no-progress"]
    return main(argv), out


def test_evaluate_writes_everything(evaluated, capsys):
    code, out = evaluated
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["model_card.md", "p.safetensors", "report.html"]
    for p in out.iterdir():  # written like open() would: readable beyond the owner under the usual umask
        assert os.stat(p).st_mode & 0o044 == 0o044, p


def test_evaluate_json_report(lighting, capsys):
    code = main(["evaluate", "--model", "efficientnet_lite0", str(lighting), "--by", "lighting", "--resamples", "200",
                 "--json", "--no-progress"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == 150 and report["confidence_intervals"]["resamples"] == 200
    lo, hi = report["confidence_intervals"]["accuracy"]
    assert lo < report["accuracy"] < hi
    (sub,) = report["subgroups"]
    groups = {g["group"]: g for g in sub["groups"]}
    assert groups["dark"]["status"] == "worse" and groups["normal"]["status"] == "best"
    assert groups["dark"]["ci"][1] < groups["normal"]["ci"][0]
    assert report["corruptions"] is None and len(report["mistakes"]) == 24


def test_evaluate_table_report_and_card(evaluated, capsys):
    _, out = evaluated
    html = (out / "report.html").read_text()
    assert "Robustness to corruptions" in html and "brightness" in html and "lighting" in html
    card = (out / "model_card.md").read_text()
    assert "## Limitations" in card and "dark" in card


def test_monitor_against_the_profile(evaluated, imagenette_rows, imagenette_variant, capsys):
    _, out = evaluated
    profile = str(out / "p.safetensors")
    val_dir = os.path.dirname(os.path.dirname(next(r["path"] for r in imagenette_rows if r["split"] == "val")))
    capsys.readouterr()
    # the profile was built on a mix of normal and dark images; the plain val images are brighter
    code = main(["monitor", profile, val_dir, "--json", "--no-progress", "--fail-on-alert"])
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 150 and report["model"] == "efficientnet_lite0"
    assert code == (ExitCode.ALERT if report["alert"] else 0)
    blurred = os.path.dirname(imagenette_variant("blur")[0]["path"])
    code = main(["monitor", profile, blurred, "--no-progress", "--fail-on-alert"])
    text = capsys.readouterr().out
    assert code == ExitCode.ALERT and "ALERT: " in text and "sharpness PSI" in text
    assert main(["monitor", profile, blurred, "--no-progress"]) == 0  # alerts, but exit 0 without the flag


@pytest.mark.parametrize(("argv", "message"), [
    (["--by", "lightning"], "Did you mean 'lighting'"),
    (["--corruptions", "fogg"], "Did you mean 'fog'"),
    (["--split", "tset"], "no split 'tset'"),
])
def test_evaluate_errors(lighting, argv, message, capsys):
    code = main(["evaluate", "--model", "efficientnet_lite0", str(lighting), *argv, "--no-progress"])
    assert code == 2 and message in capsys.readouterr().err


def test_monitor_errors(tmp_path, capsys):
    assert main(["monitor", str(tmp_path / "missing.safetensors"), str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------ segmentation


@pytest.fixture(scope="module")
def person_folder(shared_data, tmp_path_factory):
    """Four coco128 images with person masks (COCO person polygons, crowd ignored), and one image whose mask
    has the wrong size: images/ + masks/ + classes.txt."""
    import shutil

    import numpy as np
    from PIL import Image

    from visor.data.segmentation import SegmentationDataset

    coco = shared_data("coco128")
    ds = SegmentationDataset.from_coco(coco / "instances.json", coco / "images")
    root = tmp_path_factory.mktemp("person")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nperson\n")
    names = ["000000000036.jpg", "000000000042.jpg", "000000000049.jpg", "000000000061.jpg"]
    for i in [i for i, s in enumerate(ds.samples) if s.image.name in names]:
        _, mask = ds.load(i)
        out = np.where(mask == 255, 255, mask == ds.classes.index("person")).astype(np.uint8)
        shutil.copy(ds.samples[i].image, root / "images")
        Image.fromarray(out).save(root / "masks" / f"{ds.samples[i].image.stem}.png")
    shutil.copy(coco / "images" / "000000000071.jpg", root / "images")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "masks" / "000000000071.png")
    return root


def test_evaluate_mask_folder_defaults_to_the_segmenter(zoo_cache, person_folder, capsys):
    code = main(["evaluate", str(person_folder), "--resamples", "100", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.startswith("model deeplabv3_voc, split all: 4 images, 1 left out")
    assert "mIoU: " in captured.out and "person " in captured.out
    assert "left out " in captured.err and "000000000071.jpg" in captured.err and "10x10" in captured.err


@pytest.mark.parametrize(("argv", "message"), [
    (["--corruptions", "fog"], "--corruptions: not available for segmentation"),
    (["--profile", "p.safetensors"], "--profile: not available for segmentation"),
    (["--subgroup-metric", "macro_f1"], "compared on mIoU"),
    (["--by", "light"], "--by needs per-image metadata"),
    (["--split", "val"], "no split 'val'"),
    (["--classes", "backgruond,person"], "dataset classes not known to model deeplabv3_voc: backgruond."),
])
def test_evaluate_segmentation_errors(zoo_cache, person_folder, argv, message, capsys):
    code = main(["evaluate", "--model", "deeplabv3_voc", str(person_folder), *argv, "--no-progress"])
    assert code == 2 and message in capsys.readouterr().err
