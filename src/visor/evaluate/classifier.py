"""Evaluate a classifier on a labelled dataset: metrics, calibration before and after
temperature scaling, a JSON report, a table and plots."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import suggest
from visor.data import ClassificationDataset
from visor.errors import ConfigError, VisorError
from visor.evaluate.calibration import expected_calibration_error, softmax
from visor.evaluate.metrics import ClassificationReport, classification_report
from visor.evaluate.plots import plot_confusion_matrix, plot_reliability_diagram
from visor.models.classifier import Classifier


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "split": self.split,
            **self.report.to_dict(),
            "temperature": self.temperature,
            "ece_before_scaling": self.ece_uncalibrated,
            "ece_after_scaling": self.ece_calibrated,
            "skipped_files": [list(s) for s in self.skipped],
        }

    def format_table(self) -> str:
        head = (f"model {self.model}, split {self.split or 'all'}: {self.report.num_samples} images"
                f"{f', {len(self.skipped)} unreadable (skipped)' if self.skipped else ''}\n"
                f"calibration: ECE {self.ece_uncalibrated:.4f} before, {self.ece_calibrated:.4f} after "
                f"temperature scaling (T={self.temperature:.3f})\n")
        return head + self.report.format_table()

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write report.json, confusion.png and reliability.png into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".report.json.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, out / "report.json")
        plot_confusion_matrix(self.report.confusion, self.report.labels, out / "confusion.png")
        if self.probs is not None and self.targets is not None:
            plot_reliability_diagram(self.probs, self.targets, out / "reliability.png",
                                     title=f"{self.model}, T={self.temperature:.2f}")
        return out


def evaluate_classifier(
    model: Classifier,
    data: str | os.PathLike | ClassificationDataset,
    *,
    split: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> ClassifierEvaluation:
    """Run ``model`` over ``data`` (optionally one split) and measure it.

    Dataset labels are matched to the model's labels by name. Unreadable images are
    skipped and listed in the result.
    """
    from tqdm import tqdm

    ds = data if isinstance(data, ClassificationDataset) else ClassificationDataset.load(data)
    if split is not None:
        if split not in ds.splits:
            raise ConfigError(f"the data has no split {split!r}.{suggest(split, ds.splits)} "
                              f"Splits: {', '.join(ds.splits) or 'none'}")
        ds = ds.subset(split)
    index = {label: i for i, label in enumerate(model.labels)}
    unknown = sorted({s.label for s in ds.samples} - set(index))
    if unknown:
        raise ConfigError(f"labels not known to model {model.name}: {', '.join(unknown[:10])}."
                          f"{suggest(unknown[0], index)}")
    logits, targets, skipped = [], [], []
    with tqdm(total=len(ds.samples), unit="img", disable=not progress, desc="evaluating") as bar:
        batches = model.decoded_batches([s.path for s in ds.samples], batch_size)
        offset = 0
        for chunk, decoded in batches:
            samples = ds.samples[offset : offset + len(chunk)]
            offset += len(chunk)
            good = [(s, d) for s, d in zip(samples, decoded, strict=True) if not isinstance(d, VisorError)]
            skipped += [(str(s.path), f"{type(d).__name__}: {d}") for s, d in zip(samples, decoded, strict=True)
                        if isinstance(d, VisorError)]
            if good:
                logits.append(model.logits(model.preprocess([d for _, d in good])))
                targets += [index[s.label] for s, _ in good]
            bar.update(len(chunk))
    if not targets:
        raise ConfigError("no readable images to evaluate")
    raw = np.concatenate(logits)
    y = np.asarray(targets, dtype=np.int64)
    t = model.card.temperature
    probs = softmax(raw, t)
    return ClassifierEvaluation(
        model=model.name,
        split=split,
        report=classification_report(y, probs, model.labels),
        temperature=t,
        ece_uncalibrated=expected_calibration_error(softmax(raw), y),
        ece_calibrated=expected_calibration_error(probs, y),
        skipped=skipped,
        probs=probs,
        targets=y,
    )
