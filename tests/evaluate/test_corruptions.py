"""Corruptions (a mini ImageNet-C) and the robustness evaluation, on real imagenette-dev images."""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from visor.data import ClassificationDataset
from visor.errors import ConfigError, InvalidInput
from visor.evaluate.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    CorruptionReport,
    corrupt,
    corruption_grid,
    disk_kernel,
    evaluate_corruptions,
    image_seed,
    motion_kernel,
)

SEEDED = ("gaussian_noise", "motion_blur", "fog")


@pytest.fixture(scope="module")
def tench(shared_data) -> np.ndarray:
    """The first imagenette-dev val image (a tench, 224x224 RGB) as an array."""
    path = shared_data("imagenette-dev") / "val" / "n01440764" / "n01440764_13452.JPEG"
    return np.asarray(Image.open(path).convert("RGB"))


def digest(arr: np.ndarray) -> str:
    return hashlib.sha256(arr.tobytes()).hexdigest()


# --------------------------------------------------------------------------- corrupt


def test_corrupt_is_deterministic_and_pure(tench):
    before = tench.copy()
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            a = corrupt(tench, name, severity, seed=3)
            b = corrupt(tench, name, severity, seed=3)
            assert a.shape == tench.shape and a.dtype == np.uint8, (name, severity)
            assert a.tobytes() == b.tobytes(), (name, severity)
            assert a is not tench and not np.shares_memory(a, tench)
            assert not np.array_equal(a, tench), (name, severity)
    np.testing.assert_array_equal(tench, before)


def test_corrupt_gives_the_same_bytes_in_another_process(tench, tmp_path):
    """No dependence on Python's per-process hash seed or on state left by earlier calls."""
    cases = [(n, s) for n in CORRUPTIONS for s in (1, 5)]
    here = [digest(corrupt(tench, n, s, seed=7)) for n, s in cases]
    script = (
        "import hashlib, sys, numpy as np\n"
        "from visor.evaluate.corruptions import corrupt\n"
        "img = np.load(sys.argv[1])\n"
        f"for n, s in {cases!r}:\n"
        "    print(hashlib.sha256(corrupt(img, n, s, seed=7).tobytes()).hexdigest())\n"
    )
    path = tmp_path / "tench.npy"
    np.save(path, tench)
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.split() == here


def test_seed_changes_only_the_random_corruptions(tench):
    for name in CORRUPTIONS:
        a, b = corrupt(tench, name, 3, seed=0), corrupt(tench, name, 3, seed=1)
        if name in SEEDED:
            assert not np.array_equal(a, b), name
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_damage_grows_with_severity_for_every_corruption(tench):
    clean = tench.astype(np.int16)
    for name in CORRUPTIONS:
        damage = [float(np.abs(corrupt(tench, name, s).astype(np.int16) - clean).mean()) for s in SEVERITIES]
        assert all(lo < hi for lo, hi in itertools.pairwise(damage)), (name, damage)
        assert damage[0] > 1.0, (name, damage)


def test_pixel_sized_parameters_scale_with_the_short_side(tench):
    """A 4x larger copy, corrupted and shrunk back, matches the corrupted 224 px image closely."""
    big = cv2.resize(tench, (896, 896), interpolation=cv2.INTER_CUBIC)
    for name in ("defocus_blur", "motion_blur", "fog"):
        small = corrupt(tench, name, 3).astype(np.int16)
        shrunk = cv2.resize(corrupt(big, name, 3), (224, 224), interpolation=cv2.INTER_AREA).astype(np.int16)
        damage = float(np.abs(small - tench).mean())
        assert damage > 15
        assert float(np.abs(small - shrunk).mean()) < 1.5, name


def test_exact_values_of_simple_corruptions():
    # Contrast: each channel shrinks towards its mean by the factor (0.4 at severity 1).
    img = np.zeros((4, 4, 3), np.uint8)
    img[:, :2] = 200
    out = corrupt(img, "contrast", 1)
    np.testing.assert_array_equal(out[:, :2], 140)
    np.testing.assert_array_equal(out[:, 2:], 60)
    # A flat image has nothing to blur, pixelate or compress away.
    flat = np.full((50, 70, 3), 90, np.uint8)
    for name in ("defocus_blur", "motion_blur", "pixelate", "contrast"):
        np.testing.assert_array_equal(corrupt(flat, name, 5), flat, err_msg=name)
    # Brightness adds 0.5 to HSV value at severity 5: a black image turns mid grey (127.5 rounds to 128).
    np.testing.assert_array_equal(corrupt(np.zeros((3, 3, 3), np.uint8), "brightness", 5), 128)
    # Pixelate at severity 2 (factor 0.5) on a 224 px image averages 2x2 blocks.
    ramp = np.repeat(np.repeat(np.arange(224, dtype=np.uint8)[None, :, None], 224, axis=0), 3, axis=2)
    out = corrupt(ramp, "pixelate", 2)
    np.testing.assert_array_equal(out[0, :6, 0], [1, 1, 3, 3, 5, 5])  # OpenCV rounds (2k + 2k+1) / 2 half up


def test_blur_kernels():
    np.testing.assert_array_equal(disk_kernel(0.0), [[0, 0, 0], [0, 1, 0], [0, 0, 0]])  # the identity
    k = disk_kernel(3.0)
    assert k.shape == (9, 9) and k.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    assert k[4, 4] == k.max() and k[0, 0] == 0.0
    line = motion_kernel(8.0, 0.0)
    assert line.sum() == pytest.approx(1.0)
    centre = line.shape[0] // 2
    assert np.count_nonzero(line) == np.count_nonzero(line[centre]) == 9  # a horizontal line, -4..4 px
    np.testing.assert_allclose(motion_kernel(8.0, 90.0), line.T, atol=1e-12)


def test_corrupt_errors(tench):
    with pytest.raises(ConfigError, match="Did you mean 'gaussian_noise'"):
        corrupt(tench, "gausian_noise", 1)
    with pytest.raises(ConfigError, match="unknown corruption 'snow'"):
        corrupt(tench, "snow", 1)
    for severity in (0, 6, 2.5, True, "3"):
        with pytest.raises(ConfigError, match="severity"):
            corrupt(tench, "fog", severity)
    corrupt(tench, "fog", np.int64(2))  # numpy integers are fine
    for bad in (tench.astype(np.float32), tench[:, :, 0], np.dstack([tench, tench[:, :, :1]]),
                tench[:0], tench.tolist()):
        with pytest.raises(InvalidInput):
            corrupt(bad, "contrast", 1)


# --------------------------------------------------------------------------- grid


def test_corruption_grid_layout(tench):
    grid = corruption_grid(tench, seed=2, corruptions=("fog", "pixelate"), severities=(5, 1), labels=False)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 224 + 4, 3 * 224 + 2 * 4, 3)
    # Rows in CORRUPTIONS order (pixelate, fog), columns clean then ascending severities.
    np.testing.assert_array_equal(grid[:224, :224], tench)
    np.testing.assert_array_equal(grid[:224, 228:452], corrupt(tench, "pixelate", 1, seed=2))
    np.testing.assert_array_equal(grid[228:, 456:], corrupt(tench, "fog", 5, seed=2))
    labelled = corruption_grid(tench, corruptions=("fog",), severities=(1,), tile=112)
    assert labelled.shape == (28 + 112, 150 + 2 * 112 + 4, 3)
    with pytest.raises(ConfigError, match="Did you mean 'fog'"):
        corruption_grid(tench, corruptions=("fgo",))


# --------------------------------------------------------------------------- report


def test_report_properties_and_dict():
    report = CorruptionReport(
        seed=4,
        num_samples=10,
        severities=(1, 2, 3),
        clean_accuracy=0.8,
        accuracy={"fog": (0.7, 0.5, 0.1), "gaussian_noise": (0.6, 0.1, 0.4)},
    )
    assert report.mean_accuracy == pytest.approx(2.4 / 6)
    assert report.relative_accuracy == pytest.approx(0.4 / 0.8)
    # Tie at 0.1: gaussian_noise comes first in CORRUPTIONS, whatever the dict's order.
    assert report.worst == ("gaussian_noise", 2, 0.1)
    d = report.to_dict()
    assert d == {
        "seed": 4,
        "num_samples": 10,
        "severities": [1, 2, 3],
        "clean_accuracy": 0.8,
        "accuracy": {"gaussian_noise": [0.6, 0.1, 0.4], "fog": [0.7, 0.5, 0.1]},
        "mean_accuracy": pytest.approx(0.4),
        "relative_accuracy": pytest.approx(0.5),
        "worst": {"corruption": "gaussian_noise", "severity": 2, "accuracy": 0.1},
    }
    assert list(d["accuracy"]) == ["gaussian_noise", "fog"]
    table = report.format_table()
    lines = table.splitlines()
    assert lines[1].split() == ["corruption", "clean", "s1", "s2", "s3"]
    assert lines[3].split() == ["gaussian_noise", "0.8000", "0.6000", "0.1000", "0.4000"]
    assert lines[4].split() == ["fog", "0.8000", "0.7000", "0.5000", "0.1000"]
    assert lines[6].split() == ["mean", "0.8000", "0.6500", "0.3000", "0.2500"]
    assert "relative 0.5000" in table and "worst: gaussian_noise at severity 2: 0.1000" in table

    # Same-severity tie within one corruption goes to the lowest severity; a zero clean accuracy.
    zero = CorruptionReport(0, 5, (1, 2), 0.0, {"fog": (0.0, 0.0)})
    assert zero.relative_accuracy == 0.0 and zero.worst == ("fog", 1, 0.0)
    empty = CorruptionReport(0, 5, (1,), 0.5, {})
    assert empty.mean_accuracy == 0.0 and empty.worst is None and empty.to_dict()["worst"] is None


# --------------------------------------------------------------------------- evaluation


def test_accuracy_falls_with_severity_on_imagenette_val(classifier, imagenette_manifest):
    """The acceptance check: noise and blur hurt the default model, more at each severity."""
    names = ("gaussian_noise", "defocus_blur", "motion_blur")
    report = evaluate_corruptions(classifier, imagenette_manifest, split="val", corruptions=names, batch_size=50)
    print("\n" + report.format_table())
    assert report.num_samples == 150
    assert report.severities == SEVERITIES
    assert list(report.accuracy) == list(names)
    clean = report.clean_accuracy
    assert clean == pytest.approx(110 / 150)  # evaluate_classifier's top-1 on this split
    for name in names:
        acc = report.accuracy[name]
        assert clean >= acc[0] >= acc[1] >= acc[2] >= acc[3] >= acc[4], (name, clean, acc)
        assert acc[4] < clean - 0.1, (name, clean, acc)
    assert report.worst is not None and report.worst[2] == min(min(a) for a in report.accuracy.values())


def test_evaluation_is_deterministic_and_independent_of_batch_size(classifier, imagenette_manifest):
    ds = ClassificationDataset.load(imagenette_manifest).subset("val")
    small = ClassificationDataset.from_samples(ds.samples[::10], ds.classes)  # 15 images of all 10 classes
    kw = {"corruptions": ("motion_blur", "fog"), "severities": (2, 5), "seed": 11}
    a = evaluate_corruptions(classifier, small, batch_size=4, **kw)
    b = evaluate_corruptions(classifier, small, batch_size=32, **kw)
    assert a == b
    assert a.num_samples == 15
    # The same numbers by hand: image i corrupted with image_seed(seed, i).
    index = {label: i for i, label in enumerate(classifier.labels)}
    y = np.array([index[s.label] for s in small.samples])
    arrays = [np.asarray(classifier.decode(s.path)) for s in small.samples]
    damaged = [Image.fromarray(corrupt(x, "fog", 5, seed=image_seed(11, i))) for i, x in enumerate(arrays)]
    pred = classifier.logits(classifier.preprocess(damaged)).argmax(axis=1)
    assert a.accuracy["fog"][1] == float((pred == y).sum()) / 15


def test_unreadable_images_are_skipped(classifier, imagenette_rows, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows = [r for r in imagenette_rows if r["split"] == "val"][:3]
    rows.append({"path": str(broken), "label": rows[0]["label"], "split": "val"})
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    report = evaluate_corruptions(classifier, manifest, corruptions=("brightness",), severities=(1,), batch_size=2)
    assert report.num_samples == 3
    assert report.to_dict()["accuracy"].keys() == {"brightness"}


def test_evaluation_validates_arguments_up_front(classifier, imagenette_manifest):
    with pytest.raises(ConfigError, match="Did you mean 'motion_blur'"):
        evaluate_corruptions(classifier, imagenette_manifest, corruptions=("motion_blurr",))
    with pytest.raises(ConfigError, match="no corruptions"):
        evaluate_corruptions(classifier, imagenette_manifest, corruptions=())
    with pytest.raises(ConfigError, match="severity"):
        evaluate_corruptions(classifier, imagenette_manifest, severities=(1, 7))
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate_corruptions(classifier, imagenette_manifest, batch_size=0)
    with pytest.raises(ConfigError, match="split"):
        evaluate_corruptions(classifier, imagenette_manifest, split="vall")
