"""Bootstrap intervals: the point estimates equal the report's metrics exactly, and the
intervals are seeded, reproducible and independent of chunking and of other groups."""

from __future__ import annotations

import numpy as np
import pytest

from visor.errors import ConfigError
from visor.evaluate import bootstrap as bs
from visor.evaluate.bootstrap import BootstrapConfig, ClassificationOutcomes
from visor.evaluate.calibration import expected_calibration_error
from visor.evaluate.metrics import classification_report


def _probs(n: int = 200, c: int = 7, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[y] * rng.random((n, 1))
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_point_estimates_equal_the_classification_report():
    y, p = _probs()
    labels = [f"c{i}" for i in range(p.shape[1])]
    report = classification_report(y, p, labels)
    o = ClassificationOutcomes.from_probabilities(y, p, k=report.top_k)
    assert o.point("accuracy") == pytest.approx(report.accuracy, abs=1e-12)
    assert o.point("macro_f1") == pytest.approx(report.macro_f1, abs=1e-12)
    assert o.point("top5_accuracy") == pytest.approx(report.top5_accuracy, abs=1e-12)
    assert o.point("ece") == pytest.approx(expected_calibration_error(p, y), abs=1e-12)


def test_macro_f1_ignores_classes_absent_from_the_resample():
    # class 2 is only ever predicted, never true: it is not averaged in (as classification_report)
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])
    p = np.eye(3)[pred] * 0.9 + 0.05
    o = ClassificationOutcomes.from_probabilities(y, p)
    # class 0: P=1, R=.5, F1=2/3; class 1: P=1, R=1, F1=1 -> macro 5/6
    assert o.point("macro_f1") == pytest.approx(5 / 6)
    pc = o.per_class(np.arange(4)[None, :])
    assert pc["classes"].tolist() == [0, 1, 2]
    assert pc["recall"][0].tolist() == [0.5, 1.0, 0.0]


def test_intervals_are_seeded_reproducible_and_contain_the_point():
    y, p = _probs()
    o = ClassificationOutcomes.from_probabilities(y, p)
    cfg = BootstrapConfig(resamples=500, seed=7)
    for name in bs.CLASSIFICATION_METRICS:
        lo, hi = o.interval(name, cfg)
        assert lo <= o.point(name) <= hi
        assert (lo, hi) == o.interval(name, cfg)
    assert o.interval("macro_f1", cfg) != o.interval("macro_f1", BootstrapConfig(resamples=500, seed=8))
    # a binomial proportion: Wilson, which needs no seed, close to the normal approximation here
    assert o.interval("accuracy", cfg) == o.interval("accuracy", BootstrapConfig(resamples=500, seed=8))
    acc = o.point("accuracy")
    half = 1.96 * np.sqrt(acc * (1 - acc) / len(y))
    lo, hi = o.interval("accuracy", BootstrapConfig(resamples=4000))
    assert lo == pytest.approx(acc - half, abs=0.02) and hi == pytest.approx(acc + half, abs=0.02)


def test_chunking_does_not_change_the_draw(monkeypatch):
    y, p = _probs()
    o = ClassificationOutcomes.from_probabilities(y, p)
    cfg = BootstrapConfig(resamples=300)
    whole = o.interval("macro_f1", cfg)
    monkeypatch.setattr(bs, "_MAX_CELLS", len(y) * 7)  # chunks of 7 resamples
    assert o.interval("macro_f1", cfg) == whole


def test_each_name_gets_its_own_stream():
    cfg = BootstrapConfig()
    a = cfg.rng("lighting", "dark").integers(0, 1000, 5)
    assert a.tolist() == cfg.rng("lighting", "dark").integers(0, 1000, 5).tolist()
    assert a.tolist() != cfg.rng("lighting", "office").integers(0, 1000, 5).tolist()


def test_class_intervals_cover_each_class_with_support():
    y, p = _probs(n=300, c=5)
    o = ClassificationOutcomes.from_probabilities(y, p)
    cis = o.class_intervals(BootstrapConfig(resamples=200))
    report = classification_report(y, p, [str(i) for i in range(5)])
    assert sorted(cis) == [0, 1, 2, 3, 4]
    for c, ci in cis.items():
        assert ci["recall"][0] <= report.per_class[str(c)].recall <= ci["recall"][1]
        assert ci["f1"][0] <= report.per_class[str(c)].f1 <= ci["f1"][1]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"resamples": 5}, "resamples must be at least 10"),
    ({"level": 1.0}, "level must be in"),
    ({"level": 0.2}, "level must be in"),
])
def test_bad_configs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BootstrapConfig(**kwargs)


def test_unknown_metric_suggests():
    y, p = _probs()
    o = ClassificationOutcomes.from_probabilities(y, p)
    with pytest.raises(ConfigError, match="Did you mean 'accuracy'"):
        o.point("acuracy")


@pytest.mark.parametrize(("k", "n", "level"), [(12, 12, 0.95), (0, 12, 0.95), (7, 12, 0.95), (1, 1, 0.9),
                                               (140, 150, 0.95), (99, 100, 0.99), (15, 15, 0.8)])
def test_wilson_interval_matches_scipy(k, n, level):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(level, method="wilson")
    lo, hi = bs.wilson_interval(k, n, level)
    assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)


def test_all_correct_small_set_gets_an_honest_interval_not_1_to_1():
    """12 of 12 right used to give the percentile bootstrap's [1.0000, 1.0000]."""
    y = np.repeat(np.arange(3), 4)
    p = np.eye(3)[y] * 0.9 + 0.05
    o = ClassificationOutcomes.from_probabilities(y, p)
    cfg = BootstrapConfig()
    lo, hi = o.interval("accuracy", cfg)
    assert (round(lo, 4), hi) == (0.7575, 1.0)  # scipy binomtest(12, 12).proportion_ci(method="wilson")
    assert o.interval("top5_accuracy", cfg) == (lo, hi)
    # each class: 4 of 4 recalled, Wilson [0.5101, 1.0]; F1 is not a proportion and keeps the bootstrap
    cis = o.class_intervals(cfg)
    assert {c: (round(v["recall"][0], 4), v["recall"][1]) for c, v in cis.items()} == {
        0: (0.5101, 1.0), 1: (0.5101, 1.0), 2: (0.5101, 1.0)}
    assert bs.INTERVAL_METHODS == {"accuracy": "wilson", "macro_f1": "percentile bootstrap",
                                   "top5_accuracy": "wilson", "ece": "percentile bootstrap"}


def test_wilson_interval_refuses_impossible_counts():
    from visor.errors import InvalidInput

    with pytest.raises(InvalidInput, match="successes"):
        bs.wilson_interval(5, 4)
    with pytest.raises(InvalidInput, match="successes"):
        bs.wilson_interval(0, 0)
