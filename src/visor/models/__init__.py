"""Model registry, model cards, weights and inference.

>>> import visor
>>> visor.models.list()
['efficientnet_lite0']
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from visor.errors import ConfigError, ModelNotFound
from visor.io import DEFAULT_LIMITS, ImageLimits
from visor.models.batching import Outcome
from visor.models.card import CARD_FILENAME, ModelCard, OutputFormat, Preprocess, WeightsSource
from visor.models.classifier import Classifier
from visor.models.detector import DetectionOutcome, Detector
from visor.models.onnx_import import LicenseWarning, card_from_onnx, labels_tuple, warn_if_agpl
from visor.models.registry import DEFAULT_CLASSIFIER, Registry, builtin


def list() -> builtins.list[str]:  # noqa: A001 - the documented name is visor.models.list()
    """Names of the built-in models."""
    return builtin().names()


def get_card(name: str) -> ModelCard:
    """The model card of a built-in model."""
    return builtin().get(name)


def _close_matches(path: Path, registry: Registry) -> str:
    """' Did you mean ...?' naming registry models and sibling folders close to ``path``'s name, or ''."""
    import difflib

    name = path.name
    try:
        siblings = sorted(p.name for p in (path.parent if path.parent != Path("") else Path(".")).iterdir()
                          if p.is_dir())
    except OSError:
        siblings = []
    found = [repr(str(path.parent / m)) for m in difflib.get_close_matches(name, siblings, n=3, cutoff=0.6)]
    found += [repr(m) for m in difflib.get_close_matches(name, registry.names(), n=3, cutoff=0.6)]
    if not found:
        return ""
    return f" Did you mean {' or '.join(found) if len(found) < 3 else ', '.join(found[:-1]) + ' or ' + found[-1]}?"


def _card_from_path(path: Path, registry: Registry | None = None) -> tuple[ModelCard, Path]:
    """A card from a folder (its card.json), a card file, or a weights file with card.json beside it."""
    if not os.path.lexists(path):
        raise ModelNotFound(f"model folder {os.fspath(path)!r} does not exist (nor a model file of that name, "
                            f"and it is not a registry model).{_close_matches(path, registry or builtin())}")
    if path.is_dir():
        card_path = path / CARD_FILENAME
    elif path.suffix == ".json":
        card_path = path
    else:
        card_path = path.with_name(CARD_FILENAME)
    if not card_path.is_file():
        raise ModelNotFound(f"no model card at {card_path} (a model folder needs {CARD_FILENAME})")
    return ModelCard.load(card_path), card_path.parent


def _card_beside_onnx(path: Path) -> tuple[ModelCard, Path] | None:
    """The card.json beside an ONNX file, when its weights are that file (a visor model folder)."""
    card_path = path.with_name(CARD_FILENAME)
    if not card_path.is_file():
        return None
    card = ModelCard.load(card_path)
    if card.weights.kind != "path" or card.weights.format != "onnx":
        return None
    location = Path(card.weights.location)
    if not location.is_absolute():
        location = card_path.parent / location
    return (card, card_path.parent) if location.resolve() == path.resolve() else None


def _with_overrides(
    card: ModelCard, labels: Sequence[str] | Mapping[int, str] | None, output_format: OutputFormat | None
) -> ModelCard:
    changes: dict = {}
    if labels is not None:
        names = labels_tuple(labels)
        if len(names) != card.num_classes:
            raise ConfigError(f"{card.name} has {card.num_classes} classes but {len(names)} labels were given")
        changes["labels"] = names
    if output_format is not None:
        changes["output_format"] = output_format
    return card.replace(**changes) if changes else card


def load(
    name_or_path: str | os.PathLike = DEFAULT_CLASSIFIER,
    *,
    labels: Sequence[str] | Mapping[int, str] | None = None,
    output_format: OutputFormat | None = None,
    cache_dir: str | os.PathLike | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    threads: int | None = None,
    registry: Registry | None = None,
    spin: bool = True,
) -> Classifier | Detector:
    """Load a model by registry name, or from a folder / card file / weights file on disk.

    Weights are verified against the card's sha256; PyTorch weights are exported to
    ONNX once and cached under ``cache_dir`` (default ``$VISOR_CACHE`` or ``~/.cache/visor``).
    Classification cards give a :class:`Classifier`, detection cards a :class:`Detector`.

    An ``.onnx`` file without a ``card.json`` for it beside it is imported as a detector
    (YOLOv5, YOLOv8/YOLO11 or YOLOX layout; see :mod:`visor.models.onnx_import`).
    ``labels`` replaces the card's labels (or the ONNX metadata names); ``output_format``
    forces the output layout. Models under the AGPL warn with a :class:`LicenseWarning`.
    ``spin=False`` keeps ONNX Runtime's idle threads from busy-waiting (see :class:`OnnxSession`).
    """
    reg = registry or builtin()
    text = os.fspath(name_or_path)
    path = Path(text)
    if text in reg:
        card, base = reg.get(text), None
    elif path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise ModelNotFound(f"no such model file: {path}")
        beside = None if (labels is not None or output_format is not None) else _card_beside_onnx(path)
        if beside is None:
            card, base = card_from_onnx(path, labels=labels, output_format=output_format), None
            labels = output_format = None
        else:
            card, base = beside
    elif os.path.exists(text) or os.sep in text or text.endswith(".json"):
        card, base = _card_from_path(path, reg)
    else:
        card, base = reg.get(text), None  # raises ModelNotFound with a suggestion
    card = _with_overrides(card, labels, output_format)
    if card.task == "detection":
        warn_if_agpl(card)  # here, so the warning names the caller's line
        return Detector.from_card(card, base_dir=base, cache=cache_dir, limits=limits, threads=threads,
                                  warn_license=False, spin=spin)
    if card.task != "classification":
        raise ConfigError(f"{card.name}: {card.task} models are not supported by this version of visor")
    return Classifier.from_card(card, base_dir=base, cache=cache_dir, limits=limits, threads=threads, spin=spin)


__all__ = [
    "CARD_FILENAME",
    "DEFAULT_CLASSIFIER",
    "Classifier",
    "DetectionOutcome",
    "Detector",
    "LicenseWarning",
    "ModelCard",
    "Outcome",
    "Preprocess",
    "Registry",
    "WeightsSource",
    "builtin",
    "card_from_onnx",
    "get_card",
    "list",
    "load",
]
