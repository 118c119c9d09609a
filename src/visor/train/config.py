"""Training configuration, validated like every visor config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from visor.config import from_mapping, suggest
from visor.data.augment import DEFAULT_AUGMENT, check_names
from visor.errors import ConfigError
from visor.models.registry import DEFAULT_CLASSIFIER

Balance = Literal["auto", "on", "off"]
BalanceMethod = Literal["loss", "sampler"]
Monitor = Literal["accuracy", "macro_f1", "loss"]

#: Imbalance ratio (largest class / smallest class) above which balance="auto" turns balancing on.
AUTO_BALANCE_RATIO = 3.0


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning a pretrained classifier with a new head."""

    model: str = DEFAULT_CLASSIFIER
    """Registry name of the pretrained model to start from."""
    epochs: int = 10
    batch_size: int = 32
    img_size: int = 224
    lr: float = 3e-3
    """Peak learning rate of the new head."""
    backbone_lr_scale: float = 0.03
    """The pretrained backbone learns at ``lr * backbone_lr_scale`` once unfrozen."""
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    freeze_epochs: int = 4
    """Epochs at the start that train only the new head (the backbone is frozen)."""
    patience: int = 4
    """Stop after this many epochs without improving the monitored validation metric (0: never)."""
    monitor: Monitor = "accuracy"
    seed: int = 0
    balance: Balance = "auto"
    """Class balancing: on, off, or auto (on when the imbalance ratio is above 3)."""
    balance_method: BalanceMethod = "loss"
    """``loss``: class-weighted cross-entropy; ``sampler``: sample classes equally often."""
    augment: tuple[str, ...] = DEFAULT_AUGMENT
    val_fraction: float = 0.1
    """Share of the training data held out for validation when the data has no val split."""
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "augment", check_names(tuple(self.augment)))
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "img_size": self.img_size, "lr": self.lr}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        for name in ("freeze_epochs", "patience", "weight_decay", "warmup_epochs", "drop_path", "backbone_lr_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name, allowed in (("balance", Balance), ("balance_method", BalanceMethod), ("monitor", Monitor)):
            value = getattr(self, name)
            if value not in allowed.__args__:
                raise ConfigError(f"{name} must be one of {list(allowed.__args__)}, got {value!r}."
                                  f"{suggest(str(value), allowed.__args__)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"] = list(self.augment)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return from_mapping(cls, data, "training config")


DETECT_AUGMENTATIONS = ("hflip", "vflip", "scale", "color")


@dataclass(frozen=True)
class DetectTrainConfig:
    """Training an FCOS detector on an ImageNet-pretrained backbone."""

    model: str = DEFAULT_CLASSIFIER
    """Registry name of the pretrained backbone."""
    epochs: int = 40
    batch_size: int = 8
    img_size: int = 416
    lr: float = 2e-3
    backbone_lr_scale: float = 0.25
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    freeze_epochs: int = 0
    patience: int = 10
    seed: int = 0
    augment: tuple[str, ...] = ("hflip", "scale", "color")
    val_fraction: float = 0.1
    fpn_width: int = 64
    eval_iou: float = 0.6
    """NMS IoU used when measuring validation AP."""
    checkpoint_every: int = 0
    """Also write the resumable ``last`` checkpoint every this many steps within an epoch (0: off)."""
    checkpoint_seconds: float = 120.0
    """Also write it when this many seconds passed since the last one, within an epoch (0: off)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "augment", tuple(self.augment))
        for name in self.augment:
            if name not in DETECT_AUGMENTATIONS:
                raise ConfigError(f"unknown detection augmentation {name!r}.{suggest(name, DETECT_AUGMENTATIONS)}")
        for name in ("epochs", "batch_size", "img_size", "lr", "fpn_width"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.checkpoint_every < 0 or not self.checkpoint_seconds >= 0:
            raise ConfigError(f"checkpoint_every and checkpoint_seconds must be >= 0, got {self.checkpoint_every} "
                              f"and {self.checkpoint_seconds}")
        if self.img_size % 32:
            raise ConfigError(f"img_size must be a multiple of 32, got {self.img_size}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"] = list(self.augment)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectTrainConfig:
        return from_mapping(cls, data, "detection training config")


SEGMENT_AUGMENTATIONS = ("hflip", "vflip", "scale", "color")
SegmentLoss = Literal["ce", "ce+dice"]
ClassWeights = Literal["auto", "none"]


@dataclass(frozen=True)
class SegmentTrainConfig:
    """Training a semantic segmenter (FPN decoder) on an ImageNet-pretrained EfficientNet-Lite encoder."""

    model: str = DEFAULT_CLASSIFIER
    """Registry name of the pretrained encoder."""
    epochs: int = 40
    batch_size: int = 8
    img_size: int = 512
    """Longer side of the model input; the other side follows the training images' median aspect ratio
    (both rounded to a multiple of 32). Images are resized to that input (squashed), as at inference."""
    crop_size: int = 0
    """Longer side of the random training crop taken from the (scaled) input; 0 trains on whole inputs.
    Crops make steps cheaper; validation always runs on whole inputs."""
    lr: float = 3e-3
    """Peak learning rate of the decoder."""
    backbone_lr_scale: float = 0.33
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    freeze_epochs: int = 0
    patience: int = 10
    """Stop after this many epochs without a better validation mIoU (0: never)."""
    seed: int = 0
    augment: tuple[str, ...] = ("hflip", "scale", "color")
    loss: SegmentLoss = "ce"
    """``ce``: cross-entropy (ignore index excluded); ``ce+dice``: plus a soft Dice loss over the classes."""
    class_weights: ClassWeights = "auto"
    """``auto``: cross-entropy weights sqrt(median class frequency / class frequency), clipped to [0.2, 5],
    from the training masks' pixel counts, so rare classes count; ``none``: equal weights."""
    val_fraction: float = 0.1
    decoder_width: int = 96
    checkpoint_every: int = 0
    """Also write the resumable ``last`` checkpoint every this many steps within an epoch (0: off)."""
    checkpoint_seconds: float = 120.0
    """Also write it when this many seconds passed since the last one, within an epoch (0: off)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "augment", tuple(self.augment))
        for name in self.augment:
            if name not in SEGMENT_AUGMENTATIONS:
                raise ConfigError(f"unknown segmentation augmentation {name!r}.{suggest(name, SEGMENT_AUGMENTATIONS)}")
        for name in ("epochs", "batch_size", "img_size", "lr", "decoder_width"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("crop_size", "freeze_epochs", "patience", "weight_decay", "warmup_epochs", "backbone_lr_scale",
                     "checkpoint_every", "checkpoint_seconds"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("img_size", "crop_size"):
            if getattr(self, name) % 32:
                raise ConfigError(f"{name} must be a multiple of 32, got {getattr(self, name)}")
        if self.crop_size > self.img_size:
            raise ConfigError(f"crop_size ({self.crop_size}) cannot be larger than img_size ({self.img_size})")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name, allowed in (("loss", SegmentLoss), ("class_weights", ClassWeights)):
            value = getattr(self, name)
            if value not in allowed.__args__:
                raise ConfigError(f"{name} must be one of {list(allowed.__args__)}, got {value!r}."
                                  f"{suggest(str(value), allowed.__args__)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"] = list(self.augment)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentTrainConfig:
        return from_mapping(cls, data, "segmentation training config")
