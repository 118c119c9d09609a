"""Training: fine-tune classifiers and train detectors, with exact resume and atomic checkpoints.

The names below load on first use, so that importing :mod:`visor.train.config` (the CLI
does, to build its ``--help``) does not import PyTorch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Checkpoint": "visor.train.checkpoint",
    "load_checkpoint": "visor.train.checkpoint",
    "save_checkpoint": "visor.train.checkpoint",
    "EpochEnd": "visor.train.common",
    "TrainResult": "visor.train.classifier",
    "train_classifier": "visor.train.classifier",
    "TrainConfig": "visor.train.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'visor.train' has no attribute {name!r}")
