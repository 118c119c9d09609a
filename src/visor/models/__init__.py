"""Model registry, model cards, weights and inference.

>>> import visor
>>> visor.models.list()
['efficientnet_lite0']
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path

from visor.errors import ConfigError, ModelNotFound
from visor.io import DEFAULT_LIMITS, ImageLimits
from visor.models.card import CARD_FILENAME, ModelCard, Preprocess, WeightsSource
from visor.models.classifier import Classifier, Outcome
from visor.models.registry import DEFAULT_CLASSIFIER, Registry, builtin


def list() -> builtins.list[str]:  # noqa: A001 - the documented name is visor.models.list()
    """Names of the built-in models."""
    return builtin().names()


def get_card(name: str) -> ModelCard:
    """The model card of a built-in model."""
    return builtin().get(name)


def _card_from_path(path: Path) -> tuple[ModelCard, Path]:
    """A card from a folder (its card.json), a card file, or a weights file with card.json beside it."""
    if path.is_dir():
        card_path = path / CARD_FILENAME
    elif path.suffix == ".json":
        card_path = path
    else:
        card_path = path.with_name(CARD_FILENAME)
    if not card_path.is_file():
        raise ModelNotFound(f"no model card at {card_path} (a model folder needs {CARD_FILENAME})")
    return ModelCard.load(card_path), card_path.parent


def load(
    name_or_path: str | os.PathLike = DEFAULT_CLASSIFIER,
    *,
    cache_dir: str | os.PathLike | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    threads: int | None = None,
    registry: Registry | None = None,
) -> Classifier:
    """Load a model by registry name, or from a folder / card file / weights file on disk.

    Weights are verified against the card's sha256; PyTorch weights are exported to
    ONNX once and cached under ``cache_dir`` (default ``$VISOR_CACHE`` or ``~/.cache/visor``).
    """
    reg = registry or builtin()
    text = os.fspath(name_or_path)
    if text in reg:
        card, base = reg.get(text), None
    elif os.path.exists(text) or os.sep in text or text.endswith(".json"):
        card, base = _card_from_path(Path(text))
    else:
        card, base = reg.get(text), None  # raises ModelNotFound with a suggestion
    if card.task != "classification":
        raise ConfigError(f"{card.name}: {card.task} models are not supported by this version of visor")
    return Classifier.from_card(card, base_dir=base, cache=cache_dir, limits=limits, threads=threads)


__all__ = [
    "CARD_FILENAME",
    "DEFAULT_CLASSIFIER",
    "Classifier",
    "ModelCard",
    "Outcome",
    "Preprocess",
    "Registry",
    "WeightsSource",
    "builtin",
    "get_card",
    "list",
    "load",
]
