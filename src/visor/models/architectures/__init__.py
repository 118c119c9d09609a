"""PyTorch architectures, by name. torch is imported only when one is built."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visor.config import suggest
from visor.errors import ConfigError, WeightsError

if TYPE_CHECKING:
    import torch

# architecture name -> module that provides build(name, num_classes=...) and checkpoint_filter()
_ARCHITECTURES: dict[str, str] = {
    **{f"efficientnet_lite{i}": "visor.models.architectures.efficientnet_lite" for i in range(5)},
    "fcos_efficientnet_lite0": "visor.models.architectures.fcos",
}


def names() -> list[str]:
    return sorted(_ARCHITECTURES)


def _module(arch: str):
    if arch not in _ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}.{suggest(arch, _ARCHITECTURES)}")
    return importlib.import_module(_ARCHITECTURES[arch])


def create(arch: str, *, num_classes: int, **kwargs: Any) -> torch.nn.Module:
    """A randomly initialised model."""
    return _module(arch).build(arch, num_classes=num_classes, **kwargs)


def load_state_dict(path: str | Path, fmt: str) -> dict[str, torch.Tensor]:
    """Read weights safely: safetensors, or a torch pickle with ``weights_only=True``."""
    import torch

    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means unusable weights
        raise WeightsError(f"cannot read weights {path}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return state


def load(
    arch: str, weights: str | Path, *, num_classes: int, fmt: str = "torch", **build_kwargs: Any
) -> torch.nn.Module:
    """Build ``arch`` (with ``build_kwargs``) and load ``weights`` into it (strict), in eval mode."""
    module = _module(arch)
    model = module.build(arch, num_classes=num_classes, **build_kwargs)
    state = module.checkpoint_filter(load_state_dict(weights, fmt))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"weights {weights} do not fit {arch} with {num_classes} classes: {e}") from None
    return model.eval()
