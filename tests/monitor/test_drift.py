"""Drift monitoring: PSI and thresholds exactly, profiles round-trip, and on real data a
profile of dev val does not alert on itself or on the train split, and alerts on darkened
and blurred copies."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from visor.errors import ConfigError, InvalidInput
from visor.monitor import DriftProfile, DriftThresholds, DriftWindow, psi
from visor.monitor.collect import FeatureRunner, build_profile, collect, monitor
from visor.monitor.drift import chi2_quantile, embedding_test, histogram, input_statistics, psi_limit


def test_psi_exact_values():
    assert psi(np.array([10, 10]), np.array([10, 10])) == 0.0
    # smoothed by half a count per bin: p = (10.5, 10.5)/21, q = (15.5, 5.5)/21
    p, q = np.array([0.5, 0.5]), np.array([15.5, 5.5]) / 21
    assert psi(np.array([10, 10]), np.array([15, 5])) == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    assert psi(np.array([100, 0]), np.array([0, 100])) > 5
    with pytest.raises(InvalidInput, match="same length"):
        psi(np.array([1, 2]), np.array([1, 2, 3]))


def test_chi2_quantile_and_the_small_sample_limit():
    # 99th percentiles of chi-square (scipy.stats.chi2.ppf(0.99, df)); Wilson-Hilferty is within 0.5%
    for df, exact in [(1, 6.634897), (5, 15.086272), (9, 21.665994), (20, 37.566235)]:
        assert chi2_quantile(df) == pytest.approx(exact, rel=0.01)
    assert psi_limit(0.2, 10, 150, 150) == pytest.approx(chi2_quantile(9) * (2 / 150))
    assert psi_limit(0.2, 10, 5000, 5000) == 0.2
    assert psi_limit(0.2, 10, 0, 100) == math.inf


def test_histogram_bins():
    edges = np.array([0.2, 0.5])
    assert histogram(np.array([0.1, 0.2, 0.3, 0.5, 0.9]), edges).tolist() == [2, 2, 1]


def test_input_statistics_undo_the_normalisation():
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    grey = np.full((1, 3, 8, 8), 0.6, np.float32)  # normalised; pixels at 0.5 + 0.6 * 0.25 = 0.65
    stats = input_statistics(grey, mean, std)
    assert stats[0, 0] == pytest.approx(0.65, abs=1e-6) and stats[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert stats[0, 2] == pytest.approx(0.0, abs=1e-6)  # flat: no Laplacian energy
    checker = np.indices((8, 8)).sum(axis=0) % 2
    sharp = np.broadcast_to(((checker - 0.5) / 0.25)[None, None], (1, 3, 8, 8)).astype(np.float32)
    s = input_statistics(sharp, mean, std)
    assert s[0, 0] == pytest.approx(0.5, abs=1e-6) and s[0, 1] == pytest.approx(0.5, abs=1e-6)
    assert s[0, 2] == pytest.approx(np.log1p((4 * 255.0) ** 2), rel=1e-5)
    with pytest.raises(InvalidInput):
        input_statistics(np.zeros((2, 8, 8)), mean, std)


def test_embedding_test_is_seeded_and_finds_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(80, 16)), rng.normal(size=(80, 16))
    shifted = b + 0.6
    same = embedding_test(a, b, 1 / 32)
    assert same == embedding_test(a, b, 1 / 32) and same[1] > 0.05
    stat, p = embedding_test(a, shifted, 1 / 32)
    assert stat > same[0] and p == pytest.approx(1 / 201)


def _synthetic_profile(n=300, c=5, d=8, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    emb = rng.normal(size=(n, d))
    inputs = rng.random((n, 3))
    return DriftProfile.build(probs, emb, inputs, model="m", labels=[str(i) for i in range(c)]), probs, emb, inputs


def test_profile_round_trip(tmp_path):
    prof, probs, emb, inputs = _synthetic_profile()
    path = prof.save(tmp_path / "p.safetensors")
    back = DriftProfile.load(path)
    assert back.model == "m" and back.labels == prof.labels and back.n == 300
    for name in ("confidence_edges", "confidence_counts", "class_ids", "class_counts", "embeddings"):
        assert np.array_equal(getattr(back, name), getattr(prof, name)), name
    assert back.input_edges.keys() == prof.input_edges.keys() == {"brightness", "contrast", "sharpness"}
    assert back.kernel_gamma == prof.kernel_gamma and back.thresholds == prof.thresholds
    assert back.compare(probs, emb, inputs).to_dict() == prof.compare(probs, emb, inputs).to_dict()


def test_profile_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        DriftProfile.load(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a profile")
    with pytest.raises(ConfigError, match="not a visor drift profile"):
        DriftProfile.load(tmp_path / "junk.safetensors")
    prof, probs, _, _ = _synthetic_profile()
    with pytest.raises(InvalidInput, match=r"\(N, 5\)"):
        prof.compare(probs[:, :3])
    with pytest.raises(ConfigError):
        DriftThresholds(psi=0)


def test_too_few_images_never_alert():
    prof, probs, emb, inputs = _synthetic_profile()
    far = prof.compare(probs[:10] * 0 + np.eye(5)[0], emb[:10] + 5, inputs[:10] + 5)
    assert far.insufficient_data and not far.alert and far.n == 10


def test_window_keeps_the_last_predictions_and_caches():
    prof, probs, emb, inputs = _synthetic_profile()
    w = DriftWindow(prof, size=100)
    assert w.report() is None
    threads = [threading.Thread(target=w.add, args=(probs[i:i + 50], emb[i:i + 50], inputs[i:i + 50]))
               for i in range(0, 300, 50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(w) == 100
    r = w.report()
    assert r.n == 100 and w.report() is r  # cached until something is added
    w.add(probs[:1], emb[:1], inputs[:1])
    assert w.report() is not r
    with pytest.raises(ConfigError):
        DriftWindow(prof, size=0)


# ---------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def runner(classifier):
    return FeatureRunner(classifier)


@pytest.fixture(scope="module")
def val_profile(classifier, imagenette_rows, runner):
    val = [r["path"] for r in imagenette_rows if r["split"] == "val"]
    got = collect(classifier, val, runner=runner)
    return DriftProfile.build(got.probs, got.embeddings, got.inputs, model="efficientnet_lite0",
                              labels=classifier.labels), got


def test_profile_probabilities_are_the_classifiers(classifier, val_profile):
    _, got = val_profile
    expected = classifier.predict_proba(got.paths[:8])
    np.testing.assert_allclose(got.probs[:8], expected, atol=1e-5)


def test_dev_val_against_itself_does_not_alert(val_profile):
    prof, got = val_profile
    r = prof.compare(got.probs, got.embeddings, got.inputs)
    assert not r.alert and r.reasons == ()
    assert r.psi_confidence == 0.0 and r.psi_class_mix == 0.0 and set(r.psi_inputs.values()) == {0.0}
    assert r.embedding_shift == pytest.approx(0.0, abs=1e-9) and r.embedding_p_value == 1.0


def test_the_train_split_does_not_alert(classifier, imagenette_rows, val_profile, runner):
    """Other photos of the same classes (300 train images): no false alarm."""
    prof, _ = val_profile
    train = [r["path"] for r in imagenette_rows if r["split"] == "train"]
    got = collect(classifier, train, runner=runner)
    r = prof.compare(got.probs, got.embeddings, got.inputs)
    assert not r.alert, r.format_table()
    for half in (slice(0, None, 2), slice(1, None, 2)):  # 150 vs 150: the small-sample limit matters
        h = prof.compare(got.probs[half], got.embeddings[half], got.inputs[half])
        assert not h.alert, h.format_table()


@pytest.mark.parametrize("kind", ["dark", "blur"])
def test_darkened_or_blurred_copies_alert(classifier, imagenette_variant, val_profile, runner, kind):
    prof, _ = val_profile
    got = collect(classifier, [r["path"] for r in imagenette_variant(kind)], runner=runner)
    r = prof.compare(got.probs, got.embeddings, got.inputs)
    assert r.alert and not r.insufficient_data
    if kind == "dark":
        assert r.psi_inputs["brightness"] > 1.0 and r.mean_confidence < prof.mean_confidence
    else:
        assert r.psi_inputs["sharpness"] > 1.0 and r.psi_confidence > 0.5
        assert r.embedding_p_value < 0.01


def test_build_profile_and_monitor(classifier, imagenette_rows, imagenette_variant, tmp_path):
    val = [r["path"] for r in imagenette_rows if r["split"] == "val"]
    path = build_profile(classifier, val, source="dev val").save(tmp_path / "p.safetensors")
    prof = DriftProfile.load(path)
    assert prof.source == "dev val" and prof.model == "efficientnet_lite0"
    paths = [r["path"] for r in imagenette_variant("blur")][:60]
    report, got = monitor(prof, [*paths, str(tmp_path / "gone.jpg")], classifier=classifier)
    assert report.n == 60 and report.alert and len(got.skipped) == 1


def test_table_prints_the_and_rule_and_each_signals_limit():
    """A confidence PSI of 0.71 that does not alert used to print 'above 0.2, or above its 99th
    percentile' then 'ALERT: no'; the table now states the 'and' rule and each signal's limit."""
    from visor.monitor.drift import DriftReport

    limits = {"confidence": psi_limit(0.2, 10, 50, 60), "class-mix": psi_limit(0.2, 40, 50, 60),
              "brightness": psi_limit(0.2, 10, 50, 60)}
    # chi2.ppf(0.99, 9) * (1/50 + 1/60) = 0.7944 and chi2.ppf(0.99, 39) * (...) = 2.2890; Wilson-Hilferty:
    assert round(limits["confidence"], 4) == 0.7955 and round(limits["class-mix"], 4) == 2.2898
    r = DriftReport(n=50, n_reference=60, psi_confidence=0.71, psi_class_mix=0.05, psi_inputs={"brightness": 0.85},
                    embedding_shift=None, embedding_p_value=None, alert=True,
                    reasons=(f"brightness PSI 0.850 > {limits['brightness']:.3f}",), insufficient_data=False,
                    thresholds=DriftThresholds(), mean_confidence=0.5, mean_confidence_reference=0.6,
                    psi_limits=limits)
    assert r.format_table().splitlines() == [
        "recent images: 50   reference images: 60",
        "mean confidence: 0.5000 (reference 0.6000)",
        "a PSI alerts when it is above 0.2 and above its 99th percentile under no change for these sample sizes: "
        "above its limit",
        "  signal            PSI    limit",
        "  confidence     0.7100   0.7955  below",
        "  class-mix      0.0500   2.2898  below",
        "  brightness     0.8500   0.7955  ABOVE",
        "embedding shift: n/a (no embeddings)",
        "ALERT: brightness PSI 0.850 > 0.796",
    ]


def test_compare_reports_the_limit_it_applied():
    prof, probs, emb, inputs = _synthetic_profile()
    r = prof.compare(probs[:60], emb[:60], inputs[:60])
    bins = {"confidence": len(prof.confidence_counts), "class-mix": len(prof.class_counts),
            **{k: len(v) for k, v in prof.input_counts.items()}}
    assert r.psi_limits == {k: psi_limit(0.2, b, 60, prof.n) for k, b in bins.items()}
    assert r.to_dict()["psi_limits"] == r.psi_limits
    assert prof.compare(probs[:0], emb[:0], inputs[:0]).psi_limits == {}  # no images: no (infinite) limits
