"""Architectures, by name: PyTorch models (training, export) and, for some, an ONNX graph builder
that needs no PyTorch (inference in a core install). torch is imported only when a model is built."""

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
    "segfpn_efficientnet_lite0": "visor.models.architectures.seg_fpn",
}


# architecture name -> module that provides build_onnx(name, state, num_classes=..., input_size=...)
# and checkpoint_filter() without importing torch
_ONNX_BUILDERS: dict[str, str] = {
    **{f"efficientnet_lite{i}": "visor.models.architectures.efficientnet_lite_onnx" for i in range(5)},
}
_SPECS: dict[str, str] = {
    **{f"efficientnet_lite{i}": "visor.models.architectures.efficientnet_lite_spec" for i in range(5)},
}

#: What to install for everything that runs PyTorch (training, export checks, the torch benchmark).
TRAIN_EXTRA = "pip install 'visor-vision[train]'"


def require_torch(what: str, *, augment: bool = False):
    """The ``torch`` module, or a :class:`ConfigError` saying that ``what`` needs the ``train`` extra
    (with ``augment``, albumentations too)."""
    try:
        import torch
    except ImportError:
        raise ConfigError(f"{what} needs PyTorch: {TRAIN_EXTRA}") from None
    if augment:
        try:
            import albumentations  # noqa: F401
        except ImportError:
            raise ConfigError(f"{what} needs albumentations: {TRAIN_EXTRA}") from None
    return torch


def names() -> list[str]:
    return sorted(_ARCHITECTURES)


def _module(arch: str):
    if arch not in _ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}.{suggest(arch, _ARCHITECTURES)}")
    return importlib.import_module(_ARCHITECTURES[arch])


def create(arch: str, *, num_classes: int, **kwargs: Any) -> torch.nn.Module:
    """A randomly initialised model."""
    require_torch(f"the PyTorch model {arch}")
    return _module(arch).build(arch, num_classes=num_classes, **kwargs)


def load_state_dict(path: str | Path, fmt: str) -> dict[str, torch.Tensor]:
    """Read weights safely: safetensors, or a torch pickle with ``weights_only=True``."""
    torch = require_torch("loading weights as PyTorch tensors")

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


def has_onnx_builder(arch: str) -> bool:
    """Whether ``arch``'s ONNX graph can be built from its weights without PyTorch."""
    return arch in _ONNX_BUILDERS


def build_onnx(arch: str, weights: str | Path, *, num_classes: int, input_size: tuple[int, int],
               fmt: str = "torch"):
    """The ONNX model (``onnx.ModelProto``) of ``arch`` with ``weights``, built without PyTorch.

    The weights are read by :func:`visor.models.statedict.read_state_dict` (a restricted
    unpickler for torch files). Raises :class:`ConfigError` for an architecture without a builder
    and :class:`WeightsError` for weights that do not fit it.
    """
    from visor.models.statedict import read_state_dict

    if arch not in _ONNX_BUILDERS:
        _module(arch)  # unknown architectures get the "did you mean" message
        raise ConfigError(f"building {arch} needs PyTorch: {TRAIN_EXTRA}")
    state = importlib.import_module(_SPECS[arch]).checkpoint_filter(read_state_dict(weights, fmt))
    try:
        return importlib.import_module(_ONNX_BUILDERS[arch]).build_onnx(
            arch, state, num_classes=num_classes, input_size=input_size)
    except WeightsError as e:
        raise WeightsError(f"weights {weights} do not fit {arch} with {num_classes} classes: {e}") from None


def load(
    arch: str, weights: str | Path, *, num_classes: int, fmt: str = "torch", **build_kwargs: Any
) -> torch.nn.Module:
    """Build ``arch`` (with ``build_kwargs``) and load ``weights`` into it (strict), in eval mode."""
    require_torch(f"the PyTorch model {arch}")
    module = _module(arch)
    model = module.build(arch, num_classes=num_classes, **build_kwargs)
    state = module.checkpoint_filter(load_state_dict(weights, fmt))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"weights {weights} do not fit {arch} with {num_classes} classes: {e}") from None
    return model.eval()
