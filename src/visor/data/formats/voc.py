"""Pascal VOC: ``Annotations/<id>.xml``, ``JPEGImages/``, ``ImageSets/Main/{train,val,test}.txt``.

Pixel convention: VOC ``bndbox`` values are 1-based, inclusive pixel indices (``xmin = 1`` is the
first column, ``xmax = width`` the last). visor's boxes are continuous 0-based coordinates, so
reading gives ``xyxy = (xmin - 1, ymin - 1, xmax, ymax)`` and writing the inverse (Detectron2's
convention). A full-image box is ``1 1 W H`` in VOC and ``(0, 0, W, H)`` in visor, and
``xmax == xmin`` is a one-pixel-wide box. Reading and writing are exact inverses (numbers are
written as integers when whole, else with ``repr``), so VOC -> COCO -> VOC gives the same files'
values back.

Reading (:func:`from_voc`): the image is ``JPEGImages/<filename>`` (``<folder>`` and ``<path>``,
often stale absolute paths, are ignored); ``<size>`` gives width and height (the image header
when it is missing or zero). Classes are, in order: the ``classes`` argument, else ``labels.txt``
in the root (one name a line, as :func:`to_voc` writes it), else the sorted unique object names.
Each object's other simple child elements (``pose``, ``truncated``, ``difficult``, ``occluded``...)
become string attributes, in file order; ``<iscrowd>1</iscrowd>`` marks a crowd region; nested
elements (``part``, ``actions``) are not read. ``ImageSets/Main/{train,val,test}.txt`` give
splits (other files there, ``trainval.txt`` and ``<class>_train.txt``, are not read).

Writing (:func:`to_voc`) cannot hold polygons, masks, areas or ids (see
:func:`~visor.data.detection.conversion_losses`).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from visor.data.dataset import SPLIT_NAMES, _atomic_write_text
from visor.data.detection import (
    BoxAnnotation,
    DetectionDataset,
    DetectionImage,
    Problem,
    box_check,
    check_image_mode,
    image_size,
    num_text,
    place_image,
)
from visor.errors import InvalidInput, VisorError

#: The class list :func:`to_voc` writes and :func:`from_voc` reads first, one name a line.
LABELS_FILE = "labels.txt"
_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _read_splits(root: Path, problems: list[Problem]) -> dict[str, str]:
    """image id -> split, from ImageSets/Main/<split>.txt."""
    out: dict[str, str] = {}
    for split in SPLIT_NAMES:
        path = root / "ImageSets" / "Main" / f"{split}.txt"
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(Problem(str(path), f"cannot read: {e}; its images have no split"))
            continue
        for line_no, line in enumerate(text.splitlines(), 1):
            tokens = line.split()
            if not tokens:
                continue
            if tokens[0] in out:
                if out[tokens[0]] != split:
                    problems.append(Problem(f"{path}:{line_no}", f"{tokens[0]} is already in {out[tokens[0]]!r}; "
                                                                 f"kept there"))
                continue
            if not (root / "Annotations" / f"{tokens[0]}.xml").is_file():
                problems.append(Problem(f"{path}:{line_no}", f"no Annotations/{tokens[0]}.xml for this image id"))
            out[tokens[0]] = split
    return out


def _parse(xml_path: Path, root: Path) -> tuple[dict, list[str]]:
    """The image record of one XML file and the reasons to report; raises InvalidInput if unusable."""
    try:
        # expat (>= 2.4) refuses entity-expansion bombs and ElementTree never fetches external entities
        tree = ET.parse(xml_path)  # noqa: S314
    except ET.ParseError as e:
        raise InvalidInput(f"not valid XML: {e}") from None
    except OSError as e:
        raise InvalidInput(f"cannot read: {e.strerror or e}") from None
    ann = tree.getroot()
    if ann.tag != "annotation":
        raise InvalidInput(f"the root element is <{ann.tag}>, expected <annotation>")
    filename = (ann.findtext("filename") or "").strip()
    if not filename:
        raise InvalidInput("no <filename>")
    path = Path(os.path.normpath(root / "JPEGImages" / filename))
    reasons: list[str] = []

    def size(tag: str) -> int | None:
        text = (ann.findtext(f"size/{tag}") or "").strip()
        try:
            value = float(text)
        except ValueError:
            return None
        return int(value) if value.is_integer() and value > 0 else None

    width, height = size("width"), size("height")
    if width is None or height is None:
        try:
            width, height = image_size(path)
        except VisorError as e:
            raise InvalidInput(f"no valid <size> and {e}") from None
    elif not path.is_file():
        reasons.append(f"image file not found: {path}; its annotations are kept")
    objects = []
    for k, obj in enumerate(ann.iter("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"object {k + 1}" + (f" ({name})" if name else "")
        if not name:
            reasons.append(f"{where}: no <name>; left out")
            continue
        try:
            xyxy = _read_box(obj)
        except ValueError as e:
            reasons.append(f"{where}: {e}; left out")
            continue
        keep, reason = box_check(xyxy, width, height)
        if reason:
            reasons.append(f"{where}: {reason}")
        if not keep:
            continue
        attributes, iscrowd = {}, False
        for child in obj:
            if child.tag in ("name", "bndbox") or len(child):
                continue
            if child.tag == "iscrowd":
                iscrowd = (child.text or "").strip() == "1"
                continue
            attributes[child.tag] = (child.text or "").strip()
        objects.append((name, xyxy, attributes, iscrowd))
    return {"path": path, "file_name": filename, "width": width, "height": height, "objects": objects}, reasons


def _read_box(obj: ET.Element) -> tuple[float, float, float, float]:
    box = obj.find("bndbox")
    if box is None:
        raise ValueError("no <bndbox>")
    values = []
    for key in _BOX_KEYS:
        text = (box.findtext(key) or "").strip()
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"<{key}> must be a number, got {text!r}") from None
        if v != v or abs(v) == float("inf"):
            raise ValueError(f"<{key}> must be finite, got {text!r}")
        values.append(v)
    xmin, ymin, xmax, ymax = values
    return (xmin - 1, ymin - 1, xmax, ymax)


def from_voc(
    root: str | os.PathLike, *, split: str | None = None, classes: Sequence[str] | None = None
) -> DetectionDataset:
    """Read a VOC folder (``Annotations/``, ``JPEGImages/``, optional ``ImageSets/Main/``).

    ``split`` keeps one split only (the classes still come from every split, so class ids agree
    between splits); ``classes`` fixes the class list (objects of other classes are reported and
    left out). Raises InvalidInput if ``root`` has no ``Annotations/`` folder.
    """
    root = Path(os.path.abspath(root))
    if not (root / "Annotations").is_dir():
        raise InvalidInput(f"{root} is not a VOC folder: it has no Annotations/ folder")
    problems: list[Problem] = []
    splits = _read_splits(root, problems)
    records, all_names = [], set()
    for xml_path in sorted((root / "Annotations").glob("*.xml")):
        wanted = split is None or splits.get(xml_path.stem) == split
        try:
            record, reasons = _parse(xml_path, root)
        except InvalidInput as e:
            if wanted:
                problems.append(Problem(str(xml_path), f"{e}; image left out"))
            continue
        all_names.update(name for name, *_ in record["objects"])  # every split: the same classes for each
        if wanted:
            problems.extend(Problem(str(xml_path), r) for r in reasons)
            records.append((xml_path, record))

    if classes is None and (root / LABELS_FILE).is_file():
        classes = [n.strip() for n in (root / LABELS_FILE).read_text(encoding="utf-8").splitlines() if n.strip()]
    if classes is None:
        classes = sorted(all_names)
    classes = tuple(classes)
    index = {c: i for i, c in enumerate(classes)}
    images = []
    for xml_path, r in records:
        anns = []
        for name, xyxy, attributes, iscrowd in r["objects"]:
            if name not in index:
                problems.append(Problem(str(xml_path), f"unknown class {name!r} (not in the {len(classes)} classes "
                                                       f"of {LABELS_FILE} / the class list); object left out"))
                continue
            anns.append(BoxAnnotation(xyxy, index[name], iscrowd=iscrowd, attributes=attributes))
        images.append(DetectionImage(
            r["path"], r["width"], r["height"], tuple(anns), split=splits.get(xml_path.stem), file_name=r["file_name"]
        ))
    return DetectionDataset(tuple(images), classes, None, root, tuple(problems))


# --------------------------------------------------------------------------- writing


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = text
    return el


def voc_xml(im: DetectionImage, classes: Sequence[str]) -> str:
    """The VOC XML text of one image."""
    ann = ET.Element("annotation")
    _sub(ann, "folder", "JPEGImages")
    _sub(ann, "filename", im.name)
    size = ET.SubElement(ann, "size")
    _sub(size, "width", str(im.width))
    _sub(size, "height", str(im.height))
    _sub(size, "depth", "3")
    _sub(ann, "segmented", "0")
    for a in im.annotations:
        obj = ET.SubElement(ann, "object")
        _sub(obj, "name", classes[a.class_id])
        for key, value in a.attributes.items():
            _sub(obj, key, value)
        if a.iscrowd:
            _sub(obj, "iscrowd", "1")
        box = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = a.xyxy
        for key, value in zip(_BOX_KEYS, (x1 + 1, y1 + 1, x2, y2), strict=True):
            _sub(box, key, num_text(value))
    ET.indent(ann, space="\t")
    return ET.tostring(ann, encoding="unicode") + "\n"


def to_voc(ds: DetectionDataset, out: str | os.PathLike, *, images: str = "copy") -> Path:
    """Write ``ds`` as a VOC folder ``out``; returns ``out``.

    ``Annotations/<stem>.xml`` per image, images in ``JPEGImages/<file_name>``,
    ``ImageSets/Main/<split>.txt`` per split and ``labels.txt`` (the classes in order).
    Raises InvalidInput if two images share a file stem (VOC names annotations by it), or an
    attribute key is not a valid XML element name.
    """
    check_image_mode(images)
    out = Path(out)
    stems: dict[str, Path] = {}
    for im in ds.images:
        stem = Path(im.name).stem
        if stem in stems:
            raise InvalidInput(f"cannot write VOC: images {stems[stem]} and {im.path} share the name {stem!r}")
        stems[stem] = im.path
        for a in im.annotations:
            for key in a.attributes:
                if not _XML_NAME.fullmatch(key) or key in ("name", "bndbox", "iscrowd"):
                    raise InvalidInput(f"cannot write VOC: attribute {key!r} of {im.path} is not an XML element name")
    for im in ds.images:
        _atomic_write_text(out / "Annotations" / f"{Path(im.name).stem}.xml", voc_xml(im, ds.classes))
        place_image(im.path, out / "JPEGImages" / im.name, images)
    for split in ds.splits:
        ids = [Path(im.name).stem for im in ds.images if im.split == split]
        _atomic_write_text(out / "ImageSets" / "Main" / f"{split}.txt", "".join(i + "\n" for i in ids))
    _atomic_write_text(out / LABELS_FILE, "".join(c + "\n" for c in ds.classes))
    return out
