"""Content moderation results: a SafeSearch-like verdict for one image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from visor.types.base import Field, Record
from visor.types.detections import Detections

#: Cloud Vision's likelihood names, least likely first ("UNKNOWN" where a signal was not measured).
LIKELIHOODS: tuple[str, ...] = ("VERY_UNLIKELY", "UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY")
LIKELIHOOD_NAMES: tuple[str, ...] = ("UNKNOWN", *LIKELIHOODS)


@dataclass(frozen=True)
class Moderation(Record):
    """``adult`` and ``racy`` likelihoods (:data:`LIKELIHOOD_NAMES`), the ``scores`` behind them (name -> 0..1)
    and, from a part detector, the ``detections`` (None when the model detects nothing: JSON leaves them out)."""

    TYPE: ClassVar[str] = "moderation"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("adult", str, choices=LIKELIHOOD_NAMES), Field("racy", str, choices=LIKELIHOOD_NAMES),
        Field("scores", float, decimals=6, mapping=True), Field("detections", Detections, optional=True))

    adult: str
    racy: str
    scores: dict[str, float]
    detections: Detections | None = None
    model: str = field(default="", kw_only=True)
