"""Stratified splits: largest-remainder counts, at least one training sample, seeding, order."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from visor.data import ClassificationDataset, Sample, split_counts, stratified_split
from visor.errors import ConfigError


def make_ds(counts: dict[str, int], classes: tuple[str, ...] | None = None) -> ClassificationDataset:
    samples = [Sample(Path(f"/data/{label}/{i:03d}.jpg"), label, metadata={"i": str(i)})
               for label, n in counts.items() for i in range(n)]
    return ClassificationDataset.from_samples(samples, classes)


def assignment(ds: ClassificationDataset) -> dict[Path, str | None]:
    return {s.path: s.split for s in ds}


@pytest.mark.parametrize(
    ("n", "ratios", "expected"),
    [
        (10, (0.8, 0.1, 0.1), [8, 1, 1]),
        (10, (0.7, 0.2, 0.1), [7, 2, 1]),
        (100, (0.29, 0.71), [29, 71]),
        (3, (0.8, 0.1, 0.1), [3, 0, 0]),
        (3, (0.6, 0.2, 0.2), [2, 1, 0]),  # remainders .8, .6, .6: train, then val (ties to the earlier split)
        (3, (0.1, 0.45, 0.45), [1, 1, 1]),  # would be 0/2/1: train takes one from val
        (1, (0.1, 0.45, 0.45), [1, 0, 0]),
        (10, (0.9, 0.1, 0.0), [9, 1, 0]),
        (7, (1.0, 0.0, 0.0), [7, 0, 0]),
        (1, (0.0, 0.5, 0.5), [0, 1, 0]),  # a zero train ratio stays empty
        (0, (0.8, 0.1, 0.1), [0, 0, 0]),
        (45, (0.8, 0.1, 0.1), [36, 5, 4]),  # quotas 36 / 4.5 / 4.5: the remainder goes to val
    ],
)
def test_split_counts(n, ratios, expected):
    assert split_counts(n, ratios) == expected


def test_per_class_counts():
    ds = make_ds({"a": 10, "b": 3, "c": 1}, classes=("a", "b", "c", "d"))
    out = stratified_split(ds, (0.8, 0.1, 0.1), seed=0)
    assert out.splits == ("train", "val", "test")
    assert out.subset("train").class_counts() == {"a": 8, "b": 3, "c": 1, "d": 0}
    assert out.subset("val").class_counts() == {"a": 1, "b": 0, "c": 0, "d": 0}
    assert out.subset("test").class_counts() == {"a": 1, "b": 0, "c": 0, "d": 0}
    # classes, sample order, labels and metadata are kept; only the split changes
    assert out.classes == ds.classes
    assert [(s.path, s.label, s.metadata) for s in out] == [(s.path, s.label, s.metadata) for s in ds]


def test_every_class_gets_a_training_sample():
    out = stratified_split(make_ds({"a": 3, "b": 2, "c": 1}), (0.1, 0.45, 0.45), seed=3)
    assert out.subset("train").class_counts() == {"a": 1, "b": 1, "c": 1}
    assert out.subset("val").class_counts() == {"a": 1, "b": 1, "c": 0}
    assert out.subset("test").class_counts() == {"a": 1, "b": 0, "c": 0}


def test_seeded_and_deterministic():
    ds = make_ds({"a": 20, "b": 15})
    first = assignment(stratified_split(ds, seed=7))
    assert assignment(stratified_split(ds, seed=7)) == first
    other = assignment(stratified_split(ds, seed=8))
    assert other != first
    assert sorted(other.values()) == sorted(first.values())  # same counts, different members


def test_independent_of_input_order_and_previous_splits():
    ds = make_ds({"a": 12, "b": 9, "c": 5})
    shuffled = ClassificationDataset(
        tuple(Sample(s.path, s.label, "test", s.metadata) for s in reversed(ds.samples)), ds.classes
    )
    assert assignment(stratified_split(shuffled, seed=1)) == assignment(stratified_split(ds, seed=1))


def test_two_way_split_and_zero_ratio():
    ds = make_ds({"a": 10, "b": 10})
    out = stratified_split(ds, (0.5, 0.5), names=("train", "val"))
    assert out.splits == ("train", "val")
    assert out.subset("val").class_counts() == {"a": 5, "b": 5}
    out = stratified_split(ds, (0.8, 0.2, 0.0))
    assert out.splits == ("train", "val") and len(out.subset("test")) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratios": (0.8, 0.1)}, "2 split ratio\\(s\\) for 3 split name\\(s\\)"),
        ({"ratios": (0.8, 0.1, 0.05)}, "must sum to 1"),
        ({"ratios": (1.2, -0.1, -0.1)}, "non-negative"),
        ({"ratios": (math.nan, 0.5, 0.5)}, "finite"),
        ({"ratios": ()}, "at least one"),
        ({"ratios": ("a", 0.5, 0.5)}, "must be numbers"),
        ({"ratios": (0.5, 0.5), "names": ("train", "dev")}, "unknown split 'dev'"),
        ({"ratios": (0.5, 0.5), "names": ("train", "train")}, "unique"),
        ({"seed": -1}, "non-negative integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        stratified_split(make_ds({"a": 4}), **kwargs)


def test_ratio_tolerance():
    out = stratified_split(make_ds({"a": 10}), (0.8, 0.1, 0.1000005))
    assert out.subset("train").class_counts() == {"a": 8}
