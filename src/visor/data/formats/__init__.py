"""Detection dataset formats, each read into and written from :class:`~visor.data.detection.DetectionDataset`.

* :mod:`~visor.data.formats.coco`: COCO JSON (boxes, polygons, RLE, ``iscrowd``);
* :mod:`~visor.data.formats.yolo`: YOLO ``data.yaml`` and label files (boxes or polygons), with a
  ``visor_ids.json`` sidecar keeping ids and what YOLO cannot hold;
* :mod:`~visor.data.formats.voc`: Pascal VOC XML (1-based inclusive pixel boxes).

:func:`load` and :func:`save` choose the format: ``ds = formats.load("coco128/instances.json")``,
``formats.save(ds, "out/yolo", "yolo")``. The formats build on :mod:`visor.data.detection`, which
knows none of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from visor.data.dataset import check_split_name
from visor.data.detection import DetectionDataset, check_format, detect_format
from visor.data.formats.coco import coco_dict, from_coco, to_coco
from visor.data.formats.voc import from_voc, to_voc
from visor.data.formats.yolo import SIDECAR, from_yolo, to_yolo
from visor.errors import InvalidInput

_READERS = {"coco": from_coco, "yolo": from_yolo, "voc": from_voc}
_WRITERS = {"coco": to_coco, "yolo": to_yolo, "voc": to_voc}


def load(
    path: str | os.PathLike,
    format: str | None = None,  # noqa: A002 - the public name of the argument
    *,
    split: str | None = None,
) -> DetectionDataset:
    """Read a COCO JSON (or a folder of them), a YOLO data.yaml (or its folder), or a VOC folder.

    ``format`` (``"coco"``, ``"yolo"``, ``"voc"``) is detected from ``path`` when omitted
    (see :func:`~visor.data.detection.detect_format`). ``split``: for a single COCO JSON file, the
    split its images belong to (default: ``train`` / ``val`` / ``test`` when the file name ends in
    ``_train`` etc.); for sources that list their own splits, keep only that split.
    """
    path = Path(path)
    fmt = check_format(format) if format is not None else detect_format(path)
    if fmt is None:
        if not path.exists():
            raise InvalidInput(f"no such file or folder: {path}")
        raise InvalidInput(
            f"cannot tell the detection format of {path}: expected a COCO .json file (or a folder with "
            "instances*.json), a YOLO data.yaml (or a folder with one), or a VOC folder with Annotations/; "
            "name the format to read it anyway"
        )
    if split is not None:
        check_split_name(split)
    return _READERS[fmt](path, split=split)


def save(ds: DetectionDataset, out: str | os.PathLike, format: str, *, images: str = "copy") -> Path:  # noqa: A002
    """Write ``ds`` to ``out`` (a folder) in ``format``; returns the path :func:`load` reads back.

    ``images`` (one of :data:`~visor.data.detection.IMAGE_MODES`) says how image files get into the
    output. What each format cannot hold is listed by :func:`~visor.data.detection.conversion_losses`.
    """
    return _WRITERS[check_format(format)](ds, out, images=images)


__all__ = [
    "SIDECAR", "coco_dict", "from_coco", "from_voc", "from_yolo", "load", "save", "to_coco", "to_voc", "to_yolo",
]
