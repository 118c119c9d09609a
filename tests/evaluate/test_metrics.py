import json
import math

import numpy as np
import pytest

from visor.errors import InvalidInput
from visor.evaluate import ClassificationReport, ClassMetrics, classification_report, confusion_matrix, top_k_accuracy

LABELS = ["cat", "dog", "bird"]
# Hand-worked 3-class example.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])


def one_hot_probs(pred, num_classes, top=0.6):
    """Rows giving ``top`` to the predicted class and sharing the rest equally."""
    rest = (1.0 - top) / (num_classes - 1)
    probs = np.full((len(pred), num_classes), rest)
    probs[np.arange(len(pred)), pred] = top
    return probs


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64
    # rows = true class, columns = predicted class
    assert cm.tolist() == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]


def test_confusion_matrix_counts_classes_never_seen_and_refuses_bad_ids():
    assert confusion_matrix([1, 1], [1, 0], 4).tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 1], [0, -1], 3)
    with pytest.raises(ValueError, match="y_pred has 3 entries but there are 2"):
        confusion_matrix([0, 1], [0, 1, 1], 3)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix([0.0, 1.0], [0, 1], 3)


def test_report_by_hand():
    r = classification_report(Y_TRUE, one_hot_probs(Y_PRED, 3), LABELS)
    assert isinstance(r, ClassificationReport)
    assert r.labels == ("cat", "dog", "bird")
    assert r.num_samples == 10
    assert r.accuracy == pytest.approx(0.6)
    # cat: tp 2, predicted 3, support 4 -> P 2/3, R 1/2, F1 4/7
    # dog: tp 2, predicted 4, support 3 -> P 1/2, R 2/3, F1 4/7
    # bird: tp 2, predicted 3, support 3 -> P 2/3, R 2/3, F1 2/3
    expected = {
        "cat": (0.6666666666666666, 0.5, 0.5714285714285714, 4),
        "dog": (0.5, 0.6666666666666666, 0.5714285714285714, 3),
        "bird": (0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 3),
    }
    for name, (p, rec, f1, support) in expected.items():
        m = r.per_class[name]
        assert m == ClassMetrics(pytest.approx(p), pytest.approx(rec), pytest.approx(f1), support)
        assert type(m.support) is int
    assert r.macro_precision == pytest.approx(0.6111111111111112)  # 11/18
    assert r.macro_recall == pytest.approx(0.6111111111111112)  # 11/18
    assert r.macro_f1 == pytest.approx(0.6031746031746031)  # 38/63
    assert r.confusion.tolist() == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert r.top5_accuracy == 1.0  # C = 3 < 5: top-3 covers every class
    assert r.top_k == 3
    # every top-1 confidence is 0.6 and the accuracy is 0.6: calibrated
    assert r.ece == pytest.approx(0.0, abs=1e-12)
    assert r.nll == pytest.approx(-(6 * math.log(0.6) + 4 * math.log(0.2)) / 10)  # 0.950271...


def test_macro_averages_skip_classes_without_support_and_precision_zero_division_is_zero():
    # true: cat, cat, dog, dog; predicted: cat, bird, cat, cat -> dog never predicted, bird never true
    y_true = np.array([0, 0, 1, 1])
    r = classification_report(y_true, one_hot_probs(np.array([0, 2, 0, 0]), 3), LABELS)
    assert r.per_class["cat"] == ClassMetrics(pytest.approx(1 / 3), 0.5, pytest.approx(0.4), 2)
    assert r.per_class["dog"] == ClassMetrics(0.0, 0.0, 0.0, 2)
    assert r.per_class["bird"] == ClassMetrics(0.0, 0.0, 0.0, 0)
    # means over cat and dog only (bird has no samples)
    assert r.macro_precision == pytest.approx(1 / 6)
    assert r.macro_recall == pytest.approx(0.25)
    assert r.macro_f1 == pytest.approx(0.2)
    assert r.accuracy == 0.25


def test_top5_uses_five_of_many_classes_and_breaks_ties_by_class_id():
    labels = [f"c{i}" for i in range(7)]
    scores = np.array([0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05])
    probs = np.stack([scores, scores, scores])
    # true class 4 is ranked 5th (in), class 5 is 6th (out), class 0 is 1st
    r = classification_report(np.array([4, 5, 0]), probs, labels)
    assert r.top_k == 5
    assert r.top5_accuracy == pytest.approx(2 / 3)
    assert r.accuracy == pytest.approx(1 / 3)
    tied = np.array([[0.25, 0.25, 0.25, 0.25]])
    assert top_k_accuracy(np.array([0]), tied, 1) == 1.0  # argmax picks the lowest id
    assert top_k_accuracy(np.array([3]), tied, 3) == 0.0
    assert top_k_accuracy(np.array([3]), tied, 4) == 1.0


def test_report_json_and_table():
    r = classification_report(Y_TRUE, one_hot_probs(Y_PRED, 3), LABELS, n_bins=10)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["confusion"] == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert d["labels"] == LABELS
    assert d["per_class"]["dog"] == {
        "precision": 0.5,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(4 / 7),
        "support": 3,
    }
    assert d["accuracy"] == pytest.approx(0.6)
    assert d["ece_bins"] == 10
    table = r.format_table()
    assert "accuracy: 0.6000" in table
    assert "top-3 accuracy: 1.0000" in table
    assert "macro f1: 0.6032" in table
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[6:]}
    assert rows["cat"] == ["0.6667", "0.5000", "0.5714", "4"]
    assert rows["bird"] == ["0.6667", "0.6667", "0.6667", "3"]


@pytest.mark.parametrize(
    ("y_true", "probs", "labels", "match"),
    [
        ([0, 1], np.full((2, 2), 0.5), ["a", "b", "c"], "2 class columns but 3 labels"),
        ([0, 1, 1], np.full((2, 2), 0.5), ["a", "b"], "3 entries but there are 2 samples"),
        ([0, 1], np.full(4, 0.25), ["a", "b"], "2-D"),
        ([0, 2], np.full((2, 2), 0.5), ["a", "b"], "outside"),
        ([0, 1], np.array([[2.0, -1.0], [0.5, 0.5]]), ["a", "b"], r"\[0, 1\]"),
        ([0, 1], np.array([[0.2, 0.2], [0.5, 0.5]]), ["a", "b"], "sum to 1"),
        ([0, 1], np.array([[np.nan, 0.5], [0.5, 0.5]]), ["a", "b"], "NaN"),
        ([0, 1], np.full((2, 2), 0.5), ["a", "a"], "unique"),
        ([], np.zeros((0, 2)), ["a", "b"], "at least one sample"),
    ],
)
def test_report_refuses_bad_input(y_true, probs, labels, match):
    with pytest.raises(InvalidInput, match=match):
        classification_report(np.asarray(y_true, dtype=np.int64), probs, labels)


def test_report_matches_brute_force_on_random_data():
    rng = np.random.default_rng(7)
    n, c = 400, 6
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, c, n)
    r = classification_report(y, probs, [str(i) for i in range(c)])
    pred = probs.argmax(axis=1)
    for k in range(c):
        tp = sum(1 for t, p in zip(y, pred, strict=True) if t == k and p == k)
        n_pred = sum(1 for p in pred if p == k)
        n_true = sum(1 for t in y if t == k)
        assert r.per_class[str(k)].precision == pytest.approx(tp / n_pred if n_pred else 0.0)
        assert r.per_class[str(k)].recall == pytest.approx(tp / n_true)
    top5 = np.mean([t in np.argsort(-row, kind="stable")[:5] for t, row in zip(y, probs, strict=True)])
    assert r.top5_accuracy == pytest.approx(top5)
    assert r.nll == pytest.approx(-np.mean(np.log(probs[np.arange(n), y])))
