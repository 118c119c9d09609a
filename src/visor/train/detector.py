"""Train an FCOS detector (EfficientNet-Lite0 backbone, ImageNet-pretrained) on boxes.

Same conventions as classification training: a run folder with best/last safetensors
checkpoints written atomically, exact resume, early stopping on validation AP50,
progress bars, and an ONNX export plus card.json so the run folder is a model.

Detector epochs can be long (one epoch of BCCD at 384 px: about 13 minutes on 2 cores), so
``last`` is also written within an epoch, every ``checkpoint_every`` steps or
``checkpoint_seconds`` seconds, with the steps taken and their losses: the epoch order is a
function of (seed, epoch) and each sample's augmentation of (seed, epoch, index), so a
resumed run skips the steps already taken and continues exactly as a straight run would.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visor.data import formats
from visor.data.augment import sample_seed
from visor.errors import ConfigError, VisorError
from visor.io import open_image
from visor.io.files import atomic_path, atomic_write
from visor.models import architectures, registry
from visor.models.card import CARD_FILENAME, ModelCard, Preprocess, WeightsSource
from visor.models.weights import resolve, sha256_file
from visor.train.checkpoint import load_checkpoint
from visor.train.common import (
    BEST,
    EpochEnd,
    LoopState,
    Validation,
    open_run,
    optimizer_and_schedule,
    run_epochs,
    train_val_split,
    write_json,
)
from visor.train.config import DetectTrainConfig
from visor.types import Detections


@dataclass(frozen=True)
class DetectTrainResult:
    run_dir: Path
    card: ModelCard
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    metrics: dict[str, Any]


# --------------------------------------------------------------------------- data


@dataclass
class _Item:
    image: np.ndarray  # HxWx3 uint8, downscaled so the longer side <= img_size
    boxes: np.ndarray  # (M, 4) xyxy in the stored image's pixels
    labels: np.ndarray  # (M,)
    scale: float  # stored / original
    original: Detections  # ground truth in original pixels (for AP)
    size: tuple[int, int]  # original (width, height)


def _load_items(ds, img_size: int, progress: bool, what: str) -> tuple[list[_Item], list[tuple[str, str]]]:
    from PIL import Image
    from tqdm import tqdm

    items, skipped = [], []
    for i, entry in enumerate(tqdm(ds.images, desc=f"loading {what}", unit="img", disable=not progress, leave=False)):
        try:
            img = open_image(entry.path, draft_size=(img_size, img_size))
        except VisorError as e:
            skipped.append((str(entry.path), f"{type(e).__name__}: {e}"))
            continue
        scale = min(1.0, img_size / max(entry.width, entry.height))
        w, h = max(1, round(entry.width * scale)), max(1, round(entry.height * scale))
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        gt = ds.detections(i)
        keep = ~gt.data["iscrowd"].astype(bool) if "iscrowd" in gt.data else np.ones(len(gt), bool)
        boxes = np.clip(gt.xyxy[keep] * scale, 0, [w, h, w, h]).astype(np.float32)
        ok = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        items.append(_Item(np.asarray(img), boxes[ok], gt.class_id[keep][ok], scale, gt,
                           (entry.width, entry.height)))
    return items, skipped


class _Transform:
    """Box-aware augmentation and letterboxing with albumentations, seeded per call."""

    def __init__(self, names: Sequence[str], size: int, pad_value: int, train: bool) -> None:
        import albumentations as A
        import cv2

        ops: list[Any] = []
        if train and "scale" in names:
            ops.append(A.Affine(scale=(0.7, 1.3), translate_percent=(-0.1, 0.1), p=0.7,
                                border_mode=cv2.BORDER_CONSTANT, fill=pad_value))
        if train and "hflip" in names:
            ops.append(A.HorizontalFlip(p=0.5))
        if train and "vflip" in names:
            ops.append(A.VerticalFlip(p=0.5))
        if train and "color" in names:
            ops.append(A.ColorJitter(0.25, 0.25, 0.25, 0.02, p=0.7))
        ops += [A.LongestMaxSize(max_size=size), A.PadIfNeeded(size, size, position="center",
                                                                border_mode=cv2.BORDER_CONSTANT, fill=pad_value)]
        self.compose = A.Compose(ops, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"],
                                                               min_visibility=0.3, clip=True), seed=0)

    def __call__(self, item: _Item, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.compose.set_random_seed(seed)
        out = self.compose(image=item.image, bboxes=item.boxes, labels=item.labels)
        boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        return out["image"], boxes, np.asarray(out["labels"], np.int64)


def letterbox_params(width: int, height: int, size: int) -> tuple[float, float, float]:
    """(scale, pad_x, pad_y) mapping original pixels into a centred ``size`` x ``size`` letterbox."""
    scale = size / max(width, height)
    return scale, (size - round(width * scale)) / 2, (size - round(height * scale)) / 2


def decode_predictions(output: np.ndarray, sizes: Sequence[tuple[int, int]], img_size: int, *, conf: float = 0.001,
                       iou: float = 0.6, max_det: int = 100, pre_nms: int = 1000) -> list[Detections]:
    """``[B, 4 + nc, N]`` outputs to per-image Detections in original pixels (class-aware NMS)."""
    from visor.ops.nms import batched_nms

    results = []
    for out, (w, h) in zip(output, sizes, strict=True):
        boxes_cxcywh, scores = out[:4].T, out[4:].T  # (N, 4), (N, nc)
        idx, cls = np.nonzero(scores > conf)
        s = scores[idx, cls]
        order = np.argsort(-s, kind="stable")[:pre_nms]
        idx, cls, s = idx[order], cls[order], s[order]
        b = boxes_cxcywh[idx]
        xyxy = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
        scale, px, py = letterbox_params(w, h, img_size)
        xyxy = (xyxy - [px, py, px, py]) / scale
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
        keep = batched_nms(xyxy, s, cls, iou)[:max_det]
        results.append(Detections(xyxy[keep], s[keep], cls[keep]))
    return results


# --------------------------------------------------------------------------- the loop


def train_detector(
    data,
    out: str | os.PathLike,
    config: DetectTrainConfig | None = None,
    *,
    resume: bool = False,
    callbacks: Sequence[Callable[[EpochEnd], None]] = (),
    progress: bool = True,
    threads: int | None = None,
) -> DetectTrainResult:
    """Train an FCOS detector on ``data`` (COCO json, YOLO data.yaml, VOC folder, or a DetectionDataset).

    Needs the ``train`` extra (PyTorch, albumentations): without it, a :class:`~visor.errors.ConfigError` says so.
    """
    torch = architectures.require_torch("training", augment=True)
    from visor.data.detection import DetectionDataset
    from visor.models.architectures.fcos import backbone_filter
    from visor.train.detection_loss import fcos_loss

    run_dir, ckpt, config, data = open_run(out, config, DetectTrainConfig, data, resume)

    ds = data if isinstance(data, DetectionDataset) else formats.load(data)
    data_ref = str(data) if not isinstance(data, DetectionDataset) else str(ds.root or "")
    train_ds, val_ds = train_val_split(ds, "images", config.seed, config.val_fraction)
    classes = ds.classes
    base = registry.builtin().get(config.model)
    prep = Preprocess(input_size=(config.img_size, config.img_size), resize="letterbox", interpolation="bilinear",
                      mean=base.preprocess.mean, std=base.preprocess.std, letterbox_align="center", pad_value=114)
    train_items, skipped = _load_items(train_ds, config.img_size, progress, "train")
    val_items, skipped_val = _load_items(val_ds, config.img_size, progress, "val")
    skipped += skipped_val
    if not train_items or not val_items:
        raise ConfigError(f"need images in both train ({len(train_items)}) and val ({len(val_items)})")

    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(config.seed)
        model = architectures.create("fcos_efficientnet_lite0", num_classes=len(classes), width=config.fpn_width)
        backbone_state = backbone_filter(architectures.load_state_dict(resolve(base.weights), base.weights.format))
        missing = model.load_state_dict(backbone_state, strict=False)
        if missing.unexpected_keys:
            raise ConfigError(f"unexpected backbone weights: {missing.unexpected_keys[:5]}")

        mean = np.asarray(prep.mean, np.float32) * 255
        inv_std = 1 / (np.asarray(prep.std, np.float32) * 255)
        train_tf = _Transform(config.augment, config.img_size, prep.pad_value, train=True)
        val_tf = _Transform((), config.img_size, prep.pad_value, train=False)
        val_x = torch.from_numpy(_to_tensor(np.stack([val_tf(it, 0)[0] for it in val_items]), mean, inv_std))

        backbone_params = list(model.backbone.parameters())
        optimizer, scheduler, steps_per_epoch = optimizer_and_schedule(model, backbone_params, config,
                                                                       len(train_items))
        loop = LoopState.restore(ckpt, model, optimizer, scheduler) if ckpt is not None else LoopState()

        def train_step(idx: np.ndarray, epoch: int) -> float:
            batch = [train_tf(train_items[i], sample_seed(config.seed, epoch, int(i))) for i in idx]
            x = torch.from_numpy(_to_tensor(np.stack([b[0] for b in batch]), mean, inv_std))
            targets = [(torch.from_numpy(b[1]), torch.from_numpy(b[2])) for b in batch]
            parts = fcos_loss(model.forward_raw(x), model.strides, targets, len(classes))
            optimizer.zero_grad(set_to_none=True)
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            scheduler.step()
            return float(parts["loss"].detach())

        def validate() -> Validation:
            report = _validate(model, val_x, val_items, classes, config, progress)
            return Validation(report.ap50, {"val_ap": report.ap, "val_ap50": report.ap50},
                              f"val AP50 {report.ap50:.4f}, AP {report.ap:.4f}")

        common = {"config": config.to_dict(), "data": data_ref, "classes": list(classes)}
        stopped_early = run_epochs(
            model=model, optimizer=optimizer, scheduler=scheduler, loop=loop, config=config, run_dir=run_dir,
            num_samples=len(train_items), steps_per_epoch=steps_per_epoch, backbone_params=backbone_params,
            backbone=model.backbone, train_step=train_step, validate=validate, common=common, callbacks=callbacks,
            progress=progress, metric="val_ap50")

        model.load_state_dict(load_checkpoint(run_dir / BEST).model)
        report = _validate(model, val_x, val_items, classes, config, progress)
        return _finish(model, run_dir, base, prep, classes, config, report, loop.history, loop.best,
                       stopped_early, skipped, data_ref)
    finally:
        torch.set_num_threads(previous_threads)


def _to_tensor(batch: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(((batch.astype(np.float32) - mean) * inv_std).transpose(0, 3, 1, 2))


def _validate(model, val_x, val_items, classes, config, progress: bool = False):
    import torch
    from tqdm import tqdm

    from visor.evaluate.detection import evaluate_detections

    model.eval()
    with torch.no_grad():
        starts = range(0, len(val_x), config.batch_size)
        outs = np.concatenate([model(val_x[i : i + config.batch_size]).numpy()
                               for i in tqdm(starts, desc="validating", unit="batch", disable=not progress,
                                             leave=False)])
    preds = decode_predictions(outs, [it.size for it in val_items], config.img_size, iou=config.eval_iou)
    return evaluate_detections([it.original for it in val_items], preds, classes)


def _finish(model, run_dir, base, prep, classes, config, report, history, best, stopped_early, skipped,
            data_ref) -> DetectTrainResult:
    from visor.evaluate import plot_training_curves
    from visor.evaluate.detection_plots import plot_pr_curves
    from visor.models.export import ONNX_FILENAME, export_onnx

    with atomic_path(run_dir / ONNX_FILENAME) as tmp_onnx:
        export_onnx(model, tmp_onnx, prep.input_size)
    card = ModelCard(
        name=run_dir.resolve().name,
        task="detection",
        architecture="fcos_efficientnet_lite0",
        weights=WeightsSource(kind="path", location=ONNX_FILENAME, sha256=sha256_file(run_dir / ONNX_FILENAME),
                              format="onnx"),
        labels=classes,
        preprocess=prep,
        license="same as the training data",
        description=f"FCOS detector on {base.name}, trained by visor on {data_ref or 'a dataset'}",
        source=f"visor train detect; backbone {base.name} ({base.weights.sha256})",
        metrics={"val_ap": round(report.ap, 4), "val_ap50": round(report.ap50, 4)},
        output_format="yolov8",
    )
    card.save(run_dir / CARD_FILENAME)
    atomic_write(run_dir / "labels.txt", "\n".join(classes) + "\n")
    metrics = {"best_epoch": best["epoch"], "epochs_run": len(history), "stopped_early": stopped_early,
               "val": report.to_dict(), "history": history, "skipped_files": skipped}
    write_json(run_dir / "config.json", {"config": config.to_dict(), "data": data_ref})
    write_json(run_dir / "metrics.json", metrics)
    plot_training_curves(history, run_dir / "curves.png")
    plot_pr_curves(report, run_dir / "pr_curves.png")
    return DetectTrainResult(run_dir, card, best["epoch"], len(history), stopped_early, metrics)
