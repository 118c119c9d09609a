"""Import a detector exported to ONNX (YOLOv5, YOLOv8 / YOLO11, YOLOX): a model card from the file.

:func:`inspect_onnx` reads the graph's input and output shapes and its metadata;
:func:`card_from_onnx` turns them into a :class:`~visor.models.card.ModelCard`.

How the layout is recognised (pass ``output_format=`` to skip all of it):

1. Ultralytics metadata: ``version`` 8 or later, or a ``task`` key, means ``yolov8``
   (YOLOv8 / YOLO11 heads); ``names`` and ``stride`` without ``version`` means ``yolov5``.
2. Otherwise the output shape ``[B, A, C]``: a first axis shorter than the second is
   ``yolov8`` (``[B, 4+nc, N]``). ``[B, N, 5+nc]`` is ``yolov5`` when N is 3 anchors per cell
   of the stride 8/16/32 (or 8..64) grids of the input, and ``yolox`` when it is one per cell.
   Dimensions the graph leaves symbolic are found by running it once on a blank input.

The input size comes from the graph; symbolic height/width take the metadata ``imgsz``,
else 640. Labels: ``labels=`` if given, else the metadata ``names``, else ``class_0``,
``class_1``... Licence and origin come from the metadata; a model under the AGPL (all
Ultralytics weights) gives a :class:`LicenseWarning` when it is loaded.

Preprocessing defaults follow each family's reference pipeline: Ultralytics letterboxes
to the centre with grey (114) padding and feeds RGB on the 0..1 scale; YOLOX pads
bottom/right with 114 and feeds 0..255 (its official demo also swaps to BGR, which the
card cannot express yet: pass a ``preprocess`` override or check your export).
"""

from __future__ import annotations

import ast
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import from_mapping
from visor.errors import ConfigError, ModelNotFound, WeightsError
from visor.models.card import ModelCard, OutputFormat, Preprocess, WeightsSource
from visor.models.weights import sha256_file

DEFAULT_INPUT_SIZE = 640
DETECTOR_FORMATS: tuple[str, ...] = ("yolov5", "yolov8", "yolox")


class LicenseWarning(UserWarning):
    """A model's licence puts obligations on the programs that use it (e.g. AGPL-3.0)."""


Dim = int | str | None


@dataclass(frozen=True)
class OnnxInfo:
    """What an ONNX file says about itself, without running it."""

    path: Path
    input_name: str
    input_shape: tuple[Dim, ...]
    output_shapes: tuple[tuple[Dim, ...], ...]
    metadata: dict[str, str] = field(default_factory=dict)
    producer: str = ""


def _dims(value_info: Any) -> tuple[Dim, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim)


def inspect_onnx(path: str | os.PathLike) -> OnnxInfo:
    """Read an ONNX file's input/output shapes and metadata (weights are not loaded)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelNotFound(f"no such ONNX file: {path}")
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises protobuf and its own errors
        raise WeightsError(f"cannot read ONNX model {path}: {e}") from None
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs or not model.graph.output:
        raise WeightsError(f"{path}: the ONNX graph needs an input and an output")
    return OnnxInfo(
        path=path,
        input_name=inputs[0].name,
        input_shape=_dims(inputs[0]),
        output_shapes=tuple(_dims(o) for o in model.graph.output),
        metadata={p.key: p.value for p in model.metadata_props},
        producer=" ".join(filter(None, [model.producer_name, model.producer_version])),
    )


# --------------------------------------------------------------------------- metadata


def _literal(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def metadata_names(metadata: Mapping[str, str]) -> tuple[str, ...] | None:
    """Class names from Ultralytics metadata (``"{0: 'person', ...}"`` or a list), if any."""
    names = _literal(metadata.get("names"))
    return labels_tuple(names) if isinstance(names, (dict, list, tuple)) and names else None


def labels_tuple(labels: Sequence[str] | Mapping[int, str]) -> tuple[str, ...]:
    if isinstance(labels, Mapping):
        try:
            ids = sorted(int(k) for k in labels)
        except (TypeError, ValueError):
            raise ConfigError("label mappings need integer class ids as keys") from None
        if ids != list(range(len(ids))):
            raise ConfigError(f"label ids must be 0..{len(ids) - 1} without gaps")
        by_id = {int(k): v for k, v in labels.items()}
        return tuple(str(by_id[i]) for i in ids)
    if isinstance(labels, str):
        raise ConfigError("labels must be a list of names or a {class_id: name} mapping, not a string")
    return tuple(str(v) for v in labels)


def metadata_imgsz(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """``(height, width)`` from the metadata ``imgsz`` (``"[640, 640]"`` or ``"640"``), if any."""
    value = _literal(metadata.get("imgsz"))
    if isinstance(value, int) and value > 0:
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _is_ultralytics(metadata: Mapping[str, str]) -> bool:
    return "ultralytics" in metadata.get("author", "").lower() or "ultralytics" in metadata.get("license", "").lower()


def metadata_format(metadata: Mapping[str, str]) -> OutputFormat | None:
    """The layout the metadata implies: Ultralytics 8+ exports are ``yolov8``; YOLOv5's
    ``export.py`` writes only ``stride`` and ``names``."""
    version = metadata.get("version", "")
    if _is_ultralytics(metadata) or metadata.get("task"):
        major = version.split(".", 1)[0]
        if metadata.get("task") == "detect" or (major.isdigit() and int(major) >= 8):
            return "yolov8"
    if "names" in metadata and "stride" in metadata and not version:
        return "yolov5"
    return None


def metadata_license(metadata: Mapping[str, str]) -> str | None:
    lic = metadata.get("license", "").strip()
    if lic:
        return lic
    if _is_ultralytics(metadata):
        return "AGPL-3.0 (Ultralytics)"
    return None


def is_agpl(license_text: str) -> bool:
    return "agpl" in license_text.lower().replace("-", "").replace(" ", "") or "affero" in license_text.lower()


def warn_if_agpl(card: ModelCard, *, stacklevel: int = 3) -> None:
    """Warn (:class:`LicenseWarning`) when a model is under the AGPL."""
    if is_agpl(card.license):
        warnings.warn(
            f"model {card.name!r} is licensed under {card.license}: the AGPL-3.0 requires that any program "
            "using it, including one that serves it over a network, is released with its source under the "
            "AGPL. Ultralytics sells a commercial licence; otherwise train your own detector "
            "(visor train detect).",
            LicenseWarning,
            stacklevel=stacklevel,
        )


# --------------------------------------------------------------------------- layout


def grid_cells(input_size: tuple[int, int], strides: Sequence[int] = (8, 16, 32)) -> int:
    """Number of grid cells over all levels for an input of ``(height, width)``."""
    h, w = input_size
    return sum(math.ceil(h / s) * math.ceil(w / s) for s in strides)


def _probe_output_shape(info: OnnxInfo, input_size: tuple[int, int]) -> tuple[int, ...]:
    """Run the graph once on a blank image to learn the dimensions it leaves symbolic."""
    from visor.models.runtime import OnnxSession

    session = OnnxSession(info.path, threads=1)
    h, w = input_size
    try:
        out = session.run(np.zeros((1, 3, h, w), np.float32))
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own exception types
        raise WeightsError(f"cannot run {info.path} on a {h}x{w} input: {e}") from None
    return tuple(int(v) for v in out.shape)


def _output_shape(info: OnnxInfo, input_size: tuple[int, int], *, fmt: str | None) -> tuple[Dim, ...]:
    """The first output's ``[B, A, C]`` shape, with symbolic dimensions resolved where the layout
    needs them: a fixed ``A`` beside a symbolic ``C`` is ``[B, 4+nc, N]`` (N depends on the
    input size) and needs no run; anything else symbolic is found by running the graph once."""
    shape = info.output_shapes[0]
    static = [isinstance(d, int) and d > 0 for d in shape]
    if len(shape) == 3 and static[1] and static[2]:
        return shape
    if len(shape) == 3 and static[1] and not static[2] and fmt in (None, "yolov8"):
        return shape
    return _probe_output_shape(info, input_size)


def detect_layout(
    output_shape: Sequence[Dim],
    input_size: tuple[int, int],
    *,
    num_classes: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> OutputFormat:
    """The detector layout of an output of shape ``[B, A, C]`` (see the module docstring)."""
    if len(output_shape) != 3 or not isinstance(output_shape[1], int):
        raise ConfigError(
            f"unrecognised detector output shape {list(output_shape)}: expected [batch, 4+nc, boxes] (yolov8) "
            "or [batch, boxes, 5+nc] (yolov5, yolox); pass output_format= to choose"
        )
    a = int(output_shape[1])
    c = int(output_shape[2]) if isinstance(output_shape[2], int) else a + 1  # symbolic: the box count
    hinted = metadata_format(metadata or {})
    if a < c:  # [B, 4+nc, N]
        if num_classes is not None and a != 4 + num_classes:
            raise ConfigError(f"output {list(output_shape)} has {a - 4} classes but {num_classes} labels")
        return "yolov8"
    if hinted == "yolov8" and num_classes is not None and c == 4 + num_classes:
        return "yolov8"  # a transposed [B, N, 4+nc] export
    if num_classes is not None and c != 5 + num_classes:
        raise ConfigError(
            f"output {list(output_shape)} does not match {num_classes} labels as [B, N, 5+nc] or [B, 4+nc, N]"
        )
    if hinted == "yolov5":
        return "yolov5"
    cells = [grid_cells(input_size), grid_cells(input_size, (8, 16, 32, 64))]
    if a in (3 * n for n in cells):
        return "yolov5"
    if a in cells:
        return "yolox"
    raise ConfigError(
        f"cannot tell the layout of output {list(output_shape)} for a {input_size[0]}x{input_size[1]} input "
        f"(neither 3 anchors nor 1 per grid cell); pass output_format='yolov5' or 'yolox'"
    )


def default_preprocess(output_format: str, input_size: tuple[int, int]) -> Preprocess:
    """Each family's reference preprocessing (see the module docstring)."""
    if output_format == "yolox":
        return Preprocess(input_size=input_size, resize="letterbox", interpolation="bilinear",
                          letterbox_align="top_left", pad_value=114, mean=(0.0, 0.0, 0.0),
                          std=(1 / 255, 1 / 255, 1 / 255))
    return Preprocess(input_size=input_size, resize="letterbox", interpolation="bilinear",
                      letterbox_align="center", pad_value=114, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _input_size(info: OnnxInfo) -> tuple[int, int]:
    shape = info.input_shape
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise ConfigError(f"{info.path}: expected an input [batch, 3, height, width], got {list(shape)}")
    meta = metadata_imgsz(info.metadata) or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)
    h = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else meta[0]
    w = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else meta[1]
    return (int(h), int(w))


def card_from_onnx(
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | Mapping[int, str] | None = None,
    output_format: OutputFormat | None = None,
    input_size: tuple[int, int] | None = None,
    preprocess: Preprocess | Mapping[str, Any] | None = None,
    name: str | None = None,
    license: str | None = None,  # noqa: A002 - the card's field name
    source: str | None = None,
) -> ModelCard:
    """A detection :class:`ModelCard` for an ONNX detector export.

    ``preprocess`` replaces the family's default preprocessing: a :class:`Preprocess`, or a
    mapping of the fields to change (e.g. ``{"letterbox_align": "top_left", "pad_value": 0}``).
    """
    info = inspect_onnx(path)
    path = info.path.resolve()
    meta = info.metadata
    size = tuple(int(v) for v in input_size) if input_size is not None else _input_size(info)
    if len(size) != 2 or min(size) <= 0:
        raise ConfigError(f"input_size must be (height, width) > 0, got {input_size}")
    names = labels_tuple(labels) if labels is not None else metadata_names(meta)
    if names is not None and not names:
        raise ConfigError("labels must not be empty")
    if output_format is not None and output_format not in DETECTOR_FORMATS:
        raise ConfigError(
            f"output_format must be one of {list(DETECTOR_FORMATS)} for a detector, got {output_format!r}"
        )

    shape = _output_shape(info, size, fmt=output_format)
    fmt = output_format or detect_layout(shape, size, num_classes=len(names) if names else None, metadata=meta)
    nc = _num_classes(shape, fmt)
    if names is not None and nc != len(names):
        raise ConfigError(f"{path.name}: the output has {nc} classes but {len(names)} labels were given")
    names = names or tuple(f"class_{i}" for i in range(nc))

    if isinstance(preprocess, Preprocess):
        prep = preprocess
    else:
        base = asdict(default_preprocess(fmt, size))
        prep = from_mapping(Preprocess, {**base, **dict(preprocess or {})}, "preprocess")

    lic = license or metadata_license(meta) or "unknown"
    origin = ", ".join(filter(None, [meta.get("author"), meta.get("version") and f"version {meta['version']}",
                                     meta.get("date", "")[:10]]))
    description = meta.get("description", "") or f"{fmt} detector imported from {path.name}"
    src = source or "; ".join(filter(None, [
        f"ONNX file {path}", origin and f"exported by {origin}", meta.get("docs"),
        info.producer and f"producer {info.producer}",
    ]))
    return ModelCard(
        name=name or path.stem,
        task="detection",
        architecture=f"{fmt}-onnx",
        weights=WeightsSource(kind="path", location=os.fspath(path), sha256=sha256_file(path), format="onnx"),
        labels=names,
        preprocess=prep,
        license=lic,
        description=description,
        source=src,
        output_format=fmt,
    )


def _num_classes(shape: Sequence[Dim], fmt: str) -> int:
    a = int(shape[1])  # type: ignore[arg-type]
    c = int(shape[2]) if isinstance(shape[2], int) else a + 1  # symbolic: the box count
    nc = (a - 4 if a < c else c - 4) if fmt == "yolov8" else c - 5
    if nc < 1:
        raise ConfigError(f"output shape {list(shape)} leaves no class scores for the {fmt} layout")
    return nc
