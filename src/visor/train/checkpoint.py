"""Training checkpoints: one safetensors file holding tensors plus JSON state.

A checkpoint is written to a temporary file in the same folder, flushed to disk, and
renamed over the old one with ``os.replace`` (:func:`visor.io.files.atomic_path`), which is
atomic: killing the process at any moment leaves either the previous checkpoint or the new
one, never a torn file. Its mode is ``0o644`` less the umask, like the exported model folders.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visor.errors import WeightsError
from visor.io.files import PUBLIC, atomic_path
from visor.models.architectures import require_torch

if TYPE_CHECKING:
    import torch

FORMAT = 1
_META_KEY = "visor"


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]
    state: dict[str, Any]
    """JSON-able training state (epoch, config, history, scheduler, optimizer scalars...)."""
    optimizer: dict[str, Any] | None = None
    """``optimizer.state_dict()``, tensors included."""
    rng: torch.Tensor | None = None
    """``torch.get_rng_state()`` at the moment of saving."""


def _flatten(ckpt: Checkpoint) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    torch = require_torch("saving a training checkpoint")
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in ckpt.model.items()}
    state = dict(ckpt.state)
    if ckpt.optimizer is not None:
        scalars: dict[str, dict[str, Any]] = {}
        for pid, entries in ckpt.optimizer["state"].items():
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{pid}.{key}"] = value.detach().contiguous().clone()
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        state["_optimizer"] = {"param_groups": ckpt.optimizer["param_groups"], "scalars": scalars}
    if ckpt.rng is not None:
        tensors["rng.torch"] = ckpt.rng.clone()
    state["_format"] = FORMAT
    return tensors, state


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` atomically to ``path`` (a ``.safetensors`` file)."""
    require_torch("saving a training checkpoint")
    from safetensors.torch import save_file

    path = Path(path)
    tensors, state = _flatten(ckpt)
    # PUBLIC (0o644 less the umask), like the model folders training exports: a checkpoint holds
    # weights and training state, not the training images; a umask of 077 keeps it private
    with atomic_path(path, permissions=PUBLIC, fsync=True) as tmp:
        save_file(tensors, tmp, metadata={_META_KEY: json.dumps(state)})
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (as PyTorch tensors: needs the ``train`` extra)."""
    require_torch("reading a training checkpoint")
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
        state = json.loads(meta[_META_KEY])
    except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
        raise WeightsError(f"cannot read checkpoint {path}: {e}") from None
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer = None
    opt_state = state.pop("_optimizer", None)
    if opt_state is not None:
        per_param: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                per_param.setdefault(int(pid), {})[name] = value
        for pid, entries in opt_state["scalars"].items():
            per_param.setdefault(int(pid), {}).update(entries)
        # JSON turned tuples (such as Adam's betas) into lists; "params" is the one real list.
        groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
                  for g in opt_state["param_groups"]]
        optimizer = {"state": per_param, "param_groups": groups}
    state.pop("_format", None)
    return Checkpoint(model=model, state=state, optimizer=optimizer, rng=tensors.get("rng.torch"))


def clean_stale_temp_files(folder: str | os.PathLike) -> None:
    """Remove temporary files left by a process killed while saving."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
