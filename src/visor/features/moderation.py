"""Content moderation: a SafeSearch-like verdict from nudenet's body-part detector.

nudenet is an optional dependency (``pip install 'visor-vision[moderation]'``). Only its bundled
``320n.onnx`` is used, and nudenet itself is never imported: the file goes through visor's
generic importer (:func:`visor.models.onnx_import.card_from_onnx`) with nudenet's own
preprocessing (top-left letterbox, zero padding, BGR, 0..1) and is decoded as YOLOv8 with
conf 0.25, IoU 0.45 and class-agnostic NMS, exactly as nudenet does.

Licence note: the 320n weights are an Ultralytics YOLOv8 export under the AGPL-3.0. Whoever
installs the ``moderation`` extra opts into that (see pyproject.toml), so :class:`Moderator`
does not raise visor's generic :class:`~visor.models.onnx_import.LicenseWarning` on every
load; the licence is recorded in :data:`MODEL_LICENSE` and on ``Moderator.card.license``.

Mapping detections to likelihoods (:func:`likelihoods`, a pure function of the best score per class):

* ``adult`` = the highest score among :data:`ADULT_CLASSES` (exposed genitalia, female
  breasts, anus, buttocks);
* ``racy`` = the highest score among :data:`RACY_CLASSES` (covered genitalia, breasts,
  buttocks and anus; exposed belly, armpits and male breast). Covered belly, armpits and
  feet, exposed feet and faces are ordinary clothed-person parts and count for neither;
* a score becomes a level by :func:`likelihood_from_score`: < 0.2 VERY_UNLIKELY,
  < 0.4 UNLIKELY, < 0.6 POSSIBLE, < 0.8 LIKELY, else VERY_LIKELY;
* adult at LIKELY or above lifts racy to at least LIKELY.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visor.errors import ConfigError
from visor.io import ImageLimits, ImageSource
from visor.io.image import DEFAULT_LIMITS
from visor.types.detections import Detections

LIKELIHOODS: tuple[str, ...] = ("VERY_UNLIKELY", "UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY")
#: Upper bounds (exclusive) of the first four levels.
THRESHOLDS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)

ADULT_CLASSES: frozenset[str] = frozenset({
    "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "ANUS_EXPOSED",
    "BUTTOCKS_EXPOSED",
})
RACY_CLASSES: frozenset[str] = frozenset({
    "FEMALE_GENITALIA_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED", "ANUS_COVERED",
    "BELLY_EXPOSED", "ARMPITS_EXPOSED", "MALE_BREAST_EXPOSED",
})
MODEL_FILE = "320n.onnx"
MODEL_LICENSE = "AGPL-3.0 (Ultralytics YOLOv8 export shipped by nudenet)"
#: nudenet's own preprocessing and decoding.
PREPROCESS: dict[str, Any] = {"letterbox_align": "top_left", "pad_value": 0, "channel_order": "bgr"}
CONF, IOU = 0.25, 0.45

_INSTALL_HINT = "content moderation needs the optional nudenet package: pip install 'visor-vision[moderation]'"


def likelihood_from_score(score: float) -> str:
    """The 5-level likelihood of a score in 0..1 (see :data:`THRESHOLDS`)."""
    for level, bound in zip(LIKELIHOODS, THRESHOLDS, strict=False):
        if score < bound:
            return level
    return LIKELIHOODS[-1]


def likelihoods(class_scores: Mapping[str, float]) -> dict[str, str]:
    """``{"adult": level, "racy": level}`` from the best detection score per class name."""
    adult = max((float(s) for c, s in class_scores.items() if c in ADULT_CLASSES), default=0.0)
    racy = max((float(s) for c, s in class_scores.items() if c in RACY_CLASSES), default=0.0)
    adult_level, racy_level = likelihood_from_score(adult), likelihood_from_score(racy)
    likely = LIKELIHOODS.index("LIKELY")
    if LIKELIHOODS.index(adult_level) >= likely and LIKELIHOODS.index(racy_level) < likely:
        racy_level = "LIKELY"
    return {"adult": adult_level, "racy": racy_level}


def class_scores(detections: Detections, labels: tuple[str, ...]) -> dict[str, float]:
    """The best score per class name among ``detections``."""
    out: dict[str, float] = {}
    for cid, score in zip(detections.class_id.tolist(), detections.confidence.tolist(), strict=True):
        name = labels[cid] if 0 <= cid < len(labels) else f"class_{cid}"
        out[name] = max(out.get(name, 0.0), float(score))
    return out


@dataclass(frozen=True)
class Moderation:
    """A SafeSearch-like verdict for one image, with the body-part detections behind it."""

    adult: str
    racy: str
    scores: dict[str, float]
    detections: Detections

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "moderation",
            "adult": self.adult,
            "racy": self.racy,
            "scores": {k: round(v, 6) for k, v in sorted(self.scores.items())},
            "detections": self.detections.to_dict()["detections"],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def nudenet_model_path() -> Path:
    """Where nudenet's bundled ``320n.onnx`` is (nudenet is located, not imported)."""
    try:
        spec = importlib.util.find_spec("nudenet")
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    if not folders:
        raise ConfigError(_INSTALL_HINT)
    raise ConfigError(
        f"nudenet is installed but has no {MODEL_FILE}; reinstall it: pip install 'visor-vision[moderation]'"
    )


class Moderator:
    """nudenet's detector behind visor's :class:`~visor.models.detector.Detector`; reuse it for many images."""

    def __init__(self, *, limits: ImageLimits = DEFAULT_LIMITS, threads: int | None = None) -> None:
        from visor.models.detector import Detector
        from visor.models.onnx_import import card_from_onnx

        card = card_from_onnx(nudenet_model_path(), preprocess=PREPROCESS, name="nudenet-320n")
        # The AGPL is accepted by installing the opt-in extra (module docstring): no warning per load.
        self.detector = Detector.from_card(card, limits=limits, threads=threads, warn_license=False)
        self.card = card

    def moderate(self, image: ImageSource) -> Moderation:
        detections = self.detector.detect(image, conf=CONF, iou=IOU, agnostic=True)
        labels = self.card.labels
        scores = class_scores(detections, labels)
        verdict = likelihoods(scores)
        return Moderation(verdict["adult"], verdict["racy"], scores, detections)

    def __call__(self, image: ImageSource) -> Moderation:
        return self.moderate(image)


def moderate(image: ImageSource, *, moderator: Moderator | None = None,
             limits: ImageLimits = DEFAULT_LIMITS) -> Moderation:
    """Adult/racy likelihoods for one image. Pass a :class:`Moderator` to reuse its model across calls."""
    return (moderator or Moderator(limits=limits)).moderate(image)
