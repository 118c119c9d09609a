"""COCO JSON: ``images``, ``annotations`` (boxes, polygons, RLE, ``iscrowd``) and ``categories``.

Reading (:func:`from_coco`):

* ``categories`` sorted by id give :attr:`DetectionDataset.classes`; the ids are kept in
  :attr:`DetectionDataset.category_ids`;
* ``bbox`` ``[x, y, w, h]`` becomes ``xyxy = (x, y, x + w, y + h)``;
* ``segmentation`` is a list of polygons or an RLE mask (``{"size", "counts"}``, compressed or
  not), kept verbatim in :attr:`BoxAnnotation.rle`; ``area`` is kept as given;
* an annotation's ``attributes`` object (as CVAT writes it) becomes string attributes (JSON
  text for non-strings); other extra keys (``keypoints``...) are ignored;
* image sizes come from the JSON; ``file_name`` is relative to the images folder: by default
  ``images/`` beside the JSON (or beside its ``annotations/`` folder) if there is one, else the
  JSON's own folder. A missing image file is reported and the image kept.

Writing (:func:`to_coco`) keeps every image, annotation and category id; items without one get
fresh ids above the largest in use.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from visor.data.dataset import SPLIT_NAMES, _atomic_write_text, check_split_name
from visor.data.detection import (
    RLE,
    BoxAnnotation,
    DetectionDataset,
    DetectionImage,
    Problem,
    box_check,
    check_image_mode,
    place_image,
    polygon_area,
)
from visor.errors import InvalidInput

#: The annotation file :func:`to_coco` writes for images without a split; ``instances_<split>.json`` for the others.
COCO_FILE = "instances.json"


def _int(value: Any) -> int | None:
    """An integer (an integral float too), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def default_images_dir(json_path: Path) -> Path:
    """``images/`` beside the JSON, or beside its ``annotations/`` folder, else the JSON's folder."""
    folder = Path(os.path.abspath(json_path)).parent
    if (folder / "images").is_dir():
        return folder / "images"
    if folder.name == "annotations" and (folder.parent / "images").is_dir():
        return folder.parent / "images"
    return folder


def _split_from_name(json_path: Path) -> str | None:
    stem = json_path.stem
    for name in SPLIT_NAMES:
        if stem == name or stem.endswith(f"_{name}"):
            return name
    return None


def coco_files(folder: Path) -> list[Path]:
    """The COCO JSON files of a folder: ``instances*.json`` there or in ``annotations/``, else its only JSON."""
    found = sorted(folder.glob("instances*.json")) or sorted(folder.glob("annotations/instances*.json"))
    if found:
        return found
    jsons = sorted(folder.glob("*.json"))
    if len(jsons) == 1:
        return jsons
    if not jsons:
        raise InvalidInput(f"no COCO annotation file (instances*.json or another .json) in {folder}")
    raise InvalidInput(
        f"{folder} holds several JSON files ({', '.join(p.name for p in jsons)}); name the COCO file to read"
    )


def from_coco(
    json_path: str | os.PathLike, images_dir: str | os.PathLike | None = None, *, split: str | None = None
) -> DetectionDataset:
    """Read a COCO JSON file, or a folder of them (``instances.json``, ``instances_<split>.json``).

    ``images_dir`` is the folder ``file_name`` is relative to (default: see
    :func:`default_images_dir`). ``split``: for one file, the split of its images (default
    from a name ending in ``_train`` / ``_val`` / ``_test``); for a folder, the split to keep.

    Raises InvalidInput if the file is missing, is not JSON, or lacks ``images`` / ``categories``;
    every bad entry inside is reported in ``problems`` and left out.
    """
    json_path = Path(json_path)
    if json_path.is_dir():
        parts = [_read_coco(p, images_dir, None) for p in coco_files(json_path)]
        ds = parts[0] if len(parts) == 1 else _merge(parts)
        if split is not None:
            ds = ds.subset(split)
        return DetectionDataset(ds.images, ds.classes, ds.category_ids, Path(os.path.abspath(json_path)), ds.problems)
    return _read_coco(json_path, images_dir, split)


def _read_coco(json_path: Path, images_dir: str | os.PathLike | None, split: str | None) -> DetectionDataset:
    if not json_path.is_file():
        raise InvalidInput(f"no such COCO annotation file: {json_path}")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{json_path} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{json_path} is not UTF-8 text: {e.reason}") from None
    except RecursionError:
        raise InvalidInput(f"{json_path} nests arrays or objects too deeply to be a COCO file") from None
    except OSError as e:
        raise InvalidInput(f"cannot read {json_path}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{json_path}: a COCO file is a JSON object, got {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise InvalidInput(f"{json_path}: a COCO file needs an {key!r} list")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise InvalidInput(f"{json_path}: 'annotations' must be a list")
    split = split if split is not None else _split_from_name(json_path)
    if split is not None:
        check_split_name(split)
    base = Path(os.path.abspath(images_dir)) if images_dir is not None else default_images_dir(json_path)
    problems: list[Problem] = []

    # categories -> classes, in id order
    names: dict[int, str] = {}
    for i, c in enumerate(data["categories"]):
        where = f"{json_path} categories[{i}]"
        cid = _int(c.get("id")) if isinstance(c, dict) else None
        name = c.get("name") if isinstance(c, dict) else None
        if cid is None or not isinstance(name, str) or not name:
            problems.append(Problem(where, "a category needs an integer 'id' and a non-empty 'name'; left out"))
        elif cid in names:
            problems.append(Problem(where, f"category id {cid} is used twice; this one ({name!r}) left out"))
        elif name in names.values():
            problems.append(Problem(where, f"category name {name!r} is used twice; id {cid} left out"))
        else:
            names[cid] = name
    category_ids = tuple(sorted(names))
    class_of = {cid: k for k, cid in enumerate(category_ids)}

    # images
    images: dict[int, dict[str, Any]] = {}
    for i, im in enumerate(data["images"]):
        where = f"{json_path} images[{i}]"
        if not isinstance(im, dict):
            problems.append(Problem(where, "an image entry must be an object; left out"))
            continue
        iid, file_name = _int(im.get("id")), im.get("file_name")
        width, height = _int(im.get("width")), _int(im.get("height"))
        if iid is None:
            problems.append(Problem(where, "image has no integer 'id'; left out"))
        elif iid in images:
            problems.append(Problem(where, f"image id {iid} is used twice; this one left out"))
        elif not isinstance(file_name, str) or not file_name:
            problems.append(Problem(f"{json_path} image id {iid}", "image has no 'file_name'; left out"))
        elif width is None or height is None or width <= 0 or height <= 0:
            problems.append(Problem(
                f"{json_path} image id {iid}",
                f"image needs positive integer 'width' and 'height', got {im.get('width')!r} x {im.get('height')!r};"
                " left out",
            ))
        else:
            path = Path(os.path.normpath(base / file_name))
            if not path.is_file():
                problems.append(Problem(str(path), f"image file not found (image id {iid}); its annotations are kept"))
            images[iid] = {"path": path, "width": width, "height": height, "file_name": file_name, "anns": []}

    # annotations
    seen: set[int] = set()
    for i, a in enumerate(annotations):
        aid = _int(a.get("id")) if isinstance(a, dict) else None
        where = f"{json_path} annotation id {aid}" if aid is not None else f"{json_path} annotations[{i}]"
        if not isinstance(a, dict):
            problems.append(Problem(where, "an annotation must be an object; left out"))
            continue
        if aid is None:
            problems.append(Problem(where, "annotation has no integer 'id'; left out"))
            continue
        if aid in seen:
            problems.append(Problem(where, "annotation id is used twice; this one left out"))
            continue
        seen.add(aid)
        ann, reasons = _annotation(a, aid, images, class_of)
        problems.extend(Problem(where, r) for r in reasons)
        if ann is not None:
            images[_int(a["image_id"])]["anns"].append(ann)

    ds_images = tuple(
        DetectionImage(v["path"], v["width"], v["height"], tuple(v["anns"]), iid, split, v["file_name"])
        for iid, v in images.items()
    )
    folder = Path(os.path.abspath(json_path)).parent
    return DetectionDataset(ds_images, tuple(names[c] for c in category_ids), category_ids, folder, tuple(problems))


def _annotation(
    a: dict[str, Any], aid: int, images: dict[int, dict[str, Any]], class_of: dict[int, int]
) -> tuple[BoxAnnotation | None, list[str]]:
    """The annotation, or None, and the reasons to report."""
    iid, cid = _int(a.get("image_id")), _int(a.get("category_id"))
    if iid is None or iid not in images:
        return None, [f"annotation refers to image id {a.get('image_id')!r}, which is not among the images; left out"]
    if cid is None or cid not in class_of:
        known = ", ".join(map(str, sorted(class_of)[:10])) + (" ..." if len(class_of) > 10 else "")
        return None, [f"unknown category id {a.get('category_id')!r} (known: {known}); left out"]
    bbox = a.get("bbox")
    values = [_number(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else None
    if values is None or any(v is None for v in values):
        return None, [f"'bbox' must be 4 finite numbers [x, y, width, height], got {bbox!r}; left out"]
    x, y, w, h = values
    if not w > 0 or not h > 0:
        return None, [f"box [x, y, w, h] = {bbox} has non-positive size; left out"]
    iscrowd = a.get("iscrowd", 0)
    if iscrowd not in (0, 1):
        return None, [f"'iscrowd' must be 0 or 1, got {iscrowd!r}; left out"]
    im = images[iid]
    xyxy = (x, y, x + w, y + h)
    keep, reason = box_check(xyxy, im["width"], im["height"])
    reasons = [reason] if reason else []
    polygons, rle = _segmentation(a.get("segmentation"), reasons)
    area = a.get("area")
    if area is not None and (_number(area) is None or area < 0):
        reasons.append(f"'area' must be a non-negative number, got {area!r}; ignored")
        area = None
    attributes = a.get("attributes") or {}
    if not isinstance(attributes, dict):
        reasons.append(f"'attributes' must be an object, got {attributes!r}; ignored")
        attributes = {}
    attributes = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in attributes.items()}
    ann = BoxAnnotation(xyxy, class_of[cid], aid, bool(iscrowd), polygons, area, attributes, rle)
    return ann if keep else None, reasons


def _segmentation(seg: Any, reasons: list[str]) -> tuple[tuple[tuple[float, ...], ...], RLE | None]:
    if seg is None or seg == []:
        return (), None
    if isinstance(seg, dict):
        try:
            return (), RLE.from_dict(seg)
        except InvalidInput as e:
            reasons.append(f"bad RLE segmentation ({e}); mask left out, box kept")
            return (), None
    if not isinstance(seg, list):
        reasons.append("'segmentation' must be a list of polygons or an RLE object; left out, box kept")
        return (), None
    polygons = []
    for k, poly in enumerate(seg):
        values = [_number(v) for v in poly] if isinstance(poly, list) else None
        if values is None or any(v is None for v in values) or len(values) < 6 or len(values) % 2:
            size = len(poly) if isinstance(poly, list) else type(poly).__name__
            reasons.append(
                f"segmentation polygon {k} must be an even number (at least 6) of finite numbers, got {size}; "
                "polygon left out, box kept"
            )
            continue
        polygons.append(tuple(values))
    return tuple(polygons), None


def _merge(parts: list[DetectionDataset]) -> DetectionDataset:
    """One dataset from several COCO files with the same categories; repeated ids are reported and skipped."""
    first = parts[0]
    for p in parts[1:]:
        if p.classes != first.classes or p.category_ids != first.category_ids:
            raise InvalidInput(f"the COCO files in {first.root} have different categories; read them one by one")
    problems = [pr for p in parts for pr in p.problems]
    images, image_ids, ann_ids, paths = [], set(), set(), set()
    for im in (im for p in parts for im in p.images):
        if im.id in image_ids or im.path in paths:
            problems.append(Problem(str(im.path), f"image (id {im.id}) appears in more than one COCO file; "
                                                  "kept once, from the first"))
            continue
        kept = []
        for a in im.annotations:
            if a.id in ann_ids:
                problems.append(Problem(f"annotation id {a.id}", "annotation id appears in more than one COCO file; "
                                                                  "the later one left out"))
                continue
            ann_ids.add(a.id)
            kept.append(a)
        image_ids.add(im.id)
        paths.add(im.path)
        images.append(DetectionImage(im.path, im.width, im.height, tuple(kept), im.id, im.split, im.file_name))
    return DetectionDataset(tuple(images), first.classes, first.category_ids, first.root, tuple(problems))


# --------------------------------------------------------------------------- writing


def _fresh_ids(existing: list[int | None]) -> list[int]:
    """``existing`` with every None replaced by a new id above the largest in use (from 1)."""
    nxt = max((i for i in existing if i is not None), default=0) + 1
    out = []
    for i in existing:
        if i is None:
            out.append(nxt)
            nxt += 1
        else:
            out.append(i)
    return out


def with_ids(ds: DetectionDataset) -> DetectionDataset:
    """``ds`` with an id for every image, annotation and category: kept where present, else new ones."""
    category_ids = ds.category_ids if ds.category_ids is not None else tuple(range(1, len(ds.classes) + 1))
    image_ids = _fresh_ids([im.id for im in ds.images])
    ann_ids = iter(_fresh_ids([a.id for im in ds.images for a in im.annotations]))
    images = tuple(
        replace(im, id=iid, annotations=tuple(replace(a, id=next(ann_ids)) for a in im.annotations))
        for iid, im in zip(image_ids, ds.images, strict=True)
    )
    return DetectionDataset(images, ds.classes, category_ids, ds.root, ds.problems)


def coco_dict(ds: DetectionDataset) -> dict[str, Any]:
    """The COCO JSON object for ``ds`` (every id kept; missing ones filled in by :func:`with_ids`).

    ``area`` is the annotation's own area, else its polygons' area, else its box area;
    ``attributes`` is written only when an annotation has some.
    """
    ds = with_ids(ds)
    category_ids = ds.category_ids or ()
    images, annotations = [], []
    for im in ds.images:
        iid = im.id
        images.append({"id": iid, "file_name": im.name, "width": im.width, "height": im.height})
        for a in im.annotations:
            x1, y1, x2, y2 = a.xyxy
            if a.area is not None:
                area = a.area
            elif a.segmentation:
                area = sum(polygon_area(p) for p in a.segmentation)
            else:
                area = a.box_area
            seg: Any = a.rle.to_dict() if a.rle is not None else [list(p) for p in a.segmentation]
            entry = {
                "id": a.id, "image_id": iid, "category_id": category_ids[a.class_id],
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area, "iscrowd": int(a.iscrowd), "segmentation": seg,
            }
            if a.attributes:
                entry["attributes"] = dict(a.attributes)
            annotations.append(entry)
    categories = [{"id": cid, "name": name, "supercategory": ""} for cid, name in zip(category_ids, ds.classes,
                                                                                        strict=True)]
    return {
        "info": {"description": "written by visor"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def to_coco(ds: DetectionDataset, out: str | os.PathLike, *, images: str = "copy") -> Path:
    """Write ``ds`` as COCO; returns the path :func:`from_coco` reads back.

    ``out`` ending in ``.json``: one file for every image, images placed in ``images/`` beside it.
    Otherwise ``out`` is a folder: ``instances.json`` for images without a split and
    ``instances_<split>.json`` per split, images in ``out/images/<file_name>`` (one folder for
    all splits, so ``file_name`` is unchanged). ``images``: see :data:`IMAGE_MODES`.
    """
    check_image_mode(images)
    seen: dict[str, Path] = {}
    for im in ds.images:
        if im.name in seen:
            raise InvalidInput(f"cannot write COCO: images {seen[im.name]} and {im.path} share the name {im.name!r}")
        seen[im.name] = im.path
    ds = with_ids(ds)
    out = Path(out)
    if out.suffix.lower() == ".json":
        groups = {out: ds}
        image_dir, result = out.parent / "images", out
    else:
        groups = {}
        if any(im.split is None for im in ds.images) or not ds.images:
            groups[out / COCO_FILE] = _only(ds, None)
        for split in ds.splits:
            groups[out / f"instances_{split}.json"] = ds.subset(split)
        image_dir, result = out / "images", (next(iter(groups)) if len(groups) == 1 else out)
    for path, part in groups.items():
        _atomic_write_text(path, json.dumps(coco_dict(part), ensure_ascii=False) + "\n")
    for im in ds.images:
        place_image(im.path, image_dir / im.name, images)
    return result


def _only(ds: DetectionDataset, split: str | None) -> DetectionDataset:
    return DetectionDataset(tuple(im for im in ds.images if im.split == split), ds.classes, ds.category_ids, ds.root)
