"""The self-contained HTML evaluation report.

Built from a real report: the default classifier's probabilities on 20 imagenette-dev val
images, measured with :func:`classification_report` and :func:`reliability_bins`, plus
subgroup and corruption results written by hand and mistakes that point at the real images
(and one missing file). The browser test opens the page in Debian's chromium through
Playwright, as tests/serve/test_ui.py does: it needs ``/usr/bin/chromium`` (``VISOR_CHROMIUM``
overrides the path) and skips without it, or fails when ``CI=true``. With
``VISOR_REPORT_SCREENSHOT=/some/file.png`` it also copies its full-page screenshot there.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.errors import InvalidInput
from visor.evaluate.calibration import reliability_bins
from visor.evaluate.metrics import classification_report
from visor.evaluate.report_html import (
    MAX_CHART_CLASSES,
    MAX_CONFUSION_CLASSES,
    present_classes,
    render_report_html,
    write_report_html,
)

NASTY = 'tench <b>&"'
NASTY_ESCAPED = "tench &lt;b&gt;&amp;&quot;"
SECTIONS = ("Summary metrics", "Per-class results", "Confusion matrix", "Calibration", "Subgroups",
            "Robustness to corruptions", "Example mistakes")
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "motion_blur", "jpeg_compression", "brightness", "contrast",
               "pixelate", "fog")


def _section(page: str, anchor: str) -> str:
    """The HTML of the ``<section id=anchor>``."""
    m = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert m is not None, f"no section {anchor}"
    return m.group(1)


def _subgroup_reports() -> list[dict]:
    lighting = {
        "column": "lighting", "metric": "accuracy", "level": 0.95, "resamples": 1000, "seed": 0, "min_size": 30,
        "best": "normal",
        "groups": [
            {"group": "normal", "n": 75, "score": 0.94, "ci": [0.88, 0.99], "gap": 0.0, "status": "best"},
            {"group": "dark", "n": 75, "score": 0.61, "ci": [0.50, 0.72], "gap": -0.33, "status": "worse"},
            {"group": "dusk", "n": 40, "score": 0.85, "ci": [0.72, 0.95], "gap": -0.09, "status": "ok"},
        ],
    }
    camera = {
        "column": "camera", "metric": "accuracy", "level": 0.95, "resamples": 1000, "seed": 0, "min_size": 30,
        "best": "phone",
        "groups": [
            {"group": "phone", "n": 120, "score": 0.82, "ci": [0.75, 0.88], "gap": 0.0, "status": "best"},
            {"group": "dslr", "n": 24, "score": 0.92, "ci": [0.79, 1.0], "gap": 0.1, "status": "too_small"},
            {"group": NASTY, "n": 6, "score": 0.5, "ci": [0.17, 0.83], "gap": -0.32, "status": "too_small"},
        ],
    }
    return [lighting, camera]


def _corruption_report(clean: float) -> dict:
    acc = {name: [round(clean * (1 - 0.08 * s) - 0.01 * k, 3) for s in range(1, 6)]
           for k, name in enumerate(CORRUPTIONS)}
    acc["fog"] = [round(clean * 0.95, 3), round(clean * 0.8, 3), round(clean * 0.6, 3), 0.25, 0.2]
    assert min(min(v) for k, v in acc.items() if k != "fog") > 0.2
    mean = float(np.mean([v for vals in acc.values() for v in vals]))
    return {"seed": 0, "num_samples": 20, "severities": [1, 2, 3, 4, 5], "clean_accuracy": clean, "accuracy": acc,
            "mean_accuracy": mean, "relative_accuracy": mean / clean,
            "worst": {"corruption": "fog", "severity": 5, "accuracy": 0.2}}


@pytest.fixture(scope="module")
def real_report(classifier, imagenette_rows, tmp_path_factory) -> dict:
    """A report dict as ``visor evaluate --json`` gives it, from real predictions on 20 val images."""
    val = [r for r in imagenette_rows if r["split"] == "val"]
    rows = [r for i, r in enumerate(val) if i % 15 < 2]  # 2 of the 15 images of each of the 10 classes
    assert len(rows) == 20
    labels = list(classifier.labels)
    y = np.array([labels.index(r["label"]) for r in rows])
    probs = classifier.predict_proba([r["path"] for r in rows])
    rep = classification_report(y, probs, labels).to_dict()
    pred = probs.argmax(axis=1)
    predicted = set(pred.tolist())
    per_class = {}
    for i, name in enumerate(labels):
        m = rep["per_class"][name]
        if m["support"] > 0 or i in predicted:
            per_class[name] = {**m, "recall_ci": [max(0.0, m["recall"] - 0.3), min(1.0, m["recall"] + 0.2)],
                               "f1_ci": [max(0.0, m["f1"] - 0.3), min(1.0, m["f1"] + 0.2)]}
    rep["per_class"] = per_class
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])]
    mistakes = [{"path": rows[i]["path"], "label": labels[y[i]], "predicted": labels[pred[i]],
                 "confidence": float(probs[i, pred[i]])} for i in wrong]
    missing = str(tmp_path_factory.mktemp("gone") / "deleted.jpg")
    mistakes.append({"path": missing, "label": labels[y[0]], "predicted": labels[(y[0] + 1) % 1000],
                     "confidence": 0.42})
    acc = rep["accuracy"]
    rep.update({
        "model": classifier.name, "split": "val", "temperature": 1.0,
        "ece_before_scaling": rep["ece"], "ece_after_scaling": rep["ece"],
        "skipped_files": [[missing, "ImageNotFound: no such file"]],
        "confidence_intervals": {"level": 0.95, "resamples": 1000, "seed": 0,
                                 "accuracy": [max(0.0, acc - 0.2), min(1.0, acc + 0.15)],
                                 "macro_f1": [max(0.0, rep["macro_f1"] - 0.2), min(1.0, rep["macro_f1"] + 0.15)],
                                 "top5_accuracy": [0.8, 1.0], "ece": [0.02, 0.2]},
        "reliability": reliability_bins(probs, y),
        "subgroups": _subgroup_reports(),
        "corruptions": _corruption_report(acc),
        "mistakes": mistakes,
    })
    # One label with HTML in it, everywhere it appears (tench is class 0, present in imagenette).
    old = labels[0]
    assert old in rep["per_class"]
    rep["labels"] = [NASTY if s == old else s for s in rep["labels"]]
    rep["per_class"] = {(NASTY if k == old else k): v for k, v in rep["per_class"].items()}
    for m in rep["mistakes"]:
        for key in ("label", "predicted"):
            m[key] = NASTY if m[key] == old else m[key]
    return rep


def test_report_has_every_section_and_is_self_contained(real_report):
    page = render_report_html(real_report)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    for m in re.finditer(r'(?:src|href)="([^"]*)"', page):
        assert m.group(1).startswith(("data:image/jpeg;base64,", "#")), m.group(1)
    header = page.split("<h2>", 1)[0]
    assert "efficientnet_lite0" in header and ">val<" in header and ">20<" in header
    assert 'skipped files</td><td><span class="bad">1</span>' in header
    # Six charts: per-class, confusion, reliability, two subgroup columns, corruptions.
    svgs = re.findall(r"<svg[^>]*>\s*<title>[^<]+</title>", page)
    assert len(svgs) == page.count("<svg") == 6
    assert all('role="img"' in s and re.search(r'viewBox="0 0 \d+ \d+"', s) for s in svgs)


def test_summary_metrics_with_intervals(real_report):
    summary = _section(render_report_html(real_report), "summary")
    acc, ci = real_report["accuracy"], real_report["confidence_intervals"]["accuracy"]
    assert f"<td>accuracy (top-1)</td><td>{100 * acc:.1f}%</td><td>{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%</td>" in summary
    assert "<td>top-5 accuracy</td>" in summary and "<td>80.0–100.0%</td>" in summary
    assert f"<td>{real_report['ece']:.4f}</td><td>0.0200–0.2000</td>" in summary
    assert "<td>temperature T</td><td>1.000</td>" in summary
    assert "percentile bootstrap, 1000 resamples, seed 0" in summary


def test_labels_are_escaped(real_report):
    page = render_report_html(real_report)
    assert NASTY not in page and "<b>" not in page
    assert NASTY_ESCAPED in _section(page, "per-class")
    assert NASTY_ESCAPED in _section(page, "confusion")
    assert NASTY_ESCAPED in _section(page, "subgroups")
    title = render_report_html(real_report, title="<i>mine</i>")
    assert "<title>&lt;i&gt;mine&lt;/i&gt;</title>" in title and "<i>" not in title


def test_per_class_and_confusion_cover_the_classes_present(real_report):
    page = render_report_html(real_report)
    present = present_classes(real_report)
    assert 10 <= len(present) <= 20
    per_class = _section(page, "per-class")
    with_images = [n for n in present if real_report["per_class"][n]["support"] > 0]
    assert f"All {len(with_images)} classes with images" in per_class
    assert per_class.count("<tr><td>") == len(with_images)
    assert re.search(r"<title>Recall per class with 95% confidence intervals</title>", per_class)
    # Classes predicted but without images get no bar or row: one line names them with their counts.
    only_predicted = [n for n in present if real_report["per_class"][n]["support"] == 0]
    assert only_predicted, "expected some wrong predictions into classes outside imagenette"
    assert f"Also predicted, though no evaluation image has the label ({len(only_predicted)} classes" in per_class
    for name in only_predicted:
        assert f"<tr><td>{html.escape(name)}</td>" not in per_class
        column = real_report["labels"].index(name)
        times = sum(row[column] for row in real_report["confusion"])
        assert f"{html.escape(name)} ({times}×)" in per_class
    confusion = _section(page, "confusion")
    # One row per class with images, and "other" for the classes only predicted.
    assert confusion.count('text-anchor="end" fill="#333333"') == len(with_images) + 1
    assert f"the other {len(only_predicted)} classes present (with images or only predicted)" in confusion
    # Counts written in the cells add up to the number of images.
    counts = [int(c) for c in re.findall(r'<text [^>]*text-anchor="middle" fill="#[0-9a-f]+"[^>]*>(\d+)</text>',
                                         confusion)]
    assert sum(counts) == real_report["num_samples"]


def test_reliability_subgroups_and_corruptions(real_report):
    page = render_report_html(real_report)
    cal = _section(page, "calibration")
    assert f"ECE {real_report['ece']:.4f} (95% CI 0.0200–0.2000) over 15 bins" in cal
    nonempty = [b for b in real_report["reliability"] if b["count"] > 0]
    assert cal.count('fill="#4c78a8" fill-opacity="0.85"') == len(nonempty)

    sub = _section(page, "subgroups")
    assert sub.count("<svg") == 2
    assert 'fill="#c62828"' in sub  # the worse group in red
    assert 'fill="#2e7d32"' in sub  # the best group highlighted
    assert sub.count("n=24 · too small to judge") == 1 and sub.count('fill="#c8c8c8"') == 2
    assert "<td>dark</td><td>75</td><td>61.0%</td><td>50.0–72.0%</td><td>-33.0 pts</td>" in sub
    assert '<span class="status-worse">worse</span>' in sub
    assert '<span class="status-too_small">too small to judge</span>' in sub
    assert "Worse than the best group (normal): dark." in sub

    cor = _section(page, "corruptions")
    for name in CORRUPTIONS:
        assert f">{name}</text>" in cor
    assert ">20.0%</text>" in cor and "fog at severity 5: 20.0%" in cor
    assert 'stroke="#111" stroke-width="2.5"' in cor  # the worst cell outlined
    rel = real_report["corruptions"]["relative_accuracy"]
    assert f"<td>relative accuracy (mean / clean)</td><td>{100 * rel:.1f}%</td>" in cor


def test_mistakes_show_thumbnails_and_a_placeholder(real_report):
    section = _section(render_report_html(real_report, thumb_size=64), "mistakes")
    real = [m for m in real_report["mistakes"] if Path(m["path"]).is_file()]
    assert real, "the classifier got all 20 images right; the test needs a real mistake"
    uris = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', section)
    assert len(uris) == len(real)
    img = Image.open(io.BytesIO(base64.b64decode(uris[0])))
    assert img.format == "JPEG" and max(img.size) == 64
    assert section.count("image not available") == 1
    first = real[0]
    assert f"({100 * first['confidence']:.1f}%)" in section
    assert "deleted.jpg" in section


def test_absent_parts_are_said_briefly(real_report):
    bare = {**real_report, "subgroups": [], "corruptions": None, "mistakes": [], "reliability": [],
            "confidence_intervals": {}}
    page = render_report_html(bare)
    assert "No subgroup analysis was run" in _section(page, "subgroups")
    assert "No corruption benchmark was run." in _section(page, "corruptions")
    assert "No mistakes to show." in _section(page, "mistakes")
    assert "No reliability bins were recorded." in _section(page, "calibration")
    assert "No confidence intervals were recorded." in _section(page, "summary")
    assert page.count("<svg") == 2  # per-class and confusion only
    empty = render_report_html({})
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in empty
    assert "No per-class results were recorded." in empty and "No confusion matrix was recorded." in empty
    assert "<svg" not in empty


def test_a_thousand_labels_stay_small_and_capped():
    """An ImageNet-sized report (1000 labels, 1000x1000 confusion, per_class for every label) with 60
    classes present: the per-class chart shows the 40 with most images, the heat-map 30 plus "other"."""
    rng = np.random.default_rng(1)
    labels = [f"class-{i:04d}" for i in range(1000)]
    present = [16 * k for k in range(60)]  # class id 16k has 70 - k images
    y = np.concatenate([np.full(70 - k, c) for k, c in enumerate(present)])
    pred = np.where(rng.random(len(y)) < 0.7, y, rng.choice(present, len(y)))
    probs = np.full((len(y), 1000), 0.1 / 999, np.float32)
    probs[np.arange(len(y)), pred] = 0.9
    rep = classification_report(y, probs, labels).to_dict()
    assert len(rep["per_class"]) == 1000 and len(rep["confusion"]) == 1000
    rep.update({"model": "big", "split": "val", "reliability": reliability_bins(probs, y)})
    page = render_report_html(rep)
    assert len(page.encode()) < 1_500_000
    assert len(present_classes(rep)) == 60
    per_class = _section(page, "per-class")
    assert f"Showing the {MAX_CHART_CLASSES} classes with the most images, of 60 classes with images" in per_class
    assert per_class.count("<tr><td>") == MAX_CHART_CLASSES
    shown = {f"class-{c:04d}" for c in present[:MAX_CHART_CLASSES]}
    for name in (f"class-{c:04d}" for c in present):
        assert (f"<tr><td>{name}</td>" in per_class) == (name in shown)
    assert "class-0001" not in page  # neither in the data nor predicted
    confusion = _section(page, "confusion")
    assert f"The {MAX_CONFUSION_CLASSES} classes with the most images get their own row and column; the other " \
           "30 classes present (with images or only predicted) are folded into “other”." in confusion
    assert confusion.count('text-anchor="end" fill="#333333"') == MAX_CONFUSION_CLASSES + 1
    counts = [int(c) for c in re.findall(r'<text [^>]*text-anchor="middle" fill="#[0-9a-f]+"[^>]*>(\d+)</text>',
                                         confusion)]
    assert sum(counts) == len(y)


def test_write_is_atomic_and_checks_input(real_report, tmp_path):
    out = write_report_html(real_report, tmp_path / "sub" / "report.html", thumb_size=48)
    assert out == tmp_path / "sub" / "report.html"
    assert out.read_text(encoding="utf-8") == render_report_html(real_report, thumb_size=48)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]
    with pytest.raises(InvalidInput, match="mapping"):
        render_report_html([("model", "x")])
    with pytest.raises(InvalidInput, match="thumb_size"):
        render_report_html(real_report, thumb_size=0)


def test_report_opens_in_chromium_without_errors(real_report, tmp_path, chromium):
    """Acceptance: the page loads in headless chromium with no console errors and every chart drawn."""
    path = write_report_html(real_report, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    errors: list[str] = []
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        charts = page.locator("svg.chart")
        assert charts.count() == 6
        for i in range(charts.count()):
            box = charts.nth(i).bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 50, (i, box)
        # Thumbnails decoded (naturalWidth > 0) and the placeholder shown for the missing file.
        widths = page.eval_on_selector_all("#mistakes img", "els => els.map(e => e.naturalWidth)")
        assert widths and all(w > 0 for w in widths)
        assert page.locator("#mistakes .missing").count() == 1
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()
    assert errors == []
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    assert shot.stat().st_size > 10_000
    target = os.environ.get("VISOR_REPORT_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def test_summary_names_wilson_and_a_set_too_small(real_report):
    from visor.evaluate.bootstrap import INTERVAL_METHODS

    cis = {**real_report["confidence_intervals"], "methods": dict(INTERVAL_METHODS), "too_small": True}
    summary = _section(render_report_html({**real_report, "num_samples": 12, "confidence_intervals": cis}), "summary")
    assert ("95% confidence intervals: Wilson score for accuracy and top-5 accuracy; percentile bootstrap, 1000 "
            "resamples, seed 0, for macro F1 and ECE. Only 12 images: too few to judge; the intervals show how "
            "little they say.") in html.unescape(summary)
