"""Pieces every visor training loop shares: schedule, sampling order, atomic JSON."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.train.checkpoint import Checkpoint, save_checkpoint


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


LAST, BEST = "last.safetensors", "best.safetensors"


@dataclass
class LoopState:
    """Epoch bookkeeping shared by the training loops: history, best epoch, patience counter."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "value": None})
    bad_epochs: int = 0
    epoch: int = 0
    """Epochs completed."""

    @classmethod
    def restore(cls, ckpt: Checkpoint, model, optimizer, scheduler) -> LoopState:
        """Put model, optimizer, scheduler and the torch RNG back as they were when ``ckpt`` was saved."""
        import torch

        model.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.optimizer)
        scheduler.load_state_dict(ckpt.state["scheduler"])
        torch.set_rng_state(ckpt.rng)
        s = ckpt.state
        return cls(s["history"], s["best"], s["bad_epochs"], s["epoch"])

    def should_stop(self, patience: int) -> bool:
        return bool(patience) and self.bad_epochs >= patience

    def end_epoch(self, run_dir: Path, row: dict[str, float], value: float, model, optimizer, scheduler,
                  state: dict[str, Any]) -> bool:
        """Record an epoch: save ``best`` when ``value`` improved, then the full ``last`` checkpoint.

        Both are written atomically; the torch RNG state is captured here, after validation.
        Returns whether the epoch was the best so far.
        """
        import torch

        self.history.append(row)
        self.epoch = int(row["epoch"])
        improved = self.best["value"] is None or value > self.best["value"]
        if improved:
            self.best = {"epoch": self.epoch, "value": value}
            self.bad_epochs = 0
            save_checkpoint(Checkpoint(model=model.state_dict(), state={**state, "epoch": self.epoch}),
                            run_dir / BEST)
        else:
            self.bad_epochs += 1
        save_checkpoint(
            Checkpoint(
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                rng=torch.get_rng_state(),
                state={**state, "epoch": self.epoch, "scheduler": scheduler.state_dict(), "history": self.history,
                       "best": self.best, "bad_epochs": self.bad_epochs},
            ),
            run_dir / LAST,
        )
        return improved


def open_run(out, config, config_cls, data, resume: bool):
    """Prepare a run folder: ``(run_dir, checkpoint or None, config, data)``.

    Resuming reads the last checkpoint and takes its saved configuration (and data, when
    ``data`` is None); a new run refuses a folder that already holds one. Temporary files
    left by a process killed while saving are removed.
    """
    from visor.errors import ConfigError
    from visor.train.checkpoint import clean_stale_temp_files, load_checkpoint

    run_dir = Path(out)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(run_dir / LAST)
        config = config_cls.from_dict(ckpt.state["config"])
        data = data if data is not None else ckpt.state["data"]
    else:
        config = config or config_cls()
        if (run_dir / LAST).exists():
            raise ConfigError(f"{run_dir} already holds a training run; resume it or choose another folder")
    if data is None:
        raise ConfigError("no training data given")
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(run_dir)
    return run_dir, ckpt, config, data


def optimizer_and_schedule(model, backbone_params: list, config, num_samples: int):
    """AdamW with the backbone at ``lr * backbone_lr_scale`` and everything else at ``lr``, and a
    per-step warm-up + cosine schedule. Returns ``(optimizer, scheduler, steps_per_epoch)``."""
    import torch

    steps_per_epoch = math.ceil(num_samples / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = round(config.warmup_epochs * steps_per_epoch)
    ids = {id(p) for p in backbone_params}
    others = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.AdamW([{"params": backbone_params, "lr": config.lr * config.backbone_lr_scale},
                                   {"params": others, "lr": config.lr}], weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup))
    return optimizer, scheduler, steps_per_epoch
