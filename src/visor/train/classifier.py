"""Fine-tune a pretrained classifier on your labelled images.

The loop is plain PyTorch on the CPU: AdamW, warm-up then cosine learning rate,
label smoothing, optional frozen-backbone epochs, class balancing, early stopping on
a validation metric, and atomic checkpoints from which a run resumes exactly.

Reproducibility: the sampler order is a function of (seed, epoch), each sample's
augmentation of (seed, epoch, index), and the torch RNG (dropout) is saved in each
checkpoint. Checkpoints are written at the end of each epoch, so a resumed run
continues from the start of the next epoch with the same state a straight run had.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visor.data import ClassificationDataset, stratified_split
from visor.data.augment import TrainTransform, sample_seed
from visor.errors import ConfigError, VisorError
from visor.io import open_image
from visor.io.files import atomic_path, atomic_write
from visor.models import architectures, registry
from visor.models.card import CARD_FILENAME, ModelCard, Preprocess, WeightsSource
from visor.models.preprocess import normalize, preprocess
from visor.models.weights import resolve, sha256_file
from visor.train.checkpoint import load_checkpoint
from visor.train.common import (
    BEST,
    EpochEnd,
    LoopState,
    epoch_order,
    open_run,
    optimizer_and_schedule,
    write_json,
)
from visor.train.config import AUTO_BALANCE_RATIO, TrainConfig

TEMPERATURE_BOUNDS = (0.1, 10.0)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    card: ModelCard
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    metrics: dict[str, Any]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Splits:
    train: ClassificationDataset
    val: ClassificationDataset
    test: ClassificationDataset | None


def split_for_training(ds: ClassificationDataset, config: TrainConfig) -> _Splits:
    """Use the data's own train/val/test splits; carve a stratified val split when there is none."""
    splits = set(ds.splits)
    test = ds.subset("test") if "test" in splits else None
    if "train" in splits:
        train = ds.subset("train")
        if "val" in splits:
            return _Splits(train, ds.subset("val"), test)
    else:
        train = ds
    carved = stratified_split(train, (1 - config.val_fraction, config.val_fraction, 0.0), seed=config.seed)
    return _Splits(carved.subset("train"), carved.subset("val"), test)


def _decode_all(ds: ClassificationDataset, max_side: int, progress: bool, what: str):
    """Decode every image once (downscaled so the short side is at most ``max_side``)."""
    from PIL import Image
    from tqdm import tqdm

    images, targets, skipped = [], [], []
    class_index = {c: i for i, c in enumerate(ds.classes)}
    for sample in tqdm(ds.samples, desc=f"loading {what}", unit="img", disable=not progress, leave=False):
        try:
            img = open_image(sample.path, draft_size=(max_side, max_side))
        except VisorError as e:
            skipped.append((str(sample.path), f"{type(e).__name__}: {e}"))
            continue
        short = min(img.size)
        if short > max_side:
            scale = max_side / short
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        images.append(np.asarray(img))
        targets.append(class_index[sample.label])
    return images, np.asarray(targets, dtype=np.int64), skipped


def class_weights(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over the classes present."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return weights


# --------------------------------------------------------------------------- the loop


def train_classifier(
    data: str | os.PathLike | ClassificationDataset | None,
    out: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    callbacks: Sequence[Callable[[EpochEnd], None]] = (),
    progress: bool = True,
    threads: int | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``data`` and write a run folder to ``out``.

    ``data`` is a folder (``root/<class>/...`` or ``root/<split>/<class>/...``), a CSV/JSONL
    manifest, or a :class:`ClassificationDataset`. With ``resume=True`` the run in ``out``
    continues from its last checkpoint, with its saved configuration (and data, when
    ``data`` is None); across processes bit-identically when both have
    :data:`~visor.train.common.REPRODUCIBLE_MATH_ENV` in the environment, as ``visor train`` arranges.
    The run folder is itself a model: ``visor.load(out)``. Needs the ``train``
    extra (PyTorch, albumentations): without it, a :class:`~visor.errors.ConfigError` says so.
    """
    torch = architectures.require_torch("training", augment=True)
    from tqdm import tqdm

    from visor.evaluate import classification_report

    run_dir, ckpt, config, data = open_run(out, config, TrainConfig, data, resume)

    ds = data if isinstance(data, ClassificationDataset) else ClassificationDataset.load(data)
    data_ref = str(data) if not isinstance(data, ClassificationDataset) else str(ds.root or "")
    splits = split_for_training(ds, config)
    classes = ds.classes
    if len(classes) < 2:
        raise ConfigError("training a classifier needs at least 2 classes")
    if ckpt is not None and list(classes) != ckpt.state["classes"]:
        raise ConfigError("the data's classes differ from the run being resumed")

    base = registry.builtin().get(config.model)
    prep = Preprocess(**{**base.preprocess.__dict__, "input_size": (config.img_size, config.img_size)})
    max_side = math.ceil(config.img_size / prep.crop_pct * 1.15)
    train_images, train_y, skipped = _decode_all(splits.train, max_side, progress, "train")
    val_images, val_y, skipped_val = _decode_all(splits.val, max_side, progress, "val")
    skipped += skipped_val
    if len(train_y) == 0 or len(val_y) == 0:
        raise ConfigError(f"need images in both train ({len(train_y)}) and val ({len(val_y)})")

    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(config.seed)
        model = architectures.load(base.architecture, resolve(base.weights), num_classes=base.num_classes,
                                   drop_path=config.drop_path)
        model.reset_classifier(len(classes))

        counts = np.bincount(train_y, minlength=len(classes))
        present = counts[counts > 0]
        imbalance = float(present.max() / present.min())
        balanced = config.balance == "on" or (config.balance == "auto" and imbalance > AUTO_BALANCE_RATIO)
        weights = class_weights(train_y, len(classes))
        loss_weight = torch.tensor(weights, dtype=torch.float32) if balanced and config.balance_method == "loss" \
            else None
        sample_w = weights[train_y] if balanced and config.balance_method == "sampler" else None
        criterion = torch.nn.CrossEntropyLoss(weight=loss_weight, label_smoothing=config.label_smoothing)

        head_ids = {id(p) for p in model.classifier.parameters()}
        backbone = [p for p in model.parameters() if id(p) not in head_ids]
        optimizer, scheduler, steps_per_epoch = optimizer_and_schedule(model, backbone, config, len(train_y))
        total_steps = steps_per_epoch * config.epochs
        transform = TrainTransform(config.augment, prep)
        val_x = torch.from_numpy(_eval_batch(val_images, prep))

        loop = LoopState.restore(ckpt, model, optimizer, scheduler) if ckpt is not None else LoopState()
        history, start_epoch = loop.history, loop.epoch

        state_common = {"config": config.to_dict(), "data": data_ref, "classes": list(classes)}
        stopped_early = False
        bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, unit="step", disable=not progress,
                   desc="training")
        for epoch in range(start_epoch, config.epochs):
            if loop.should_stop(config.patience):
                stopped_early = True
                break
            t0 = time.perf_counter()
            frozen = epoch < config.freeze_epochs
            _set_trainable(model, frozen)
            order = epoch_order(len(train_y), epoch, config.seed, sample_w)
            losses = []
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                batch = np.stack([transform(train_images[i], sample_seed(config.seed, epoch, int(i))) for i in idx])
                x = torch.from_numpy(normalize(batch, prep))
                y = torch.from_numpy(train_y[idx])
                if frozen:
                    with torch.no_grad():
                        feats = model.forward_features(x)
                    logits = model.forward_head(feats)
                else:
                    logits = model(x)
                loss = criterion(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{losses[-1]:.3f}",
                                val_acc=f"{history[-1]['val_accuracy']:.2%}" if history else "-")

            val_logits = _logits(model, val_x, config.batch_size)
            val_probs = torch.softmax(torch.from_numpy(val_logits), 1).numpy()
            report = classification_report(val_y, val_probs, classes)
            val_loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(val_y)))
            row = {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "val_accuracy": report.accuracy,
                "val_macro_f1": report.macro_f1,
                "lr": optimizer.param_groups[1]["lr"],
                "seconds": time.perf_counter() - t0,
            }
            value = {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "loss": -val_loss}[config.monitor]
            improved = loop.end_epoch(run_dir, row, value, model, optimizer, scheduler,
                                      {**state_common, "step": (epoch + 1) * steps_per_epoch,
                                       "imbalance_ratio": imbalance, "balanced": balanced})
            bar.write(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, val loss "
                      f"{val_loss:.4f}, val accuracy {report.accuracy:.2%}, macro-F1 {report.macro_f1:.3f}"
                      f"{' (best)' if improved else ''}")
            for callback in callbacks:
                callback(EpochEnd(epoch + 1, row, run_dir))
        bar.close()

        best_ckpt = load_checkpoint(run_dir / BEST)
        model.load_state_dict(best_ckpt.model)
        return _finish(model, run_dir, base, prep, classes, config, splits, val_x, val_y, history, loop.best,
                       stopped_early, imbalance, balanced, skipped, data_ref, progress, max_side)
    finally:
        torch.set_num_threads(previous_threads)


def _set_trainable(model, frozen: bool) -> None:
    model.train()
    for p in model.parameters():
        p.requires_grad_(not frozen)
    for p in model.classifier.parameters():
        p.requires_grad_(True)
    if frozen:  # frozen BatchNorm statistics too: the backbone runs exactly as pretrained
        for part in (model.stem, model.blocks, model.head):
            part.eval()


def _eval_batch(images: Sequence[np.ndarray], prep: Preprocess) -> np.ndarray:
    from PIL import Image

    return preprocess([Image.fromarray(a) for a in images], prep)


def _logits(model, x, batch_size: int) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).numpy()


def _finish(model, run_dir, base, prep, classes, config, splits, val_x, val_y, history, best, stopped_early,
            imbalance, balanced, skipped, data_ref, progress, max_side) -> TrainResult:
    """Calibrate on val, export ONNX, and write the card, metrics and plots."""
    import torch

    from visor.evaluate import (
        classification_report,
        expected_calibration_error,
        plot_confusion_matrix,
        plot_reliability_diagram,
        plot_training_curves,
        softmax,
    )
    from visor.evaluate.calibration import choose_temperature
    from visor.models.export import ONNX_FILENAME, export_onnx

    val_logits = _logits(model, val_x, config.batch_size)
    # A small val split, or one the model gets entirely right, cannot inform a temperature (the fit
    # runs to the lower bound and makes every answer near-certain): T = 1 is kept, with the reason.
    temperature, temperature_fit = choose_temperature(val_logits, val_y, bounds=TEMPERATURE_BOUNDS)
    ece_before = expected_calibration_error(softmax(val_logits), val_y)
    ece_after = expected_calibration_error(softmax(val_logits, temperature), val_y)
    val_report = classification_report(val_y, softmax(val_logits, temperature), classes)

    with atomic_path(run_dir / ONNX_FILENAME) as tmp_onnx:
        export_onnx(model, tmp_onnx, prep.input_size)

    metrics: dict[str, Any] = {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "monitor": config.monitor,
        "imbalance_ratio": imbalance,
        "balanced": balanced,
        "temperature": temperature,
        "temperature_fit": temperature_fit,
        "val": {**val_report.to_dict(), "ece_before_scaling": ece_before, "ece_after_scaling": ece_after},
        "history": history,
        "skipped_files": skipped,
    }
    if splits.test is not None and len(splits.test):
        test_images, test_y, test_skipped = _decode_all(splits.test, max_side, progress, "test")
        if len(test_y):
            test_logits = _logits(model, torch.from_numpy(_eval_batch(test_images, prep)), config.batch_size)
            metrics["test"] = classification_report(test_y, softmax(test_logits, temperature), classes).to_dict()
        metrics["skipped_files"] += test_skipped

    card = ModelCard(
        name=run_dir.resolve().name,
        task="classification",
        architecture=base.architecture,
        weights=WeightsSource(kind="path", location=ONNX_FILENAME, sha256=sha256_file(run_dir / ONNX_FILENAME),
                              format="onnx"),
        labels=classes,
        preprocess=prep,
        license="same as the training data",
        description=f"{base.architecture} fine-tuned by visor from {base.name} on {data_ref or 'a dataset'}",
        source=f"visor train classify; base weights {base.name} ({base.weights.sha256})",
        metrics={"val_accuracy": round(val_report.accuracy * 100, 2), "val_macro_f1": round(val_report.macro_f1, 4),
                 "val_ece": round(ece_after, 4), "temperature_fit": temperature_fit},
        temperature=temperature,
    )
    card.save(run_dir / CARD_FILENAME)
    atomic_write(run_dir / "labels.txt", "\n".join(classes) + "\n")
    write_json(run_dir / "config.json", {"config": config.to_dict(), "data": data_ref})
    write_json(run_dir / "metrics.json", metrics)
    plot_training_curves(history, run_dir / "curves.png")
    plot_confusion_matrix(val_report.confusion, classes, run_dir / "confusion.png")
    plot_reliability_diagram(softmax(val_logits, temperature), val_y, run_dir / "reliability.png",
                             title=f"val, T={temperature:.2f}")
    return TrainResult(run_dir, card, best["epoch"], len(history), stopped_early, metrics)
