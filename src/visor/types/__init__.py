"""Result types, one per task, each with the same JSON form everywhere (see :mod:`visor.types.base`)."""

from types import MappingProxyType
from typing import Any

from visor.types.base import Columns, Field, Record, Result
from visor.types.classifications import Classifications
from visor.types.detections import Detections
from visor.types.faces import Faces
from visor.types.moderation import LIKELIHOODS, Moderation
from visor.types.properties import CropHints, DominantColor, Exposure, ImageProperties
from visor.types.segmentation import SegmentationMask
from visor.types.text import TextLines

#: Every result type (a ``type`` tag and a ``model``), by its ``type`` tag.
RESULT_TYPES: MappingProxyType[str, type[Result]] = MappingProxyType({t.TYPE: t for t in (
    Classifications, Detections, Faces, TextLines, Moderation, ImageProperties, CropHints, SegmentationMask)})


def result_from_dict(d: Any) -> Result:
    """The result a ``to_dict()`` document describes, by its ``type`` tag."""
    from visor.errors import InvalidInput

    kind = d.get("type") if isinstance(d, dict) else None
    if kind not in RESULT_TYPES:
        raise InvalidInput(f"unknown result type {kind!r}; known: {', '.join(RESULT_TYPES)}")
    return RESULT_TYPES[kind].from_dict(d)  # type: ignore[attr-defined]

__all__ = [
    "LIKELIHOODS", "RESULT_TYPES", "Classifications", "Columns", "CropHints", "Detections", "DominantColor",
    "Exposure", "Faces", "Field", "ImageProperties", "Moderation", "Record", "Result", "SegmentationMask", "TextLines",
    "result_from_dict",
]
