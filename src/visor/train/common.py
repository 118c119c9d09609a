"""Pieces every visor training loop shares: schedule, sampling order, atomic JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.io.files import atomic_write
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
    atomic_write(path, json.dumps(data, indent=2) + "\n")


LAST, BEST = "last.safetensors", "best.safetensors"


@dataclass(frozen=True)
class EpochEnd:
    """What callbacks receive after each epoch's checkpoint is safely on disk."""

    epoch: int
    """1-based number of the epoch just finished."""
    metrics: dict[str, float]
    run_dir: Path


@dataclass
class LoopState:
    """Epoch bookkeeping shared by the training loops: history, best epoch, patience counter."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "value": None})
    bad_epochs: int = 0
    epoch: int = 0
    """Epochs completed."""
    step: int = 0
    """Steps of the next epoch already taken (a checkpoint saved within an epoch)."""
    losses: list[float] = field(default_factory=list)
    """Training losses of those steps."""
    saved_at: float = field(default_factory=time.monotonic)
    """When the last checkpoint was written (``time.monotonic``)."""

    @classmethod
    def restore(cls, ckpt: Checkpoint, model, optimizer, scheduler) -> LoopState:
        """Put model, optimizer, scheduler and the torch RNG back as they were when ``ckpt`` was saved."""
        import torch

        model.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.optimizer)
        scheduler.load_state_dict(ckpt.state["scheduler"])
        torch.set_rng_state(ckpt.rng)
        s = ckpt.state
        return cls(s["history"], s["best"], s["bad_epochs"], s["epoch"], int(s.get("step_in_epoch", 0)),
                   [float(v) for v in s.get("epoch_losses", [])])

    def checkpoint_due(self, steps_done: int, every: int, seconds: float) -> bool:
        """Whether a within-epoch checkpoint is due after ``steps_done`` steps of the epoch: every
        ``every`` steps, or ``seconds`` after the last checkpoint (0 turns either off)."""
        return bool((every and steps_done % every == 0)
                    or (seconds and time.monotonic() - self.saved_at >= seconds))

    def save_within_epoch(self, run_dir: Path, steps_done: int, losses: list[float], model, optimizer, scheduler,
                          state: dict[str, Any]) -> None:
        """Write ``last`` atomically after ``steps_done`` steps of the epoch after ``self.epoch``, with
        the losses so far and the torch RNG, so a resumed run takes the next step exactly as this one would."""
        import torch

        save_checkpoint(
            Checkpoint(
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                rng=torch.get_rng_state(),
                state={**state, "epoch": self.epoch, "step_in_epoch": steps_done, "epoch_losses": list(losses),
                       "scheduler": scheduler.state_dict(), "history": self.history, "best": self.best,
                       "bad_epochs": self.bad_epochs},
            ),
            run_dir / LAST,
        )
        self.saved_at = time.monotonic()

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
        self.step, self.losses, self.saved_at = 0, [], time.monotonic()
        return improved


#: Set by ``visor train`` before the process's first PyTorch matrix product: Intel MKL's strict conditional
#: numerical reproducibility, so its matrix products give the same bits whatever the memory alignment and thread
#: count, and a run resumed in a new process continues bit-identically (without it, a CI machine once resumed a
#: batch-norm bias one rounding step off). MKL reads it once, at its first call; a library caller who has already
#: run PyTorch in the process sets it in the environment before starting Python.
REPRODUCIBLE_MATH_ENV = {"MKL_CBWR": "AUTO,STRICT"}


def open_run(out, config, config_cls, data, resume: bool):
    """Prepare a run folder: ``(run_dir, checkpoint or None, config, data)``.

    Resuming reads the last checkpoint and takes its saved configuration (and data, when
    ``data`` is None); ``config`` (a config, or a mapping of some of its fields) may be given
    but must agree with it, see :func:`resume_conflicts`. A new run refuses a folder that
    already holds one. Temporary files left by a process killed while saving are removed.
    """
    from visor.errors import ConfigError
    from visor.train.checkpoint import clean_stale_temp_files, load_checkpoint

    run_dir = Path(out)
    ckpt = None
    if resume:
        if not (run_dir / LAST).is_file():
            raise ConfigError(f"nothing to resume in {run_dir}: it holds no checkpoint (last.safetensors) yet; "
                              "start the run again instead")
        ckpt = load_checkpoint(run_dir / LAST)
        saved = config_cls.from_dict(ckpt.state["config"])
        if config is not None:
            changed = resume_conflicts(saved, config)
            if changed:
                raise ConfigError(
                    f"cannot change {', '.join(changed)} when resuming {run_dir}: a resumed run continues exactly "
                    "with its saved settings (only threads and progress can change); to train with other "
                    "settings, e.g. more epochs, start a new run in another folder")
        config = saved
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


def resume_conflicts(saved, wanted) -> list[str]:
    """The settings in ``wanted`` (a config or a mapping of some fields) that differ from ``saved``,
    as ``"name (saved -> wanted)"``.

    Nothing may change on resume: the learning-rate schedule is planned for the run's total
    steps (more epochs would change the rate of the steps already taken, so the result would
    match no straight run), and the data order, augmentation and model follow from the rest.
    """
    values = dataclasses.asdict(wanted) if dataclasses.is_dataclass(wanted) else dict(wanted)
    merged = type(saved).from_dict({**saved.to_dict(), **values})  # validated and normalised like the saved one
    def show(value: Any) -> Any:
        return ",".join(value) if isinstance(value, tuple) else value

    return [f"{f.name} ({show(getattr(saved, f.name))} -> {show(getattr(merged, f.name))})"
            for f in dataclasses.fields(saved) if getattr(saved, f.name) != getattr(merged, f.name)]


def train_val_split(ds, items: str, seed: int, val_fraction: float):
    """``(train, val)`` subsets of a dataset with ``splits``, ``subset`` and a tuple of split-tagged items named
    ``items`` (``"images"`` for boxes, ``"samples"`` for masks): its own train and val splits when it has both, else
    a seeded ``val_fraction`` of its train items (or all of them) held out as val."""
    splits = set(ds.splits)
    if "train" in splits and "val" in splits:
        return ds.subset("train"), ds.subset("val")
    base = ds.subset("train") if "train" in splits else ds
    entries = getattr(base, items)
    order = np.random.default_rng(seed).permutation(len(entries))
    val_idx = set(order[: max(1, round(len(order) * val_fraction))].tolist())
    tagged = tuple(dataclasses.replace(e, split="val" if i in val_idx else "train") for i, e in enumerate(entries))
    carved = dataclasses.replace(base, **{items: tagged})
    return carved.subset("train"), carved.subset("val")


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


@dataclass(frozen=True)
class Validation:
    """What one epoch's validation gives :func:`run_epochs`: the monitored value (higher is better), the
    metrics for the history row, and the words for the epoch's line (``"val AP50 0.5123, AP 0.3012"``)."""

    value: float
    metrics: dict[str, float]
    summary: str


def run_epochs(*, model, optimizer, scheduler, loop: LoopState, config, run_dir: Path, num_samples: int,
               steps_per_epoch: int, backbone_params: list, backbone, train_step, validate, common: dict[str, Any],
               callbacks=(), progress: bool = True, metric: str = "val") -> bool:
    """The epoch loop the box and mask trainers share; returns whether it stopped early.

    Per epoch: the backbone frozen for ``config.freeze_epochs``, the seeded sample order, ``train_step(indices,
    epoch) -> loss`` per batch (forward, backward, optimizer and scheduler steps), a step checkpoint when one is due
    (``config.checkpoint_every`` / ``checkpoint_seconds``), then ``validate() -> Validation``, the best/last
    checkpoints and the callbacks (``EpochEnd``). A run resumed within an epoch skips the steps already taken.
    """
    from tqdm import tqdm

    history, start_epoch = loop.history, loop.epoch
    bar = tqdm(total=steps_per_epoch * config.epochs, initial=start_epoch * steps_per_epoch + loop.step,
               unit="step", disable=not progress, desc="training")
    stopped_early = False
    try:
        for epoch in range(start_epoch, config.epochs):
            if loop.should_stop(config.patience):
                stopped_early = True
                break
            t0 = time.perf_counter()
            model.train()
            frozen = epoch < config.freeze_epochs
            for p in backbone_params:
                p.requires_grad_(not frozen)
            if frozen:
                backbone.eval()
            order = epoch_order(num_samples, epoch, config.seed)
            done, losses = (loop.step, list(loop.losses)) if epoch == start_epoch else (0, [])
            for start in range(done * config.batch_size, len(order), config.batch_size):
                losses.append(float(train_step(order[start : start + config.batch_size], epoch)))
                bar.update(1)
                bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{losses[-1]:.3f}",
                                **{metric: f"{history[-1][metric]:.3f}" if history else "-"})
                done += 1
                if done < steps_per_epoch and loop.checkpoint_due(done, config.checkpoint_every,
                                                                  config.checkpoint_seconds):
                    loop.save_within_epoch(run_dir, done, losses, model, optimizer, scheduler, common)
            result = validate()
            row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), **result.metrics,
                   "lr": optimizer.param_groups[-1]["lr"], "seconds": time.perf_counter() - t0}
            improved = loop.end_epoch(run_dir, row, result.value, model, optimizer, scheduler, common)
            bar.write(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, {result.summary}"
                      f"{' (best)' if improved else ''}")
            for callback in callbacks:
                callback(EpochEnd(epoch + 1, row, run_dir))
    finally:
        bar.close()
    return stopped_early
