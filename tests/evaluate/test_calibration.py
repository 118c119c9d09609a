import math

import numpy as np
import pytest

from visor.errors import InvalidInput
from visor.evaluate import expected_calibration_error, fit_temperature, nll, reliability_bins, softmax
from visor.models.classifier import softmax as classifier_softmax


def ece_reference(probs, y_true, n_bins):
    """A slow, obvious ECE: bins (lo, hi], the first also taking 0."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [
            i for i, c in enumerate(conf) if (lo < c <= hi) or (b == 0 and c == 0) or (b == n_bins - 1 and c > 1)
        ]
        if members:
            acc = np.mean(correct[members])
            mean_conf = np.mean(conf[members])
            total += len(members) / len(conf) * abs(acc - mean_conf)
    return total


def calibrated_sample(seed, n=10000, c=10, scale=1.5):
    """Logits of a perfectly calibrated model and labels drawn from its own probabilities."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * scale
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(n)
    y = np.minimum((u[:, None] > np.cumsum(p, axis=1)).sum(axis=1), c - 1)
    return logits, y


# --------------------------------------------------------------------------- ECE


def test_ece_is_zero_when_perfectly_calibrated():
    # 10 samples at confidence 0.8 with 8 right, 4 at 0.5 with 2 right
    probs = np.array([[0.8, 0.2]] * 10 + [[0.5, 0.5]] * 4)
    y = np.array([0] * 8 + [1] * 2 + [0] * 2 + [1] * 2)
    assert expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(probs, y, n_bins=2) == pytest.approx(0.0, abs=1e-12)


def test_ece_two_bins_by_hand():
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # conf 0.9, right  -> bin (0.5, 1]
            [0.8, 0.1, 0.1],  # conf 0.8, wrong  -> bin (0.5, 1]
            [0.7, 0.2, 0.1],  # conf 0.7, right  -> bin (0.5, 1]
            [0.6, 0.3, 0.1],  # conf 0.6, wrong  -> bin (0.5, 1]
            [0.4, 0.3, 0.3],  # conf 0.4, wrong  -> bin [0, 0.5]
            [0.45, 0.35, 0.2],  # conf 0.45, right -> bin [0, 0.5]
        ]
    )
    y = np.array([0, 1, 0, 2, 1, 0])
    # high bin: acc 2/4 = 0.5, conf 3.0/4 = 0.75, weight 4/6; low bin: acc 0.5, conf 0.425, weight 2/6
    # ECE = 4/6 * 0.25 + 2/6 * 0.075 = 23/120
    assert expected_calibration_error(probs, y, n_bins=2) == pytest.approx(0.19166666666666668)
    bins = reliability_bins(probs, y, n_bins=2)
    assert bins == [
        {"lo": 0.0, "hi": 0.5, "count": 2, "accuracy": 0.5, "confidence": pytest.approx(0.425)},
        {"lo": 0.5, "hi": 1.0, "count": 4, "accuracy": 0.5, "confidence": pytest.approx(0.75)},
    ]


def test_bin_edges_are_closed_on_the_right_and_one_goes_in_the_last_bin():
    # 0.5 sits on the edge between the two bins: it belongs to the first, (lo, hi]
    bins = reliability_bins(np.array([[0.5, 0.5]]), np.array([0]), n_bins=2)
    assert [b["count"] for b in bins] == [1, 0]
    # confidence exactly 1.0 lands in the last bin, whatever the number of bins
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for n_bins in (1, 2, 10, 15):
        bins = reliability_bins(probs, np.array([0, 0]), n_bins=n_bins)
        assert bins[-1]["count"] == 2
        assert bins[-1]["accuracy"] == 0.5 and bins[-1]["confidence"] == 1.0
        assert sum(b["count"] for b in bins) == 2
        assert expected_calibration_error(probs, np.array([0, 0]), n_bins=n_bins) == 0.5
    # float32 rounding just above 1 still counts in the last bin
    assert expected_calibration_error(np.array([[np.float32(1.0000001), 0.0]]), np.array([1])) == pytest.approx(1.0)


def test_empty_input_gives_zero():
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros(0, np.int64)) == 0.0
    assert expected_calibration_error([], []) == 0.0
    assert [b["count"] for b in reliability_bins([], [], n_bins=3)] == [0, 0, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_bins", [1, 7, 15])
def test_ece_matches_slow_reference(seed, n_bins):
    logits, y = calibrated_sample(seed, n=300, c=4, scale=2.0)
    probs = softmax(logits * 2.0).astype(np.float64)
    assert expected_calibration_error(probs, y, n_bins) == pytest.approx(ece_reference(probs, y, n_bins), abs=1e-12)


def test_ece_refuses_bad_input():
    with pytest.raises(InvalidInput, match="3 entries"):
        expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 1, 1]))
    with pytest.raises(InvalidInput, match="n_bins"):
        expected_calibration_error(np.full((2, 2), 0.5), np.array([0, 1]), n_bins=0)
    with pytest.raises(InvalidInput, match="sum to 1"):
        expected_calibration_error(np.array([[0.9, 0.9]]), np.array([0]))


# --------------------------------------------------------------------------- NLL and softmax


def test_nll_by_hand():
    assert nll(np.array([[0.0, 0.0]]), np.array([0])) == pytest.approx(math.log(2))
    # logits [2, 0] at T = 2 -> [1, 0]: -log(e / (e + 1)) = log(1 + e^-1)
    assert nll(np.array([[2.0, 0.0]]), np.array([0]), temperature=2.0) == pytest.approx(math.log1p(math.exp(-1)))
    # stable for huge logits, where a naive exp overflows
    assert nll(np.array([[1000.0, 0.0], [1000.0, 0.0]]), np.array([0, 1])) == pytest.approx(500.0)
    with pytest.raises(InvalidInput, match="temperature"):
        nll(np.array([[0.0, 0.0]]), np.array([0]), temperature=0.0)


def test_softmax_is_the_classifier_softmax():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(softmax(logits, 2.0), classifier_softmax(logits, 2.0))
    np.testing.assert_allclose(softmax(logits)[1], [1 / 3] * 3, rtol=1e-6)
    with pytest.raises(InvalidInput):
        softmax(logits, temperature=-1.0)


# --------------------------------------------------------------------------- temperature scaling


def test_fit_temperature_recovers_an_overconfident_scale():
    logits, y = calibrated_sample(0)
    t = fit_temperature(logits * 3.0, y)
    assert t == pytest.approx(3.0, rel=0.05)
    before = expected_calibration_error(softmax(logits * 3.0), y)
    after = expected_calibration_error(softmax(logits * 3.0, t), y)
    assert after < before / 3
    assert nll(logits * 3.0, y, t) < nll(logits * 3.0, y)


def test_fit_temperature_on_a_calibrated_model_is_near_one():
    logits, y = calibrated_sample(1)
    assert fit_temperature(logits, y) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_fitted_temperature_is_never_worse_than_one(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(200, 5)) * rng.uniform(0.1, 5.0)
    y = rng.integers(0, 5, 200)  # labels unrelated to the logits
    t = fit_temperature(logits, y)
    assert 0.05 <= t <= 20.0
    assert nll(logits, y, t) <= nll(logits, y, 1.0)


def test_fit_temperature_falls_back_to_one_when_the_bounds_exclude_anything_better():
    logits, y = calibrated_sample(2, n=2000)
    # the optimum is ~3; everything in [0.05, 0.5] is sharper than T=1, hence worse
    assert fit_temperature(logits * 3.0, y, bounds=(0.05, 0.5)) == 1.0
    # with bounds above 1 the best is the nearest bound to the optimum, which does beat T=1
    t = fit_temperature(logits * 3.0, y, bounds=(1.5, 2.0))
    assert t == pytest.approx(2.0, rel=1e-5)


def test_fit_temperature_is_deterministic_and_handles_degenerate_data():
    logits, y = calibrated_sample(3, n=3000)
    assert fit_temperature(logits * 2.0, y) == fit_temperature(logits * 2.0, y)
    assert fit_temperature(np.zeros((5, 3)), np.array([0, 1, 2, 0, 1])) == 1.0  # NLL flat in T
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, np.int64)) == 1.0
    with pytest.raises(InvalidInput, match="bounds"):
        fit_temperature(logits, y, bounds=(2.0, 1.0))
    with pytest.raises(InvalidInput, match="NaN"):
        fit_temperature(np.array([[np.inf, 0.0]]), np.array([0]))


def test_no_temperature_is_fitted_on_a_set_too_small_or_too_perfect():
    """15 all-correct validation images used to give T = 0.100, and a bus called a garbage truck at 0.97."""
    from visor.evaluate.calibration import MIN_TEMPERATURE_SAMPLES, choose_temperature, fit_temperature

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 5)
    logits = rng.normal(size=(15, 3)) + 3.0 * np.eye(3)[y]  # every image right
    assert np.all(logits.argmax(1) == y)
    assert fit_temperature(logits, y, bounds=(0.1, 10.0)) == pytest.approx(0.1, abs=1e-4)  # the degenerate fit
    assert choose_temperature(logits, y, bounds=(0.1, 10.0)) == (
        1.0, f"not fitted: 15 validation images, fewer than {MIN_TEMPERATURE_SAMPLES}; T = 1 kept")

    y = np.repeat(np.arange(3), 20)
    logits = rng.normal(size=(60, 3)) + 3.0 * np.eye(3)[y]
    logits[np.arange(60), y] += 5.0  # 60 images, all right: still nothing to learn a temperature from
    assert choose_temperature(logits, y) == (
        1.0, "not fitted: all 60 validation images are right, so the fit would only sharpen every answer "
             "towards certainty; T = 1 kept")
    logits[:6] = -logits[:6]  # some wrong: fitted as before
    t, why = choose_temperature(logits, y)
    assert t == fit_temperature(logits, y) and t != 1.0 and why == "fitted on 60 validation images (lowest NLL)"
    assert choose_temperature(np.zeros((0, 3)), np.zeros(0, np.int64))[0] == 1.0
