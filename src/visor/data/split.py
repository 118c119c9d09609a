"""Seeded, stratified train / val / test splits."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visor.data.dataset import ClassificationDataset, Sample, check_split_name
from visor.errors import ConfigError

_TOLERANCE = 1e-6


def split_counts(n: int, ratios: Sequence[float], *, first_at_least_one: bool = True) -> list[int]:
    """Share ``n`` items between splits in proportion to ``ratios`` (largest-remainder rounding).

    Each split gets the floor of its quota; the items left over go to the largest
    fractional parts (ties to the earlier split). A zero ratio always gets zero. With
    ``first_at_least_one`` and ``n >= 1`` and a positive first ratio, the first split gets
    at least one item, taken from the largest other split (ties: the later one).
    """
    weights = np.asarray(ratios, dtype=np.float64)
    quotas = np.round(weights / weights.sum() * n, 9)  # 0.7 * 10 is 7.000000000000001
    counts = [math.floor(q) for q in quotas]
    remainders = sorted(
        (i for i in range(len(counts)) if weights[i] > 0), key=lambda i: (-(quotas[i] - counts[i]), i)
    )
    for i in remainders[: n - sum(counts)]:
        counts[i] += 1
    if first_at_least_one and n >= 1 and weights[0] > 0 and counts[0] == 0:
        donor = max(range(1, len(counts)), key=lambda i: (counts[i], i))
        counts[donor] -= 1
        counts[0] += 1
    return counts


def _check(ratios: Sequence[float], names: Sequence[str]) -> tuple[list[float], list[str]]:
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError):
        raise ConfigError(f"split ratios must be numbers, got {list(ratios)!r}") from None
    names = list(names)
    if not values:
        raise ConfigError("give at least one split ratio")
    if len(values) != len(names):
        raise ConfigError(f"{len(values)} split ratio(s) for {len(names)} split name(s) {names}")
    if any(not math.isfinite(r) or r < 0 for r in values):
        raise ConfigError(f"split ratios must be finite and non-negative, got {values}")
    if abs(sum(values) - 1.0) > _TOLERANCE:
        raise ConfigError(f"split ratios must sum to 1, got {values} (sum {sum(values):g})")
    for name in names:
        check_split_name(name, "split names")
    if len(set(names)) != len(names):
        raise ConfigError(f"split names must be unique, got {names}")
    return values, names


def stratified_split(
    ds: ClassificationDataset,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    names: Sequence[str] = ("train", "val", "test"),
) -> ClassificationDataset:
    """Assign every sample to one of ``names``, class by class, in the proportions ``ratios``.

    For each class (in sorted order) the samples, sorted by path, are shuffled with one
    ``numpy.random.default_rng(seed)`` stream and cut into consecutive runs whose lengths
    come from :func:`split_counts`: largest-remainder rounding, at least one sample in the
    first split for every non-empty class (unless its ratio is 0), none in a zero-ratio
    split. The result depends only on the samples' paths and labels, the ratios and the
    seed, not on the input order. Existing splits are replaced; sample order, classes and
    metadata are kept.

    Raises ConfigError if the ratios are negative, do not sum to 1 (within 1e-6), or do
    not match ``names`` one to one, or a name is not train / val / test.
    """
    values, names = _check(ratios, names)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    by_class: dict[str, list[Sample]] = {}
    for s in sorted(ds.samples, key=lambda s: s.path):
        by_class.setdefault(s.label, []).append(s)
    assigned: dict[Path, str] = {}
    for label in sorted(by_class):
        members = by_class[label]
        order = rng.permutation(len(members))
        start = 0
        for name, count in zip(names, split_counts(len(members), values), strict=True):
            for i in order[start : start + count]:
                assigned[members[i].path] = name
            start += count
    samples = tuple(dataclasses.replace(s, split=assigned[s.path]) for s in ds.samples)
    return ClassificationDataset(samples, ds.classes, ds.root)
