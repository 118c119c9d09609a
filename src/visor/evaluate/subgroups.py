"""Subgroup (fairness) reports: a metric per value of a metadata column, with bootstrap
confidence intervals, the gap to the best group, and flags.

For each group of samples sharing a column value (lighting, camera, site, a demographic
attribute the user supplies) the report gives ``n``, the score (accuracy or macro-F1 for a
classifier, AP50 for a detector, mIoU for a segmenter) and its interval within the group: a Wilson score interval
for accuracy (a proportion; honest at 0% and 100%), a percentile bootstrap drawn within the
group for macro-F1, AP50 and mIoU. The best group is the highest-scoring one among those with at least ``min_size``
samples. A group is flagged ``"worse"`` when its whole interval lies below the best group's
interval (the intervals do not overlap); a group smaller than ``min_size`` is reported with
its score and interval but marked ``"too_small"`` to judge, never hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import ConfigError
from visor.evaluate.bootstrap import (
    PROPORTIONS,
    BootstrapConfig,
    ClassificationOutcomes,
    bootstrap,
    percentile_interval,
)

#: The group name of samples that have no value in the column.
MISSING = "(missing)"
#: Default smallest group judged against the others.
MIN_GROUP_SIZE = 30
STATUSES = ("best", "ok", "worse", "too_small")
_NO_COLUMNS = "none (use a CSV or JSONL manifest with extra columns, or a --metadata file)"


@dataclass(frozen=True)
class GroupResult:
    group: str
    n: int
    score: float
    ci: tuple[float, float]
    gap: float
    """``score`` minus the best group's score (0 for the best, ``nan`` when no group is judged)."""
    status: str
    """``"best"``, ``"ok"``, ``"worse"`` (interval entirely below the best's) or ``"too_small"``."""

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "n": self.n, "score": self.score, "ci": list(self.ci),
                "gap": None if np.isnan(self.gap) else self.gap, "status": self.status}


@dataclass(frozen=True)
class SubgroupReport:
    column: str
    metric: str
    config: BootstrapConfig
    min_size: int
    best: str | None
    groups: tuple[GroupResult, ...]

    @property
    def flagged(self) -> tuple[GroupResult, ...]:
        """The groups whose interval lies entirely below the best group's."""
        return tuple(g for g in self.groups if g.status == "worse")

    def group(self, name: str) -> GroupResult:
        for g in self.groups:
            if g.group == name:
                return g
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "metric": self.metric, **self.config.to_dict(),
                "interval": "wilson" if self.metric in PROPORTIONS else "percentile bootstrap",
                "min_size": self.min_size,
                "best": self.best, "groups": [g.to_dict() for g in self.groups]}

    def format_table(self) -> str:
        pct = round(self.config.level * 100)
        width = max(len("group"), *(len(g.group) for g in self.groups))
        how = "Wilson CI" if self.metric in PROPORTIONS else f"bootstrap CI, {self.config.resamples} resamples"
        lines = [f"{self.metric} by {self.column} ({pct}% {how}; groups under {self.min_size} are too small to judge)",
                 f"{'group':<{width}}  {'n':>6}  {self.metric:>10}  {f'{pct}% CI':>17}  {'gap':>7}  status",
                 "-" * (width + 60)]
        for g in self.groups:
            gap = "" if np.isnan(g.gap) else f"{g.gap:+.4f}"
            status = {"worse": "WORSE (CI below the best group's)", "too_small": "too small to judge"}.get(
                g.status, g.status)
            lines.append(f"{g.group:<{width}}  {g.n:>6d}  {g.score:>10.4f}  [{g.ci[0]:.4f}, {g.ci[1]:.4f}]  "
                         f"{gap:>7}  {status}")
        return "\n".join(lines)


def group_column(metadata: Sequence[Mapping[str, str]], column: str) -> list[str]:
    """The value of ``column`` for each sample (:data:`MISSING` where absent or empty).

    Raises ConfigError, with a suggestion, when no sample has the column at all.
    """
    known = sorted({k for m in metadata for k in m})
    if column not in known:
        raise ConfigError(f"no sample has a metadata column {column!r}.{suggest(column, known)} "
                          f"Columns: {', '.join(known) or _NO_COLUMNS}")
    return [str(m.get(column) or MISSING) for m in metadata]


def judge_groups(scored: Sequence[tuple[str, int, float, tuple[float, float]]], min_size: int
                 ) -> tuple[str | None, tuple[GroupResult, ...]]:
    """Pick the best group and give each group its gap and status (pure).

    ``scored`` holds (group, n, score, interval); groups keep their order.
    """
    eligible = [s for s in scored if s[1] >= min_size]
    best = max(eligible, key=lambda s: s[2]) if eligible else None
    out = []
    for name, n, score, ci in scored:
        if n < min_size:
            status = "too_small"
        elif best is not None and name == best[0]:
            status = "best"
        elif best is not None and ci[1] < best[3][0]:
            status = "worse"
        else:
            status = "ok"
        gap = score - best[2] if best is not None else float("nan")
        out.append(GroupResult(name, n, float(score), (float(ci[0]), float(ci[1])), float(gap), status))
    return (best[0] if best else None), tuple(out)


def _groups(values: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    arr = np.asarray(values, dtype=object)
    return [(g, np.flatnonzero(arr == g)) for g in sorted(set(values))]


def classification_subgroups(outcomes: ClassificationOutcomes, values: Sequence[str], column: str, *,
                             metric: str = "accuracy", config: BootstrapConfig | None = None,
                             min_size: int = MIN_GROUP_SIZE) -> SubgroupReport:
    """Score ``outcomes`` per group (``values[i]`` is sample i's group) with intervals."""
    config = config or BootstrapConfig()
    if len(values) != len(outcomes):
        raise ConfigError(f"{len(values)} group values for {len(outcomes)} samples")
    scored = []
    for name, index in _groups(values):
        sub = outcomes.subset(index)
        scored.append((name, len(index), sub.point(metric), sub.interval(metric, config, column, name)))
    best, groups = judge_groups(scored, min_size)
    return SubgroupReport(column, metric, config, int(min_size), best, groups)


def detection_subgroups(ground_truth: Sequence[Any], predictions: Sequence[Any], labels: Sequence[str],
                        values: Sequence[str], column: str, *, config: BootstrapConfig | None = None,
                        min_size: int = MIN_GROUP_SIZE, progress: bool = False) -> SubgroupReport:
    """AP50 per group of images (``values[i]`` is image i's group), bootstrapping images.

    Each image is matched at IoU 0.5 once and each resample pools the matches of the images it
    draws (:class:`~visor.evaluate.detection.ResampledAP50`: the COCO evaluator's AP50 of that
    resample, exactly). ``progress`` shows a bar of the resamples per group.
    """
    from tqdm import tqdm

    from visor.evaluate.detection import ResampledAP50

    config = config or BootstrapConfig()
    if not len(values) == len(ground_truth) == len(predictions):
        raise ConfigError(f"{len(values)} group values for {len(ground_truth)} images")
    scored = []
    for name, index in _groups(values):
        scorer = ResampledAP50([ground_truth[i] for i in index], [predictions[i] for i in index], labels)
        point = float(scorer(np.arange(len(index))[None, :])[0])
        with tqdm(total=config.resamples, unit="resample", disable=not progress,
                  desc=f"bootstrap AP50, {column}={name}") as bar:
            def ap50(idx: np.ndarray, scorer: ResampledAP50 = scorer, bar: tqdm = bar) -> np.ndarray:
                out = scorer(idx)
                bar.update(len(idx))
                return out

            ci = percentile_interval(bootstrap(ap50, len(index), config, "ap50", column, name), config.level)
        scored.append((name, len(index), point, ci))
    best, groups = judge_groups(scored, min_size)
    return SubgroupReport(column, "ap50", config, int(min_size), best, groups)


def segmentation_subgroups(outcomes: Any, values: Sequence[str], column: str, *, metric: str = "miou",
                           config: BootstrapConfig | None = None, min_size: int = MIN_GROUP_SIZE) -> SubgroupReport:
    """mIoU (or pixel accuracy / mean Dice) per group of images (``values[i]`` is image i's group) of a
    :class:`~visor.evaluate.segmentation.SegmentationOutcomes`: each group's pixels summed over its images,
    a percentile bootstrap over the group's images for the interval."""
    config = config or BootstrapConfig()
    if len(values) != len(outcomes):
        raise ConfigError(f"{len(values)} group values for {len(outcomes)} images")
    scored = []
    for name, index in _groups(values):
        sub = outcomes.subset(index)
        scored.append((name, len(index), sub.point(metric), sub.interval(metric, config, column, name)))
    best, groups = judge_groups(scored, min_size)
    return SubgroupReport(column, metric, config, int(min_size), best, groups)


__all__ = ["MIN_GROUP_SIZE", "MISSING", "GroupResult", "SubgroupReport", "classification_subgroups",
           "detection_subgroups", "group_column", "judge_groups", "segmentation_subgroups"]
