"""Evaluate a classifier on a labelled dataset: metrics, calibration before and after
temperature scaling, a JSON report, a table and plots."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import suggest
from visor.data import ClassificationDataset
from visor.data.dataset import select_split
from visor.errors import ConfigError
from visor.evaluate.bootstrap import (
    CLASSIFICATION_METRICS,
    INTERVAL_METHODS,
    SMALL_SAMPLE,
    BootstrapConfig,
    ClassificationOutcomes,
)
from visor.evaluate.calibration import expected_calibration_error, reliability_bins, softmax
from visor.evaluate.metrics import ClassificationReport, classification_report
from visor.evaluate.plots import plot_confusion_matrix, plot_reliability_diagram
from visor.evaluate.subgroups import MIN_GROUP_SIZE, SubgroupReport, classification_subgroups, group_column
from visor.io.files import atomic_write
from visor.models.batching import describe_error, split_decoded
from visor.models.classifier import Classifier
from visor.monitor.collect import FeatureRunner, model_reference, model_sha256
from visor.monitor.drift import DriftProfile


@dataclass(frozen=True)
class ClassifierEvaluation:
    model: str
    split: str | None
    report: ClassificationReport
    """Metrics of the probabilities inference returns (the card's temperature applied)."""
    temperature: float
    ece_uncalibrated: float
    """ECE (15 bins) of softmax(logits), before temperature scaling."""
    ece_calibrated: float
    """ECE (15 bins) of softmax(logits / temperature)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    probs: np.ndarray | None = field(default=None, repr=False)
    targets: np.ndarray | None = field(default=None, repr=False)
    paths: tuple[str, ...] = field(default=(), repr=False)
    """The evaluated images, in the order of ``probs`` (unreadable ones left out)."""
    bootstrap: BootstrapConfig | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Intervals of accuracy and top-k accuracy (Wilson), macro-F1 and ECE (bootstrap)."""
    class_intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    """Per class with support: intervals of recall (Wilson) and F1 (bootstrap)."""
    subgroups: tuple[SubgroupReport, ...] = ()
    corruptions: Any = None
    """A :class:`~visor.evaluate.corruptions.CorruptionReport` when robustness was measured."""
    profile: Any = field(default=None, repr=False)
    """A :class:`~visor.monitor.DriftProfile` of this evaluation when one was asked for."""

    def mistakes(self, limit: int = 24) -> list[dict[str, Any]]:
        """The wrong predictions, most confident first: path, true label, predicted label, confidence."""
        if self.probs is None or self.targets is None:
            return []
        pred = self.probs.argmax(axis=1)
        conf = self.probs.max(axis=1)
        wrong = np.flatnonzero(pred != self.targets)
        wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:limit]
        labels = self.report.labels
        return [{"path": self.paths[i] if i < len(self.paths) else "", "label": labels[self.targets[i]],
                 "predicted": labels[pred[i]], "confidence": float(conf[i])} for i in wrong]

    def to_dict(self) -> dict[str, Any]:
        d = {
            "model": self.model,
            "split": self.split,
            **self.report.to_dict(),
            "temperature": self.temperature,
            "ece_before_scaling": self.ece_uncalibrated,
            "ece_after_scaling": self.ece_calibrated,
            "skipped_files": [list(s) for s in self.skipped],
        }
        for name, ci in self.class_intervals.items():
            d["per_class"][name].update({f"{k}_ci": list(v) for k, v in ci.items()})
        if self.bootstrap is not None:
            d["confidence_intervals"] = {**self.bootstrap.to_dict(), **{k: list(v) for k, v in self.intervals.items()},
                                         "methods": {**INTERVAL_METHODS, "recall": "wilson",
                                                     "f1": "percentile bootstrap"},
                                         "too_small": self.report.num_samples < SMALL_SAMPLE}
        if self.probs is not None and self.targets is not None:
            d["reliability"] = reliability_bins(self.probs, self.targets, self.report.ece_bins)
        d["subgroups"] = [g.to_dict() for g in self.subgroups]
        d["corruptions"] = None if self.corruptions is None else self.corruptions.to_dict()
        d["mistakes"] = self.mistakes()
        return d

    def format_table(self) -> str:
        head = (f"model {self.model}, split {self.split or 'all'}: {self.report.num_samples} images"
                f"{f', {len(self.skipped)} unreadable (skipped)' if self.skipped else ''}\n"
                f"calibration: ECE {self.ece_uncalibrated:.4f} before, {self.ece_calibrated:.4f} after "
                f"temperature scaling (T={self.temperature:.3f})\n")
        if self.bootstrap is not None and self.intervals:
            pct = round(self.bootstrap.level * 100)
            head += f"{pct}% CIs (Wilson for proportions; bootstrap, {self.bootstrap.resamples} resamples, seed " \
                f"{self.bootstrap.seed}, for the others): " + ", ".join(
                    f"{k} [{lo:.4f}, {hi:.4f}] ({'Wilson' if INTERVAL_METHODS.get(k) == 'wilson' else 'bootstrap'})"
                    for k, (lo, hi) in self.intervals.items()) + "\n"
            if self.report.num_samples < SMALL_SAMPLE:
                head += (f"too small to judge: {self.report.num_samples} images (fewer than {SMALL_SAMPLE}); the "
                         "intervals show how little they say\n")
        parts = [head + self.report.format_table()]
        parts += [g.format_table() for g in self.subgroups]
        if self.corruptions is not None:
            parts.append(self.corruptions.format_table())
        return "\n\n".join(parts)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write report.json, confusion.png and reliability.png into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "report.json", json.dumps(self.to_dict(), indent=2) + "\n")
        plot_confusion_matrix(self.report.confusion, self.report.labels, out / "confusion.png")
        if self.probs is not None and self.targets is not None:
            plot_reliability_diagram(self.probs, self.targets, out / "reliability.png",
                                     title=f"{self.model}, T={self.temperature:.2f}")
        return out


def evaluation_samples(model: Classifier, data: str | os.PathLike | ClassificationDataset,
                       split: str | None = None) -> ClassificationDataset:
    """``data`` (a folder, a manifest or a dataset), restricted to ``split``, checked against the
    model: every label must be one of the model's labels (matched by name); the model's label
    index of sample ``s`` is ``model.labels.index(s.label)``."""
    ds = select_split(data if isinstance(data, ClassificationDataset) else ClassificationDataset.load(data), split)
    index = {label: i for i, label in enumerate(model.labels)}
    unknown = sorted({s.label for s in ds.samples} - set(index))
    if unknown:
        raise ConfigError(f"labels not known to model {model.name}: {', '.join(unknown[:10])}."
                          f"{suggest(unknown[0], index)}")
    return ds


def evaluate_classifier(
    model: Classifier,
    data: str | os.PathLike | ClassificationDataset,
    *,
    split: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
    by: Sequence[str] = (),
    subgroup_metric: str = "accuracy",
    min_group_size: int = MIN_GROUP_SIZE,
    bootstrap: BootstrapConfig | None = None,
    profile: bool = False,
    model_ref: str | None = None,
    metadata: str | os.PathLike | None = None,
) -> ClassifierEvaluation:
    """Run ``model`` over ``data`` (optionally one split) and measure it.

    Dataset labels are matched to the model's labels by name. Unreadable images are
    skipped and listed in the result. Headline metrics get intervals at ``bootstrap.level``:
    Wilson score intervals for accuracy, top-k accuracy and per-class recall, percentile
    bootstrap ones for macro-F1, per-class F1 and ECE (``bootstrap``; default 1,000
    resamples, 95%, seed 0). Each column in ``by`` (manifest
    metadata) gets a :class:`~visor.evaluate.subgroups.SubgroupReport` of
    ``subgroup_metric`` (``accuracy`` or ``macro_f1``). With ``profile`` the same pass also
    keeps embeddings and input statistics and builds a drift profile (``result.profile``;
    ``model_ref`` is how ``visor monitor`` will load the model again). ``metadata`` is a side
    file of per-image columns (see :mod:`visor.evaluate.metadata`), added to the manifest's.
    """
    from tqdm import tqdm

    if subgroup_metric not in ("accuracy", "macro_f1"):
        raise ConfigError(f"subgroup metric must be accuracy or macro_f1, got {subgroup_metric!r}."
                          f"{suggest(subgroup_metric, ('accuracy', 'macro_f1'))}")
    config = bootstrap or BootstrapConfig()
    ds = evaluation_samples(model, data, split)
    if metadata is not None:
        from visor.evaluate.metadata import attach_metadata

        extra = attach_metadata([(s.path, None) for s in ds.samples], metadata)
        ds = ClassificationDataset.from_samples(
            [dataclasses.replace(s, metadata={**s.metadata, **m}) for s, m in zip(ds.samples, extra, strict=True)],
            ds.classes, ds.root)
    for column in by:
        group_column([s.metadata for s in ds.samples], column)  # fail before inference
    index = {label: i for i, label in enumerate(model.labels)}
    runner = None
    if profile:
        runner = FeatureRunner(model)
    logits, targets, skipped, kept, embs, stats = [], [], [], [], [], []
    with tqdm(total=len(ds.samples), unit="img", disable=not progress, desc="evaluating") as bar:
        batches = model.decoded_batches([s.path for s in ds.samples], batch_size)
        offset = 0
        for chunk, decoded in batches:
            samples = ds.samples[offset : offset + len(chunk)]
            offset += len(chunk)
            good, bad = split_decoded(samples, decoded)
            skipped += [(str(s.path), describe_error(e)) for s, e in bad]
            if good:
                batch = model.preprocess([d for _, d in good])
                if runner is not None:
                    lg, em, st = runner.outputs(batch)
                    embs.append(em)
                    stats.append(st)
                else:
                    lg = model.logits(batch)
                logits.append(lg)
                targets += [index[s.label] for s, _ in good]
                kept += [s for s, _ in good]
            bar.update(len(chunk))
    if not targets:
        raise ConfigError("no readable images to evaluate")
    raw = np.concatenate(logits)
    y = np.asarray(targets, dtype=np.int64)
    t = model.card.temperature
    probs = softmax(raw, t)
    report = classification_report(y, probs, model.labels)
    outcomes = ClassificationOutcomes.from_probabilities(y, probs, k=report.top_k, ece_bins=report.ece_bins)
    intervals = {name: outcomes.interval(name, config) for name in CLASSIFICATION_METRICS}
    class_cis = {model.labels[c]: v for c, v in outcomes.class_intervals(config).items()}
    subgroups = tuple(
        classification_subgroups(outcomes, group_column([s.metadata for s in kept], column), column,
                                 metric=subgroup_metric, config=config, min_size=min_group_size)
        for column in by)
    drift_profile = None
    if runner is not None:
        drift_profile = DriftProfile.build(probs, np.concatenate(embs), np.concatenate(stats),
                                           model=model_reference(model_ref or model.name), labels=model.labels,
                                           model_sha256=model_sha256(model),
                                           source=_describe(data, split))
    return ClassifierEvaluation(
        model=model.name,
        split=split,
        report=report,
        temperature=t,
        ece_uncalibrated=expected_calibration_error(softmax(raw), y),
        ece_calibrated=expected_calibration_error(probs, y),
        skipped=skipped,
        probs=probs,
        targets=y,
        paths=tuple(str(s.path) for s in kept),
        bootstrap=config,
        intervals=intervals,
        class_intervals=class_cis,
        subgroups=subgroups,
        profile=drift_profile,
    )


def _describe(data: str | os.PathLike | ClassificationDataset, split: str | None) -> str:
    where = "a dataset" if isinstance(data, ClassificationDataset) else os.fspath(data)
    return f"{where} ({split})" if split else where
