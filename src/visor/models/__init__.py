"""Model registry, model cards, weights and inference.

>>> import visor
>>> visor.models.list()
['deeplabv3_voc', 'efficientnet_lite0', 'yolox_nano', 'yunet']

:func:`load` reads a card (registry name, folder, card file, weights file or bare ``.onnx``), looks
its task up in the task registry (:mod:`visor.models.tasks`) and builds that task's
:class:`~visor.models.predictor.Predictor`.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visor.config import suggest
from visor.errors import ConfigError, ModelNotFound
from visor.io import DEFAULT_LIMITS, ImageLimits
from visor.models.batching import Outcome
from visor.models.card import CARD_FILENAME, ModelCard, OutputFormat, Preprocess, WeightsSource
from visor.models.classifier import Classifier
from visor.models.detector import DetectionOutcome, Detector
from visor.models.onnx_import import LicenseWarning, card_from_onnx, labels_tuple, warn_if_agpl
from visor.models.predictor import Predictor
from visor.models.registry import (
    DEFAULT_CLASSIFIER,
    DEFAULT_DETECTOR,
    DEFAULT_FACE_DETECTOR,
    DEFAULT_SEGMENTER,
    Registry,
    builtin,
)
from visor.models.tasks import TaskRegistry, TaskSpec, builtin_tasks


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


def predictor_spec(card: ModelCard, tasks: TaskRegistry | None = None) -> TaskSpec:
    """The task registry's entry for ``card``: its task must be known (:class:`ConfigError` naming the tasks
    this visor knows otherwise), have a predictor built from cards, and read the card's output format."""
    table = tasks if tasks is not None else builtin_tasks()
    if card.task not in table:
        raise ConfigError(f"{card.name}: unknown task {card.task!r}.{suggest(card.task, table.names())} "
                          f"Tasks this visor knows: {', '.join(table.names())}")
    spec = table.get(card.task)
    if spec.predictor is None or not hasattr(spec.predictor_class(), "from_card"):
        raise ConfigError(f"{card.name}: the {card.task} task does not run model cards (it has no predictor "
                          "with from_card)")
    spec.check_output_format(card.name, card.output_format)
    return spec


def load(
    name_or_path: str | os.PathLike = DEFAULT_CLASSIFIER,
    *,
    labels: Sequence[str] | Mapping[int, str] | None = None,
    output_format: OutputFormat | None = None,
    cache_dir: str | os.PathLike | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    threads: int | None = None,
    registry: Registry | None = None,
    tasks: TaskRegistry | None = None,
    spin: bool = True,
) -> Any:
    """Load a model by registry name, or from a folder / card file / weights file on disk.

    Weights are verified against the card's sha256; PyTorch weights are exported to
    ONNX once and cached under ``cache_dir`` (default ``$VISOR_CACHE`` or ``~/.cache/visor``).
    The card's task is looked up in the task registry (``tasks``, default
    :func:`~visor.models.tasks.builtin_tasks`), which names the :class:`Predictor` built:
    classification cards give a :class:`Classifier`, detection cards a :class:`Detector`...
    A task the registry does not know, or an ``output_format`` its predictor does not read,
    raises :class:`ConfigError`.

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
    spec = predictor_spec(card, tasks)
    warn_if_agpl(card)  # here, so the warning names the caller's line
    return spec.predictor_class().from_card(card, base_dir=base, cache=cache_dir, limits=limits, threads=threads,
                                            warn_license=False, spin=spin)


__all__ = [
    "CARD_FILENAME",
    "DEFAULT_CLASSIFIER",
    "DEFAULT_DETECTOR",
    "DEFAULT_FACE_DETECTOR",
    "DEFAULT_SEGMENTER",
    "Classifier",
    "DetectionOutcome",
    "Detector",
    "LicenseWarning",
    "ModelCard",
    "Outcome",
    "Predictor",
    "Preprocess",
    "Registry",
    "TaskRegistry",
    "TaskSpec",
    "WeightsSource",
    "builtin",
    "builtin_tasks",
    "card_from_onnx",
    "get_card",
    "list",
    "load",
    "predictor_spec",
]
