"""PR-curve and detection confusion plots write valid PNGs without pyplot."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from visor.errors import InvalidInput
from visor.evaluate import evaluate_detections, plot_detection_confusion, plot_pr_curves
from visor.types.detections import Detections

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 0 and im.size[1] > 0


def no_temp_files_left(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def make_report(num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(6):
        n = 8
        xy = rng.uniform(0, 400, (n, 2))
        xyxy = np.concatenate([xy, xy + rng.uniform(10, 150, (n, 2))], axis=1)
        cls = rng.integers(0, num_classes, n)
        gts.append(Detections(xyxy, np.ones(n), cls))
        jitter = xyxy + rng.normal(0, 5, xyxy.shape)
        preds.append(Detections(jitter, rng.random(n), np.where(rng.random(n) < 0.2, 0, cls)))
    return evaluate_detections(gts, preds, [f"class{k}" for k in range(num_classes)])


@pytest.mark.parametrize("num_classes", [3, 40])
def test_pr_curves_png(tmp_path, num_classes):
    report = make_report(num_classes)
    out = plot_pr_curves(report, tmp_path / "sub" / "pr.png", title="val")
    assert out == tmp_path / "sub" / "pr.png"
    assert_png(out)
    assert no_temp_files_left(out.parent)


def test_pr_curves_selected_classes_and_empty(tmp_path):
    report = make_report(3)
    assert_png(plot_pr_curves(report, str(tmp_path / "some.png"), classes=["class1"]))
    with pytest.raises(InvalidInput):
        plot_pr_curves(report, tmp_path / "bad.png", classes=["zebra"])
    empty = evaluate_detections([Detections.empty()], [Detections.empty()], ["cat"])
    assert_png(plot_pr_curves(empty, tmp_path / "empty.png"))
    with pytest.raises(InvalidInput):
        plot_pr_curves({"ap": 0.5}, tmp_path / "nope.png")


def test_detection_confusion_png(tmp_path):
    report = make_report(3)
    assert_png(plot_detection_confusion(report, tmp_path / "cm.png"))
    assert_png(plot_detection_confusion(report, tmp_path / "raw.png", normalize=False))
    assert no_temp_files_left(tmp_path)


def test_no_pyplot_and_lazy_matplotlib():
    code = textwrap.dedent(
        """
        import sys
        import visor.evaluate
        import visor.evaluate.detection_plots
        assert "matplotlib" not in sys.modules, "matplotlib imported at import time"
        from pathlib import Path
        import tempfile
        from visor.evaluate import evaluate_detections, plot_pr_curves
        from visor.types.detections import Detections
        d = Detections([[0, 0, 10, 10]], [0.9], [0])
        report = evaluate_detections([d], [d], ["cat"])
        with tempfile.TemporaryDirectory() as tmp:
            plot_pr_curves(report, Path(tmp) / "pr.png")
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
