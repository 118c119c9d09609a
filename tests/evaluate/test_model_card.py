"""The Markdown model card written from an evaluation report.

The report is written by hand with round numbers so that every expected line can be spelled
out exactly: 3 classes (one of them with a label full of Markdown and HTML punctuation), a
subgroup column with a worse group and one with groups too small to judge, and a corruption
benchmark.
"""

from __future__ import annotations

import re

import pytest

from visor.errors import InvalidInput
from visor.evaluate.model_card import (
    FILL_IN,
    MEASURED_ONLY,
    limitations,
    md,
    render_model_card,
    write_model_card,
)
from visor.models.card import ModelCard, WeightsSource

NASTY = "cat <b>|&_*"
SHA = "57934424" * 8
SECTIONS = ["Model details", "Intended use", "Training data", "Evaluation data", "Metrics", "Subgroup results",
            "Robustness", "Calibration", "Limitations"]


def _report(**changes) -> dict:
    """A 3-class report over 60 images (dog 30, NASTY 20, bird 10); "wolf" was predicted but has no images."""
    labels = ["dog", NASTY, "bird", "wolf", "fish"]
    confusion = [[27, 2, 0, 1, 0], [4, 16, 0, 0, 0], [1, 5, 4, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    report = {
        "model": "pets_v1", "split": "test", "labels": labels, "num_samples": 60,
        "accuracy": 0.7833, "top5_accuracy": 0.95, "top_k": 5,
        "macro_precision": 0.8, "macro_recall": 0.6667, "macro_f1": 0.6903,
        "per_class": {
            "dog": {"precision": 0.8438, "recall": 0.9, "f1": 0.871, "support": 30, "recall_ci": [0.8, 0.9677],
                    "f1_ci": [0.79, 0.93]},
            NASTY: {"precision": 0.6957, "recall": 0.8, "f1": 0.7442, "support": 20, "recall_ci": [0.6, 0.95],
                    "f1_ci": [0.6, 0.86]},
            "bird": {"precision": 1.0, "recall": 0.4, "f1": 0.5714, "support": 10, "recall_ci": [0.1, 0.7],
                     "f1_ci": [0.2, 0.82]},
            "wolf": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "recall_ci": [0.0, 0.0],
                     "f1_ci": [0.0, 0.0]},
        },
        "confusion": confusion,
        "ece": 0.0712, "ece_bins": 15, "nll": 0.6543, "temperature": 1.4,
        "ece_before_scaling": 0.1234, "ece_after_scaling": 0.0712,
        "skipped_files": [["/data/broken.jpg", "CorruptImage: cannot decode"]],
        "confidence_intervals": {"level": 0.95, "resamples": 1000, "seed": 0, "accuracy": [0.6833, 0.8833],
                                 "macro_f1": [0.5712, 0.8049], "top5_accuracy": [0.9, 1.0], "ece": [0.0401, 0.1502]},
        "reliability": [],
        "subgroups": [
            {"column": "lighting", "metric": "accuracy", "level": 0.95, "resamples": 1000, "seed": 0, "min_size": 10,
             "best": "day",
             "groups": [{"group": "day", "n": 35, "score": 0.9143, "ci": [0.8286, 1.0], "gap": 0.0, "status": "best"},
                        {"group": "night", "n": 25, "score": 0.6, "ci": [0.4, 0.8], "gap": -0.3143,
                         "status": "worse"}]},
            {"column": "camera", "metric": "accuracy", "level": 0.95, "resamples": 1000, "seed": 0, "min_size": 30,
             "best": "phone",
             "groups": [{"group": "phone", "n": 52, "score": 0.79, "ci": [0.6731, 0.8846], "gap": 0.0,
                         "status": "best"},
                        {"group": "dslr", "n": 8, "score": 0.75, "ci": [0.375, 1.0], "gap": -0.04,
                         "status": "too_small"}]},
        ],
        "corruptions": {
            "seed": 0, "num_samples": 60, "severities": [1, 2, 3, 4, 5], "clean_accuracy": 0.7833,
            "accuracy": {"gaussian_noise": [0.75, 0.7, 0.6, 0.5, 0.4], "defocus_blur": [0.7, 0.65, 0.6, 0.55, 0.5],
                         "fog": [0.7, 0.6, 0.45, 0.3, 0.15], "brightness": [0.78, 0.77, 0.75, 0.72, 0.7]},
            "mean_accuracy": 0.6, "relative_accuracy": 0.766,
            "worst": {"corruption": "fog", "severity": 5, "accuracy": 0.15},
        },
        "mistakes": [],
    }
    report.update(changes)
    return report


def _card(**changes) -> ModelCard:
    card = ModelCard(name="pets_v1", task="classification", architecture="efficientnet_lite0",
                     weights=WeightsSource(kind="path", location="model.onnx", sha256=SHA, format="onnx"),
                     labels=("dog", NASTY, "bird", "wolf", "fish"), license="CC-BY-4.0", temperature=1.4,
                     source="visor train classify", metrics={"val_accuracy": 81.2})
    return card.replace(**changes)


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m is not None, f"no section {title}"
    return m.group(1)


def test_card_has_every_section_in_order():
    text = render_model_card(_report(), _card())
    assert text.startswith("# Model card: pets\\_v1\n")
    assert re.findall(r"^## (.+)$", text, re.M) == SECTIONS
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_model_details_come_from_the_card():
    details = _section(render_model_card(_report(), _card()), "Model details")
    assert "- **Architecture:** efficientnet\\_lite0\n" in details
    assert "- **Licence:** CC-BY-4.0\n" in details
    assert "- **Weights:** path `model.onnx` (onnx)\n" in details
    assert f"- **Weights sha256:** `{SHA}`\n" in details
    assert "- **Labels:** 5 classes\n" in details
    assert "- **Softmax temperature:** 1.400 (fitted on validation data)\n" in details
    assert "val\\_accuracy 81.2" in details
    bare = _section(render_model_card(_report()), "Model details")
    assert f"- **Architecture:** not recorded {FILL_IN}" in bare and "sha256" not in bare


def test_metrics_table_with_confidence_intervals():
    metrics = _section(render_model_card(_report(), _card()), "Metrics")
    assert "| Metric | Value | 95% CI |\n| :-- | --: | --: |\n" in metrics
    assert "| Accuracy (top-1) | 78.3% | 68.3–88.3% |\n" in metrics
    assert "| Top-5 accuracy | 95.0% | 90.0–100.0% |\n" in metrics
    assert "| Macro F1 | 69.0% | 57.1–80.5% |\n" in metrics
    assert "| Macro precision | 80.0% | — |\n" in metrics
    assert "| ECE (15 bins) | 0.0712 | 0.0401–0.1502 |\n" in metrics
    assert "percentile bootstrap over images, 1000 resamples, seed 0." in metrics
    # Per class, lowest recall first; the label's punctuation cannot break the table.
    assert "| bird | 100.0% | 40.0% | 10.0–70.0% | 57.1% | 10 |\n" in metrics
    assert "| cat \\<b\\>\\|\\&\\_\\* | 69.6% | 80.0% | 60.0–95.0% | 74.4% | 20 |\n" in metrics
    assert "| wolf |" not in metrics  # predicted, but no images: counted under "Evaluation data" instead
    rows = re.findall(r"^\| (.+?) \| [\d.]+% \| ", metrics.split("Per class (all 3 classes with images;")[1], re.M)
    assert rows == ["bird", md(NASTY), "dog"]
    assert "fish" not in metrics  # neither in the data nor predicted


def test_evaluation_data_and_calibration():
    text = render_model_card(_report(), _card())
    ev = _section(text, "Evaluation data")
    assert "- **Split:** test\n- **Images evaluated:** 60\n" in ev
    assert ("- **Classes with images:** 3 of 5 labels, 10 to 30 images each; 1 more labels were predicted "
            "without being in the data\n") in ev
    assert "- **Unreadable files (skipped, not counted):** 1\n  - `/data/broken.jpg`: CorruptImage: cannot decode" in ev
    cal = _section(text, "Calibration")
    assert "before temperature scaling:** 0.1234\n" in cal
    assert "- **After temperature scaling:** 0.0712 (95% CI 0.0401–0.1502)\n" in cal
    assert "- **Temperature T:** 1.400" in cal


def test_subgroups_and_robustness():
    text = render_model_card(_report())
    sub = _section(text, "Subgroup results")
    assert "### By lighting\n" in sub and "### By camera\n" in sub
    assert "| night | 25 | 60.0% | 40.0–80.0% | -31.4 pts | worse |\n" in sub
    assert "| dslr | 8 | 75.0% | 37.5–100.0% | -4.0 pts | too small to judge |\n" in sub
    assert ("- **Flagged:** lighting = **night** has accuracy 60.0% (95% CI 40.0–80.0%, n=25), against 91.4% "
            "(95% CI 82.9–100.0%) for the best group **day**: a gap of -31.4 pts, with the intervals apart.") in sub
    assert "- No group is measurably worse than the best group (phone)." in sub
    assert "- Too small to judge: dslr (n=8)." in sub
    rob = _section(text, "Robustness")
    assert "| Corruption | Clean | Severity 1 | Severity 2 | Severity 3 | Severity 4 | Severity 5 | Mean |" in rob
    assert "| fog | 78.3% | 70.0% | 60.0% | 45.0% | 30.0% | 15.0% | 44.0% |\n" in rob
    assert "- **Relative accuracy (mean / clean):** 76.6%\n" in rob
    assert "- **Worst case:** fog at severity 5: 15.0%" in rob


def test_limitations_come_from_the_findings():
    lim = _section(render_model_card(_report()), "Limitations")
    items = re.findall(r"^- (.+)$", lim, re.M)
    assert items[0].startswith("The model does measurably worse on one subgroup: lighting = **night** has accuracy")
    assert items[1] == ("Some camera groups are too small to judge (fewer than 30 images): dslr (n=8); how the model "
                        "does on them is unknown.")
    assert items[2] == ("Accuracy drops most under fog (mean 44.0% over severities); gaussian\\_noise (mean 59.0% over "
                        "severities); defocus\\_blur (mean 60.0% over severities), against 78.3% on clean images; the "
                        "worst case is fog at severity 5 with 15.0%.")
    assert items[3] == "Recall is below 50% for 1 class: bird (40.0%)."
    assert items[4].startswith("Confidence scores are not well calibrated (ECE 0.0712 > 0.05)")
    assert items[5].startswith("The evaluation set is small (60 images, fewer than 100)")
    assert items[6] == "1 unreadable file was skipped and not evaluated."
    assert items[7] == MEASURED_ONLY
    assert len(items) == 8


def test_a_clean_report_has_only_the_fixed_limitation():
    good = _report(subgroups=[], corruptions=None, skipped_files=[], num_samples=500, ece=0.02, ece_after_scaling=0.02)
    good["per_class"]["bird"] = {**good["per_class"]["bird"], "recall": 0.7}
    assert limitations(good) == [MEASURED_ONLY]
    text = render_model_card(good)
    assert "No subgroup analysis was run" in _section(text, "Subgroup results")
    assert "Not measured: no corruption benchmark was run." in _section(text, "Robustness")


def test_intended_use_fill_in_marker_or_description():
    without = _section(render_model_card(_report(), _card()), "Intended use")
    assert f"**{FILL_IN}** Describe what this model is for" in without
    assert "- **Out-of-scope uses:**" in without and "assigns one of its 5 labels" in without
    described = _section(render_model_card(_report(), _card(description="Sorts pet photos <fast>.")), "Intended use")
    assert described.startswith("\nSorts pet photos \\<fast\\>.\n")
    assert FILL_IN not in described


def test_training_data_from_a_loose_mapping():
    assert "Not recorded: no training information was given to this card." in _section(
        render_model_card(_report()), "Training data")
    training = {"data": {"data_ref": "pets.csv", "class_counts": {"dog": 300, NASTY: 200, "bird": 50}},
                "epochs_run": 12, "best_epoch": 9, "stopped_early": True, "imbalance_ratio": 6.0,
                "history": [{}] * 12, "val": {"accuracy": 0.9, "macro_f1": 0.85, "num_samples": 55},
                "notes": ["a", "b"], "optimizer": {"name": "adamw", "lr": 0.001}}
    tr = _section(render_model_card(_report(), training=training), "Training data")
    assert "- **Data:** pets.csv\n" in tr
    assert "- **Classes:** 3, 550 images, 50 to 300 per class (largest / smallest: 6.0)\n" in tr
    assert "| dog | 300 |\n| cat \\<b\\>\\|\\&\\_\\* | 200 |\n| bird | 50 |\n" in tr
    assert "- **Epochs run:** 12\n- **Best epoch:** 9\n- **Stopped early:** True\n" in tr
    assert "- **Training history:** 12 epochs recorded\n" in tr
    assert "- **val split during training:** accuracy 90.0%, macro F1 85.0% on 55 images\n" in tr
    assert "- **notes:** 2 entries\n" in tr and "- **optimizer:** name adamw, lr 0.001\n" in tr


def test_markdown_escaping():
    assert md('a|b <i>x</i> & `c` *d* _e_ [f](g) #h\nnext') == (
        "a\\|b \\<i\\>x\\</i\\> \\& \\`c\\` \\*d\\* \\_e\\_ \\[f\\](g) \\#h next")
    text = render_model_card(_report(model="<script>alert(1)</script>"))
    assert "<script>" not in text and "# Model card: \\<script\\>alert(1)\\</script\\>" in text


def test_write_is_atomic_and_checks_input(tmp_path):
    out = write_model_card(_report(), tmp_path / "cards" / "MODEL_CARD.md", _card(), training={"epochs_run": 3})
    assert out.read_text(encoding="utf-8") == render_model_card(_report(), _card(), training={"epochs_run": 3})
    assert [p.name for p in out.parent.iterdir()] == ["MODEL_CARD.md"]
    with pytest.raises(InvalidInput, match="report must be a mapping"):
        render_model_card(["not", "a", "report"])
    with pytest.raises(InvalidInput, match="training must be a mapping"):
        render_model_card(_report(), training=[1, 2])
    with pytest.raises(InvalidInput, match="card must be a ModelCard"):
        render_model_card(_report(), {"name": "x"})


def test_small_set_gets_wilson_wording_too_small_and_the_unfitted_temperature():
    """12 test images used to read '100.0–100.0%' beside 'the intervals are wide'."""
    from visor.evaluate.bootstrap import INTERVAL_METHODS, wilson_interval

    why = "not fitted: 12 validation images, fewer than 50; T = 1 kept"
    cis = {"level": 0.95, "resamples": 1000, "seed": 0, "accuracy": list(wilson_interval(12, 12)),
           "top5_accuracy": list(wilson_interval(12, 12)), "macro_f1": [1.0, 1.0], "ece": [0.01, 0.05],
           "methods": dict(INTERVAL_METHODS), "too_small": True}
    text = render_model_card(_report(num_samples=12, accuracy=1.0, confidence_intervals=cis),
                             _card(temperature=1.0, metrics={"temperature_fit": why}))
    assert "- **Softmax temperature:** 1.000 (not fitted: 12 validation images, fewer than 50; T = 1 kept)\n" in text
    metrics = _section(text, "Metrics")
    assert "| Accuracy (top-1) | 100.0% | 75.8–100.0% |\n" in metrics
    assert ("Confidence intervals: Wilson score intervals for proportions (accuracy, top-k accuracy, per-class "
            "recall), which stay honest at 0% and 100%; percentile bootstrap over images for macro-F1, per-class F1 "
            "and ECE, 1000 resamples, seed 0.") in metrics
    assert ("The evaluation set is too small to judge (12 images, fewer than 30): the confidence intervals are "
            "wide, and an all-correct result says little about the error rate beyond these images.") in text
