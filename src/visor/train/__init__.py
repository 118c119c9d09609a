"""Training: fine-tune classifiers with exact resume and atomic checkpoints."""

from visor.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from visor.train.classifier import EpochEnd, TrainResult, train_classifier
from visor.train.config import TrainConfig

__all__ = ["Checkpoint", "EpochEnd", "TrainConfig", "TrainResult", "load_checkpoint", "save_checkpoint",
           "train_classifier"]
