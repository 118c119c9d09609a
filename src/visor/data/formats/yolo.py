"""YOLO (Ultralytics) detection and segmentation labels: a ``data.yaml`` and one ``.txt`` per image.

``data.yaml`` holds ``names`` (a list, or a dict ``{0: name, ...}``) and ``train`` / ``val`` /
``test``, each an image folder, a ``.txt`` list of image paths, or a list of those. They are
relative to ``path`` when given, which is itself relative to the data.yaml's folder (Ultralytics
resolves a relative ``path`` against its own datasets folder instead; visor writes no ``path``,
which both read as "the data.yaml's folder"). In a ``.txt`` list, lines starting ``./`` are
relative to the list's folder, other relative lines to the dataset root.

The label file of ``.../images/<rest>.jpg`` is ``.../labels/<rest>.txt`` (next to the image when
its path has no ``images`` folder); an image without one has no boxes. Each line is
``class cx cy w h`` (a box) or ``class x1 y1 x2 y2 ...`` (a polygon, at least 3 points; its box
is the polygon's extent), every value normalised by the image size, which comes from the image
header. When two splits list exactly the same images (Ultralytics' coco128 uses the same folder
for train and val), the images have no split.

YOLO has no ids, crowd regions, RLE masks, areas, attributes or multi-part polygons. To convert
without loss, :func:`to_yolo` writes them into :data:`SIDECAR` beside data.yaml, and
:func:`from_yolo` reads them back when the label files still match it:

* ``category_ids``: the COCO category id of each class;
* ``images``: for each image (by its path relative to the data.yaml folder, ``/``-separated), its
  ``id`` and an ``annotations`` list in the original order. An entry with ``"line": n`` (1-based)
  adds to label line n: ``id``, ``area``, ``attributes``, ``rle``, ``xyxy`` (the exact box of a
  polygon line), ``parts`` (how many coordinates each polygon has, when a multi-part
  segmentation was written as one concatenated polygon line) and ``box_only`` (a box written
  as a 4-corner polygon because the dataset also has polygons and YOLO-seg files cannot mix
  the two). An entry without ``line`` is a crowd annotation in full (``xyxy``, ``class_id``,
  ``rle``...): crowd regions are kept out of the label files, as Ultralytics' COCO converter
  does, so trainers do not learn them as objects.

Label files edited after writing no longer match their sidecar entry (line count or classes);
that is reported and the entry ignored. Numbers are written with ``repr`` (shortest exact
text), so coordinates survive to within float rounding; pixel coordinates read back are rounded
to :data:`~visor.data.detection.COORD_DECIMALS` decimals.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from visor.data.dataset import SPLIT_NAMES, _atomic_write_text
from visor.data.detection import (
    COORD_DECIMALS,
    RLE,
    BoxAnnotation,
    DetectionDataset,
    DetectionImage,
    Problem,
    box_check,
    check_image_mode,
    image_size,
    place_image,
    relative_name,
    unique_names,
)
from visor.errors import ConfigError, InvalidInput, VisorError
from visor.io import IMAGE_EXTENSIONS

#: The file beside data.yaml holding what YOLO labels cannot (ids, crowd regions, ...).
SIDECAR = "visor_ids.json"
_SIDECAR_KIND = "visor-yolo-sidecar"


def find_data_yaml(path: Path) -> Path:
    """``path`` if it is a file, else its ``data.yaml`` / ``data.yml`` or its only ``.yaml``."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise InvalidInput(f"no such YOLO data.yaml or folder: {path}")
    for name in ("data.yaml", "data.yml"):
        if (path / name).is_file():
            return path / name
    found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    if len(found) == 1:
        return found[0]
    if not found:
        raise InvalidInput(f"no data.yaml in {path}")
    raise InvalidInput(f"several .yaml files in {path}; name the one to read")


def _names(cfg: Mapping[str, Any], where: Path) -> tuple[str, ...]:
    names = cfg.get("names")
    if isinstance(names, Mapping):
        keys = sorted(names, key=lambda k: (not isinstance(k, int), k if isinstance(k, int) else 0))
        if [k for k in keys if isinstance(k, int) and not isinstance(k, bool)] != list(range(len(names))):
            raise ConfigError(f"{where}: 'names' keys must be the class ids 0..{len(names) - 1}, got {list(names)}")
        names = [names[k] for k in range(len(names))]
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{where}: 'names' must be a non-empty list or a dict {{0: name, ...}} of class names")
    out = []
    for n in names:
        if isinstance(n, (int, float)) and not isinstance(n, bool):
            n = str(n)
        if not isinstance(n, str) or not n:
            raise ConfigError(f"{where}: class names must be non-empty strings, got {n!r}")
        out.append(n)
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: class names repeat: {out}")
    nc = cfg.get("nc")
    if nc is not None and nc != len(out):
        raise ConfigError(f"{where}: 'nc' is {nc!r} but 'names' lists {len(out)} classes")
    return tuple(out)


def label_path(image: Path) -> Path:
    """``.../images/<rest>.jpg`` -> ``.../labels/<rest>.txt`` (the last ``images`` folder); beside it otherwise."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _split_images(
    root: Path, split: str, entry: Any, where: Path, problems: list[Problem]
) -> list[tuple[Path, str, Path | None]]:
    """``(image path, file name, image folder or None)`` for one split entry of data.yaml."""
    sources = entry if isinstance(entry, list) else [entry]
    out: list[tuple[Path, str, Path | None]] = []
    for src in sources:
        if not isinstance(src, str) or not src:
            raise ConfigError(f"{where}: {split!r} must be a path or a list of paths, got {entry!r}")
        p = Path(os.path.normpath(root / src))
        if p.is_dir():
            out += [(img, relative_name(img, p) or img.name, p) for img in _images_in(p)]
        elif p.is_file() and p.suffix.lower() == ".txt":
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                problems.append(Problem(str(p), f"cannot read the image list: {e}; nothing read from it"))
                continue
            for line_no, line in enumerate(text.splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                img = Path(os.path.normpath((p.parent / line[2:]) if line.startswith("./") else root / line))
                if not img.is_file():
                    problems.append(Problem(f"{p}:{line_no}", f"image file not found: {img}; left out"))
                    continue
                out.append((img, relative_name(img, root / "images") or img.name, None))
        else:
            problems.append(Problem(str(where), f"{split!r} source {p} is neither an image folder nor a .txt list; "
                                                "nothing read from it"))
    return out


def from_yolo(path: str | os.PathLike, *, split: str | None = None) -> DetectionDataset:
    """Read a YOLO dataset from its data.yaml (or the folder holding it); ``split`` keeps one split only.

    Raises InvalidInput / ConfigError when data.yaml is missing, does not parse or lacks
    ``names`` or every split; bad label lines, label files without images, unreadable images
    and boxes with bad coordinates are reported in ``problems``.
    """
    yaml_path = find_data_yaml(Path(path))
    folder = Path(os.path.abspath(yaml_path)).parent
    try:
        cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{yaml_path} is not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"cannot read {yaml_path}: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{yaml_path}: expected a mapping with 'names' and 'train' / 'val' / 'test'")
    classes = _names(cfg, yaml_path)
    root_value = cfg.get("path")
    root = Path(os.path.normpath(folder / root_value)) if isinstance(root_value, str) and root_value else folder
    if not any(cfg.get(s) for s in SPLIT_NAMES):
        raise ConfigError(f"{yaml_path}: no 'train', 'val' or 'test' entry saying where the images are")
    problems: list[Problem] = []

    listed: dict[str, list[tuple[Path, str, Path | None]]] = {
        s: _split_images(root, s, cfg[s], yaml_path, problems) for s in SPLIT_NAMES if cfg.get(s)
    }
    entries = _assign_splits(listed, problems)
    if split is not None:
        entries = {p: v for p, v in entries.items() if v[1] == split}
    sidecar, category_ids = _read_sidecar(folder / SIDECAR, classes, problems)

    images: list[DetectionImage] = []
    used_labels: set[Path] = set()
    for img, (file_name, img_split) in entries.items():
        lbl = label_path(img)
        used_labels.add(lbl)
        try:
            width, height = image_size(img)
        except VisorError as e:
            problems.append(Problem(str(img), f"{e}; image and labels left out"))
            continue
        lines = _read_labels(lbl, classes, width, height, problems)
        key = relative_name(img, folder) or str(img)
        anns, image_id = _apply_sidecar(sidecar.get(key), lines, classes, str(img), problems)
        images.append(DetectionImage(img, width, height, tuple(anns), image_id, img_split, file_name))
    _orphan_labels(listed, used_labels, split, problems)
    return DetectionDataset(tuple(images), classes, category_ids, root, tuple(problems))


def _assign_splits(
    listed: dict[str, list[tuple[Path, str, Path | None]]], problems: list[Problem]
) -> dict[Path, tuple[str, str | None]]:
    """image -> (file name, split); identical split lists mean "no split"; other repeats are reported."""
    sets = [frozenset(p for p, _, _ in items) for items in listed.values()]
    unsplit = len(sets) > 1 and all(s == sets[0] for s in sets)
    out: dict[Path, tuple[str, str | None]] = {}
    for split, items in listed.items():
        for img, file_name, _ in items:
            if img in out:
                if not unsplit and out[img][1] != split:
                    problems.append(Problem(str(img), f"listed in both {out[img][1]!r} and {split!r}; "
                                                      f"kept in {out[img][1]!r}"))
                continue
            out[img] = (file_name, None if unsplit else split)
    return out


def _orphan_labels(
    listed: dict[str, list[tuple[Path, str, Path | None]]], used: set[Path], split: str | None, problems: list[Problem]
) -> None:
    folders = {f for s, items in listed.items() if split in (None, s) for _, _, f in items if f is not None}
    for folder in sorted(folders):
        labels = label_path(folder / "x.jpg").parent
        if labels == folder or not labels.is_dir():
            continue
        for txt in sorted(labels.rglob("*.txt")):
            if txt not in used and not any(p.startswith(".") for p in txt.relative_to(labels).parts):
                problems.append(Problem(str(txt), "label file has no image beside it in images/; its labels are "
                                                  "not loaded"))


def _number_tokens(tokens: list[str]) -> list[float] | None:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return values if all(v == v and abs(v) != float("inf") for v in values) else None


def _read_labels(
    lbl: Path, classes: tuple[str, ...], width: int, height: int, problems: list[Problem]
) -> dict[int, BoxAnnotation | None]:
    """line number -> annotation (None for a line reported and left out)."""
    if not lbl.is_file():
        return {}
    try:
        text = lbl.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem(str(lbl), f"cannot read label file: {e}; the image is kept without boxes"))
        return {}
    out: dict[int, BoxAnnotation | None] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        out[line_no] = None
        where = f"{lbl}:{line_no}"
        n = len(tokens)
        if n != 5 and (n < 7 or n % 2 == 0):
            problems.append(Problem(where, f"expected 5 values (class cx cy w h) or a class and at least 3 x y "
                                           f"pairs, got {n} value(s); line left out"))
            continue
        values = _number_tokens(tokens)
        if values is None:
            problems.append(Problem(where, f"not all values are finite numbers: {line.strip()!r}; line left out"))
            continue
        cls = values[0]
        if not cls.is_integer() or not 0 <= cls < len(classes):
            problems.append(Problem(where, f"unknown class id {tokens[0]} (data.yaml names {len(classes)} classes, "
                                           f"ids 0-{len(classes) - 1}); line left out"))
            continue
        coords = values[1:]
        polygon: tuple[float, ...] = ()
        if n == 5:
            cx, cy, w, h = coords
            if not w > 0 or not h > 0:
                problems.append(Problem(where, f"box has non-positive size (w={tokens[3]}, h={tokens[4]}); "
                                               "line left out"))
                continue
            xyxy = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        else:
            polygon = tuple(round(v * (width if k % 2 == 0 else height), COORD_DECIMALS) for k, v in enumerate(coords))
            xs, ys = polygon[0::2], polygon[1::2]
            xyxy = (min(xs), min(ys), max(xs), max(ys))
        xyxy = tuple(round(v, COORD_DECIMALS) for v in xyxy)
        keep, reason = box_check(xyxy, width, height)
        if reason:
            problems.append(Problem(where, reason))
        if keep:
            out[line_no] = BoxAnnotation(xyxy, int(cls), segmentation=(polygon,) if polygon else ())
    return out


# --------------------------------------------------------------------------- sidecar


def _read_sidecar(
    path: Path, classes: tuple[str, ...], problems: list[Problem]
) -> tuple[dict[str, Any], tuple[int, ...] | None]:
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        problems.append(Problem(str(path), f"cannot read the visor sidecar ({e}); ids and extras not restored"))
        return {}, None
    if not isinstance(data, dict) or data.get("kind") != _SIDECAR_KIND or not isinstance(data.get("images"), dict):
        problems.append(Problem(str(path), "not a visor YOLO sidecar; ignored"))
        return {}, None
    if data.get("classes") is not None and tuple(data["classes"]) != classes:
        problems.append(Problem(str(path), "its class names differ from data.yaml (edited since written?); ignored"))
        return {}, None
    cat = data.get("category_ids")
    ids = None
    if isinstance(cat, list) and len(cat) == len(classes) and all(isinstance(c, int) for c in cat):
        ids = tuple(cat) if len(set(cat)) == len(cat) else None
    return data["images"], ids


def _apply_sidecar(
    entry: Any, lines: dict[int, BoxAnnotation | None], classes: tuple[str, ...], item: str, problems: list[Problem]
) -> tuple[list[BoxAnnotation], int | None]:
    plain = [a for a in lines.values() if a is not None]
    if entry is None:
        return plain, None
    try:
        anns = _restore(entry, lines, len(classes))
    except (InvalidInput, KeyError, TypeError, ValueError, IndexError) as e:
        problems.append(Problem(item, f"the {SIDECAR} entry does not match the label file (edited since written?): "
                                      f"{e}; ids and extras not restored for this image"))
        return plain, None
    return anns, entry.get("id")


def _restore(entry: dict[str, Any], lines: dict[int, BoxAnnotation | None], num_classes: int) -> list[BoxAnnotation]:
    specs = entry["annotations"]
    referenced = [s["line"] for s in specs if "line" in s]
    if sorted(referenced) != sorted(lines):
        raise ValueError(f"it describes {len(referenced)} label line(s), the file has {len(lines)}")
    out: list[BoxAnnotation] = []
    for s in specs:
        rle = RLE.from_dict(s["rle"]) if s.get("rle") is not None else None
        if "line" not in s:  # a crowd annotation, kept in full
            if not 0 <= s["class_id"] < num_classes:
                raise ValueError(f"class id {s['class_id']} out of range")
            out.append(BoxAnnotation(
                tuple(s["xyxy"]), s["class_id"], s.get("id"), bool(s.get("iscrowd", True)),
                tuple(tuple(p) for p in s.get("segmentation", ())), s.get("area"), s.get("attributes", {}), rle,
            ))
            continue
        ann = lines[s["line"]]
        if ann is None:  # the line was reported and left out
            continue
        if ann.class_id != s["class_id"]:
            raise ValueError(f"line {s['line']} has class {ann.class_id}, the sidecar says {s['class_id']}")
        seg = ann.segmentation
        if s.get("box_only"):
            seg = ()
        elif s.get("parts") and seg:
            flat, seg, start = seg[0], [], 0
            if sum(s["parts"]) != len(flat):
                raise ValueError(f"line {s['line']}: polygon parts do not add up")
            for n in s["parts"]:
                seg.append(flat[start:start + n])
                start += n
        out.append(replace(
            ann, xyxy=tuple(s.get("xyxy", ann.xyxy)), id=s.get("id"), segmentation=tuple(seg), area=s.get("area"),
            attributes=s.get("attributes", {}), rle=rle,
        ))
    return out


# --------------------------------------------------------------------------- writing


def _norm(values: Iterable[float], width: int, height: int) -> str:
    return " ".join(repr(v / (width if k % 2 == 0 else height)) for k, v in enumerate(values))


def _label_lines(im: DetectionImage, seg_dataset: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """The label file's lines and the sidecar's annotation entries for one image."""
    lines: list[str] = []
    specs: list[dict[str, Any]] = []
    for a in im.annotations:
        extras: dict[str, Any] = {"class_id": a.class_id}
        if a.id is not None:
            extras["id"] = a.id
        if a.area is not None:
            extras["area"] = a.area
        if a.attributes:
            extras["attributes"] = dict(a.attributes)
        if a.rle is not None:
            extras["rle"] = a.rle.to_dict()
        if a.iscrowd:
            specs.append({**extras, "iscrowd": True, "xyxy": list(a.xyxy),
                          "segmentation": [list(p) for p in a.segmentation]})
            continue
        x1, y1, x2, y2 = a.xyxy
        if a.segmentation:
            flat = [v for p in a.segmentation for v in p]
            lines.append(f"{a.class_id} {_norm(flat, im.width, im.height)}")
            extras["xyxy"] = list(a.xyxy)
            if len(a.segmentation) > 1:
                extras["parts"] = [len(p) for p in a.segmentation]
        elif seg_dataset:
            lines.append(f"{a.class_id} {_norm((x1, y1, x2, y1, x2, y2, x1, y2), im.width, im.height)}")
            extras["box_only"] = True
        else:
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            lines.append(f"{a.class_id} {_norm((cx, cy, w, h), im.width, im.height)}")
        specs.append({"line": len(lines), **extras})
    return lines, specs


def to_yolo(ds: DetectionDataset, out: str | os.PathLike, *, images: str = "copy") -> Path:
    """Write ``ds`` as YOLO into the folder ``out``; returns ``out/data.yaml``.

    Images go to ``images/<split>/<file_name>`` and labels to ``labels/<split>/<stem>.txt``
    (no ``<split>`` level, and train and val both naming ``images``, when the dataset has no
    splits). When any annotation has polygons the labels are YOLO-seg (every line a polygon),
    else boxes. :data:`SIDECAR` keeps ids and what YOLO cannot hold (see the module docs).

    Raises InvalidInput if only some images have a split (YOLO needs every image in one), or if
    two images would get the same name.
    """
    check_image_mode(images)
    unsplit = [im for im in ds.images if im.split is None]
    if unsplit and len(unsplit) != len(ds.images):
        raise InvalidInput(
            f"cannot write YOLO: {len(unsplit)} image(s) (e.g. {unsplit[0].path}) have no split while others have "
            "one; YOLO lists images by split, so give every image a split or none"
        )
    unique_names(ds, "YOLO")
    out = Path(out)
    seg_dataset = any(a.segmentation for im in ds.images for a in im.annotations if not a.iscrowd)
    sidecar_images: dict[str, Any] = {}
    for im in ds.images:
        rel = Path("images", *([im.split] if im.split else []), im.name)
        lines, specs = _label_lines(im, seg_dataset)
        _atomic_write_text(label_path(out / rel), "".join(line + "\n" for line in lines))
        place_image(im.path, out / rel, images)
        sidecar_images[rel.as_posix()] = {"id": im.id, "annotations": specs}
    cfg: dict[str, Any] = {}
    if ds.splits:
        cfg.update({s: f"images/{s}" for s in ds.splits})
    else:
        cfg.update({"train": "images", "val": "images"})
    cfg["nc"] = len(ds.classes)
    cfg["names"] = dict(enumerate(ds.classes))
    header = "# written by visor; ids and what YOLO labels cannot hold are in " + SIDECAR + "\n"
    yaml_path = out / "data.yaml"
    _atomic_write_text(yaml_path, header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    sidecar = {
        "kind": _SIDECAR_KIND, "version": 1, "classes": list(ds.classes),
        "category_ids": None if ds.category_ids is None else list(ds.category_ids), "images": sidecar_images,
    }
    _atomic_write_text(out / SIDECAR, json.dumps(sidecar, ensure_ascii=False) + "\n")
    return yaml_path
