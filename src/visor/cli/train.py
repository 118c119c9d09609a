"""``visor train classify``, ``visor train detect`` and ``visor train segment``: thin layers over visor.train."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from visor.cli.common import ExitCode, add_progress_options, add_runtime_options, err, show_progress
from visor.data.augment import AUGMENTATIONS
from visor.train.common import REPRODUCIBLE_MATH_ENV
from visor.train.config import (
    DETECT_AUGMENTATIONS,
    SEGMENT_AUGMENTATIONS,
    DetectTrainConfig,
    SegmentTrainConfig,
    TrainConfig,
)

_D = TrainConfig()
TRAIN_THREADS_HELP = "CPU threads for training (default: all cores)"


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


#: Command-line flags that set a training config field: ``{args attribute: config field}``.
_CLASSIFY_FIELDS = {
    "base_model": "model", "epochs": "epochs", "batch_size": "batch_size", "img_size": "img_size", "lr": "lr",
    "freeze_epochs": "freeze_epochs", "patience": "patience", "seed": "seed", "balance": "balance",
    "balance_method": "balance_method", "label_smoothing": "label_smoothing", "weight_decay": "weight_decay",
    "warmup_epochs": "warmup_epochs", "monitor": "monitor",
}
_DETECT_FIELDS = {
    "base_model": "model", "epochs": "epochs", "batch_size": "batch_size", "img_size": "img_size", "lr": "lr",
    "freeze_epochs": "freeze_epochs", "patience": "patience", "seed": "seed",
    "checkpoint_every": "checkpoint_every", "checkpoint_seconds": "checkpoint_seconds",
}
_SEGMENT_FIELDS = {
    "base_model": "model", "epochs": "epochs", "batch_size": "batch_size", "img_size": "img_size",
    "crop_size": "crop_size", "lr": "lr", "freeze_epochs": "freeze_epochs", "patience": "patience", "seed": "seed",
    "loss": "loss", "class_weights": "class_weights", "checkpoint_every": "checkpoint_every",
    "checkpoint_seconds": "checkpoint_seconds",
}


def _given(args: argparse.Namespace, fields: dict[str, str]) -> dict[str, object]:
    """The config fields set on the command line (flags left out are None)."""
    given = {field: getattr(args, name) for name, field in fields.items() if getattr(args, name) is not None}
    if args.no_augment:
        given["augment"] = ()
    elif args.augment is not None:
        given["augment"] = _names(args.augment)
    return given


def _train(task: str, train, args: argparse.Namespace, config_cls, fields: dict[str, str], **extra):
    """Start or resume a run; on Ctrl-C say how to resume (exit 130). Returns the result, or an exit code."""
    given = _given(args, fields)
    for name, value in REPRODUCIBLE_MATH_ENV.items():  # before PyTorch's first matrix product in this process
        os.environ.setdefault(name, value)
    try:
        if args.resume:
            # Flags given with --resume must agree with the run's saved settings (the library says which differ).
            return train(args.data, args.resume, given or None, resume=True, progress=show_progress(args),
                         threads=args.threads, **extra)
        if args.data is None or args.out is None:
            err("DATA and --out are needed (or --resume RUN_DIR)")
            return ExitCode.USAGE
        return train(args.data, args.out, config_cls(**given), progress=show_progress(args), threads=args.threads,
                     **extra)
    except KeyboardInterrupt:
        run = Path(args.resume or args.out)
        if (run / "last.safetensors").is_file():
            err(f"interrupted; resume with: visor train {task} --resume {run}")
        else:
            err(f"interrupted before the first checkpoint of {run}; nothing to resume, run the command again")
        return ExitCode.INTERRUPTED


def cmd_train_classify(args: argparse.Namespace) -> int:
    from visor.train import train_classifier

    result = _train("classify", train_classifier, args, TrainConfig, _CLASSIFY_FIELDS)
    if isinstance(result, int):
        return result
    val = result.metrics["val"]
    print(f"run: {result.run_dir}")
    print(f"best epoch {result.best_epoch} of {result.epochs_run}{' (stopped early)' if result.stopped_early else ''}"
          f"; val accuracy {val['accuracy']:.2%}, macro-F1 {val['macro_f1']:.4f}")
    print(f"calibration on val: ECE {val['ece_before_scaling']:.4f} -> {val['ece_after_scaling']:.4f} "
          f"(temperature {result.metrics['temperature']:.3f}: {result.metrics.get('temperature_fit', 'fitted')})")
    if "test" in result.metrics:
        print(f"test accuracy {result.metrics['test']['accuracy']:.2%}")
    skipped = result.metrics.get("skipped_files", [])
    for path, reason in skipped:
        print(f"visor: warning: skipped unreadable {path}: {reason}", file=sys.stderr)
    print(f"use it: visor classify --model {result.run_dir} IMAGE")
    return ExitCode.OK


def cmd_train_detect(args: argparse.Namespace) -> int:
    from visor.train.detector import train_detector

    result = _train("detect", train_detector, args, DetectTrainConfig, _DETECT_FIELDS)
    if isinstance(result, int):
        return result
    val = result.metrics["val"]
    print(f"run: {result.run_dir}")
    print(f"best epoch {result.best_epoch} of {result.epochs_run}{' (stopped early)' if result.stopped_early else ''}"
          f"; val AP50 {val['ap50']:.4f}, AP {val['ap']:.4f}")
    for path, reason in result.metrics.get("skipped_files", []):
        print(f"visor: warning: skipped unreadable {path}: {reason}", file=sys.stderr)
    print(f"use it: visor detect --model {result.run_dir} IMAGE")
    return ExitCode.OK


def cmd_train_segment(args: argparse.Namespace) -> int:
    from visor.train.segmenter import train_segmenter

    classes = None
    if args.classes is not None:
        path = Path(args.classes)
        classes = path if path.is_file() else _names(args.classes)
    result = _train("segment", train_segmenter, args, SegmentTrainConfig, _SEGMENT_FIELDS, classes=classes,
                    ignore_index=args.ignore_index)
    if isinstance(result, int):
        return result
    val = result.metrics["val"]
    print(f"run: {result.run_dir}")
    print(f"best epoch {result.best_epoch} of {result.epochs_run}{' (stopped early)' if result.stopped_early else ''}"
          f"; val mIoU {val['miou']:.4f}, pixel accuracy {val['pixel_accuracy']:.4f}")
    for name, iou in result.card.metrics["val_iou"].items():
        print(f"  {name:<24} IoU {'-' if iou is None else f'{iou:.4f}'}")
    for path, reason in result.metrics.get("skipped_files", []):
        print(f"visor: warning: skipped {path}: {reason}", file=sys.stderr)
    print(f"use it: visor segment --model {result.run_dir} IMAGE")
    return ExitCode.OK


def register(sub) -> None:
    train = sub.add_parser("train", help="train a model on your labelled images",
                           description="Train a model. See 'visor train classify --help'.")
    tsub = train.add_subparsers(dest="train_task", metavar="TASK", required=True)
    p = tsub.add_parser(
        "classify",
        help="fine-tune an image classifier",
        description=(
            "Fine-tune the ImageNet-pretrained EfficientNet-Lite0 with a new head on DATA: a folder of "
            "class folders (root/<class>/*.jpg), a folder of split folders (root/train/<class>/..., "
            "root/val/<class>/...), or a CSV/JSONL manifest (path,label[,split]). Without a val split, a "
            "stratified 10% of the training data is held out. The run folder (--out) gets the model card, "
            "ONNX model, checkpoints, metrics.json and plots, and is itself a model: "
            "'visor classify --model RUN_DIR img.jpg'."
        ),
    )
    p.add_argument("data", nargs="?", metavar="DATA", help="training data (folder or manifest)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR exactly where it stopped, with its saved settings "
                        "(training flags given with it must match them)")
    p.add_argument("--epochs", type=int, default=None, help=f"maximum epochs (default {_D.epochs})")
    p.add_argument("--batch-size", type=int, default=None, help=f"default {_D.batch_size}")
    p.add_argument("--img-size", type=int, default=None, help=f"input size in pixels (default {_D.img_size})")
    p.add_argument("--lr", type=float, default=None, help=f"peak AdamW learning rate (default {_D.lr})")
    p.add_argument("--weight-decay", type=float, default=None, help=f"default {_D.weight_decay}")
    p.add_argument("--warmup-epochs", type=float, default=None, help=f"default {_D.warmup_epochs}")
    p.add_argument("--label-smoothing", type=float, default=None, help=f"default {_D.label_smoothing}")
    p.add_argument("--freeze-epochs", type=int, default=None,
                   help=f"epochs that train only the new head (default {_D.freeze_epochs})")
    p.add_argument("--patience", type=int, default=None,
                   help=f"stop after N epochs without val improvement, 0 = never (default {_D.patience})")
    p.add_argument("--monitor", choices=["accuracy", "macro_f1", "loss"], default=None,
                   help=f"validation metric for early stopping and the best checkpoint (default {_D.monitor})")
    p.add_argument("--seed", type=int, default=None, help=f"default {_D.seed}")
    p.add_argument("--balance", choices=["auto", "on", "off"], default=None,
                   help="class balancing; auto turns it on when the largest class is over 3x the smallest")
    p.add_argument("--balance-method", choices=["loss", "sampler"], default=None,
                   help="class-weighted loss or a balanced sampler (default loss)")
    p.add_argument("--augment", default=None,
                   help=f"comma-separated augmentations from: {', '.join(AUGMENTATIONS)} "
                        f"(default {','.join(_D.augment)})")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--base-model", default=None, help=f"pretrained model to start from (default {_D.model})")
    add_runtime_options(p, limits=False, threads_help=TRAIN_THREADS_HELP)
    add_progress_options(p)
    p.set_defaults(func=cmd_train_classify)

    dd = DetectTrainConfig()
    p = tsub.add_parser(
        "detect",
        help="train an object detector",
        description=(
            "Train an anchor-free FCOS detector (small FPN, ImageNet-pretrained EfficientNet-Lite0 backbone) on "
            "DATA: a COCO json, a YOLO data.yaml or folder, or a Pascal VOC folder. Without a val split a seeded "
            "10% of the training images is held out. Box-aware augmentation, letterbox resize, early stopping on "
            "val AP50, atomic checkpoints and exact --resume, as for classification. The run folder is a model: "
            "'visor detect --model RUN_DIR img.jpg'."
        ),
    )
    p.add_argument("data", nargs="?", metavar="DATA", help="training data (COCO, YOLO or VOC)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR exactly where it stopped, with its saved settings "
                        "(training flags given with it must match them)")
    p.add_argument("--epochs", type=int, default=None, help=f"maximum epochs (default {dd.epochs})")
    p.add_argument("--batch-size", type=int, default=None, help=f"default {dd.batch_size}")
    p.add_argument("--img-size", type=int, default=None,
                   help=f"letterbox size in pixels, a multiple of 32 (default {dd.img_size})")
    p.add_argument("--lr", type=float, default=None,
                   help=f"peak AdamW learning rate of the FPN and head (default {dd.lr})")
    p.add_argument("--freeze-epochs", type=int, default=None, help="epochs with a frozen backbone")
    p.add_argument("--patience", type=int, default=None, help=f"early-stopping patience (default {dd.patience})")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--augment", default=None,
                   help=f"comma-separated, from: {', '.join(DETECT_AUGMENTATIONS)} (default {','.join(dd.augment)})")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--base-model", default=None, help=f"pretrained backbone (default {dd.model})")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS steps within an epoch, for --resume (default: off)")
    p.add_argument("--checkpoint-seconds", type=float, default=None, metavar="S",
                   help=f"also checkpoint within an epoch when S seconds passed since the last checkpoint "
                        f"(default {dd.checkpoint_seconds:g}; 0: off)")
    add_runtime_options(p, limits=False, threads_help=TRAIN_THREADS_HELP)
    add_progress_options(p)
    p.set_defaults(func=cmd_train_detect)

    sd = SegmentTrainConfig()
    p = tsub.add_parser(
        "segment",
        help="train a semantic segmenter",
        description=(
            "Train a semantic segmenter (ImageNet-pretrained EfficientNet-Lite0 encoder, light FPN decoder with "
            "global context) on DATA: a folder of images and index-PNG masks with the same file stems "
            "(images/ + masks/, CamVid-style train/ + trainannot/, or <split>/image + <split>/label), or a COCO "
            "instances json (polygons and RLE rasterised). Cross-entropy with an ignore index, class weights for "
            "rare classes, mask-aware augmentation, early stopping on val mIoU, atomic checkpoints and exact "
            "--resume, as for the other tasks. Items that cannot be used are skipped and listed with their reason. "
            "The run folder is a model: 'visor segment --model RUN_DIR img.jpg'."
        ),
    )
    p.add_argument("data", nargs="?", metavar="DATA", help="training data (mask folder or COCO json)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder to create")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR exactly where it stopped, with its saved settings "
                        "(training flags given with it must match them)")
    p.add_argument("--classes", default=None, metavar="FILE|A,B,...",
                   help="class names by index (a file with one per line, or a comma-separated list); default: "
                        "classes.txt/classes.json in DATA, else from the masks")
    p.add_argument("--ignore-index", type=int, default=None,
                   help="mask value to ignore in the loss and metrics (default 255)")
    p.add_argument("--epochs", type=int, default=None, help=f"maximum epochs (default {sd.epochs})")
    p.add_argument("--batch-size", type=int, default=None, help=f"default {sd.batch_size}")
    p.add_argument("--img-size", type=int, default=None,
                   help=f"longer side of the model input, a multiple of 32 (default {sd.img_size})")
    p.add_argument("--crop-size", type=int, default=None,
                   help="longer side of random training crops, a multiple of 32 (default: whole inputs)")
    p.add_argument("--lr", type=float, default=None, help=f"peak AdamW learning rate of the decoder (default {sd.lr})")
    p.add_argument("--loss", choices=["ce", "ce+dice"], default=None, help=f"default {sd.loss}")
    p.add_argument("--class-weights", choices=["auto", "none"], default=None,
                   help="auto: weight rare classes up (sqrt median frequency balancing; default)")
    p.add_argument("--freeze-epochs", type=int, default=None, help="epochs with a frozen encoder")
    p.add_argument("--patience", type=int, default=None, help=f"early-stopping patience (default {sd.patience})")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--augment", default=None,
                   help=f"comma-separated, from: {', '.join(SEGMENT_AUGMENTATIONS)} (default {','.join(sd.augment)})")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--base-model", default=None, help=f"pretrained encoder (default {sd.model})")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS steps within an epoch, for --resume (default: off)")
    p.add_argument("--checkpoint-seconds", type=float, default=None, metavar="S",
                   help=f"also checkpoint within an epoch when S seconds passed since the last checkpoint "
                        f"(default {sd.checkpoint_seconds:g}; 0: off)")
    add_runtime_options(p, limits=False, threads_help=TRAIN_THREADS_HELP)
    add_progress_options(p)
    p.set_defaults(func=cmd_train_segment)
