"""Pieces every visor training loop shares: schedule, sampling order, atomic JSON."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def epoch_order(n: int, epoch: int, seed: int, sample_weights: np.ndarray | None = None) -> np.ndarray:
    """Sample indices for one epoch: a seeded permutation, or a seeded weighted draw."""
    rng = np.random.default_rng([seed, epoch])
    if sample_weights is None:
        return rng.permutation(n)
    p = sample_weights / sample_weights.sum()
    return rng.choice(n, size=n, replace=True, p=p)


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to 1% of the base learning rate."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then os.replace)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
