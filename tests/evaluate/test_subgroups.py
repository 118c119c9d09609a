"""Subgroup reports: a darkened lighting group is flagged, intervals are reproducible,
small groups are marked, never hidden; detection subgroups score AP50."""

from __future__ import annotations

import numpy as np
import pytest

from visor.errors import ConfigError
from visor.evaluate.bootstrap import BootstrapConfig, ClassificationOutcomes, wilson_interval
from visor.evaluate.classifier import evaluate_classifier
from visor.evaluate.subgroups import MISSING, detection_subgroups, group_column, judge_groups
from visor.types import Detections

LIGHTING = ("dark", "office", "daylight")


def _lighting_rows(imagenette_rows, imagenette_variant) -> list[dict[str, str]]:
    val = [r for r in imagenette_rows if r["split"] == "val"]
    dark = imagenette_variant("dark")
    rows = []
    for i, (row, dark_row) in enumerate(zip(val, dark, strict=True)):
        group = LIGHTING[i % 3]
        rows.append({**(dark_row if group == "dark" else row), "lighting": group,
                     "site": "small" if i % 10 == 0 else "main"})
    return rows


def test_judge_groups_table():
    scored = [("a", 50, 0.90, (0.82, 0.96)), ("b", 50, 0.40, (0.27, 0.54)), ("c", 50, 0.85, (0.75, 0.93)),
              ("d", 5, 0.20, (0.0, 0.6))]
    best, groups = judge_groups(scored, min_size=30)
    assert best == "a"
    assert [(g.group, g.status) for g in groups] == [("a", "best"), ("b", "worse"), ("c", "ok"), ("d", "too_small")]
    assert groups[1].gap == pytest.approx(-0.5)
    assert groups[3].score == 0.2 and groups[3].ci == (0.0, 0.6)  # reported, not hidden
    # nobody big enough: nothing is judged
    best, groups = judge_groups([("x", 3, 1.0, (1.0, 1.0))], min_size=30)
    assert best is None and groups[0].status == "too_small" and np.isnan(groups[0].gap)


def test_group_column_missing_values_and_suggestions():
    meta = [{"lighting": "dark"}, {"lighting": ""}, {}]
    assert group_column(meta, "lighting") == ["dark", MISSING, MISSING]
    with pytest.raises(ConfigError, match="Did you mean 'lighting'"):
        group_column(meta, "lightning")
    with pytest.raises(ConfigError, match="none"):
        group_column([{}], "site")


def test_the_darkened_group_is_flagged(imagenette_rows, imagenette_variant, classifier, write_manifest, tmp_path):
    rows = _lighting_rows(imagenette_rows, imagenette_variant)
    manifest = write_manifest(tmp_path / "lighting.csv", rows)
    ev = evaluate_classifier(classifier, manifest, by=["lighting", "site"])
    lighting, site = ev.subgroups
    assert lighting.column == "lighting" and lighting.metric == "accuracy"
    dark = lighting.group("dark")
    others = [lighting.group(g) for g in ("office", "daylight")]
    assert dark.n == 50 and all(g.n == 50 for g in others)
    assert dark.status == "worse" and lighting.flagged == (dark,)
    for g in others:  # the dark group's interval excludes every other group's
        assert dark.ci[1] < g.ci[0], (dark, g)
        assert g.status in ("best", "ok")
    assert lighting.best in ("office", "daylight")
    assert dark.gap < -0.3
    # the scores are the plain accuracies of each group
    pred = ev.probs.argmax(axis=1)
    groups = np.array([r["lighting"] for r in rows])
    assert dark.score == pytest.approx(float(np.mean(pred[groups == "dark"] == ev.targets[groups == "dark"])))
    # a group under the minimum size is reported, marked too small
    small = site.group("small")
    assert small.n == 15 and small.status == "too_small" and 0 <= small.score <= 1
    # accuracy is a proportion: its interval is Wilson's (12 of 50 right: [0.1430, 0.3741]), the same
    # for every bootstrap seed; it was a seeded percentile bootstrap
    again = evaluate_classifier(classifier, manifest, by=["lighting"])
    assert again.subgroups[0].to_dict() == lighting.to_dict()
    assert dark.score == 0.24 and dark.ci == wilson_interval(12, 50)
    assert (round(dark.ci[0], 4), round(dark.ci[1], 4)) == (0.1430, 0.3741)
    for g in lighting.groups:
        assert g.ci == wilson_interval(round(g.score * g.n), g.n)
    reseeded = evaluate_classifier(classifier, manifest, by=["lighting"], bootstrap=BootstrapConfig(seed=1))
    assert reseeded.subgroups[0].group("dark").ci == dark.ci
    assert reseeded.subgroups[0].group("dark").score == dark.score
    # the JSON form
    d = ev.to_dict()["subgroups"][0]
    assert d["column"] == "lighting" and d["level"] == 0.95 and d["resamples"] == 1000 and d["min_size"] == 30
    assert d["interval"] == "wilson"
    assert {g["group"]: g["status"] for g in d["groups"]}["dark"] == "worse"
    assert "WORSE" in ev.format_table() and "too small to judge" in ev.format_table()


def test_unknown_column_fails_before_inference(imagenette_manifest, classifier):
    with pytest.raises(ConfigError, match="no sample has a metadata column 'lighting'"):
        evaluate_classifier(classifier, imagenette_manifest, by=["lighting"])


def test_macro_f1_subgroups():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    p = np.eye(2)[np.array([0, 1, 0, 1, 1, 0, 1, 0])] * 0.8 + 0.1
    from visor.evaluate.subgroups import classification_subgroups

    o = ClassificationOutcomes.from_probabilities(y, p)
    r = classification_subgroups(o, ["a"] * 4 + ["b"] * 4, "g", metric="macro_f1", min_size=2)
    assert r.group("a").score == 1.0 and r.group("b").score == 0.0
    assert r.group("a").ci == (1.0, 1.0) and r.group("b").ci == (0.0, 0.0)
    assert r.group("b").status == "worse"


def test_detection_subgroups_score_ap50():
    def gt(boxes):
        b = np.asarray(boxes, float)
        return Detections(xyxy=b, confidence=np.ones(len(b)), class_id=np.zeros(len(b), int))

    truth = [gt([[10, 10, 50, 50]]) for _ in range(6)]
    hit = gt([[11, 11, 50, 50]])
    miss = gt([[100, 100, 140, 140]])
    preds = [hit, hit, hit, miss, miss, miss]
    r = detection_subgroups(truth, preds, ["cell"], ["day"] * 3 + ["night"] * 3, "lighting",
                            config=BootstrapConfig(resamples=20), min_size=3)
    assert r.metric == "ap50"
    assert r.group("day").score == pytest.approx(1.0) and r.group("day").ci == (pytest.approx(1.0), pytest.approx(1.0))
    assert r.group("night").score == 0.0 and r.group("night").status == "worse"
