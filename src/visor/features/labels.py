"""Generic labels people expect ("Dog", "Car", "Food"), with scores, from an ImageNet classifier and a COCO detector.

ImageNet-1k names are precise but not what people search by: "English springer", "bridegroom", "school bus".
:func:`generic_labels` adds the everyday words above them, from two sources:

* **ImageNet roll-up.** Each ImageNet-1k class climbs its WordNet 3.0 hypernym chain ("English springer" ->
  "Dog" -> "Mammal" -> "Animal"), kept only through a curated set of 72 generic labels (never "entity",
  "artifact" or "organism"). The table ships with visor (``visor/models/labels/imagenet_hypernyms.json``, built
  by ``tools/build_hypernyms.py`` from WordNet 3.0, Princeton University's licence, notice kept in the file).
  A generic label's score is the **sum of the softmax probabilities** of the ImageNet classes under it, capped
  at 1: the probability that the image shows one of them. Given a full probability vector (or a
  :class:`~visor.types.Classifications` holding all 1000 classes) the sum is exact; given only the top k it is
  a lower bound.
* **Detector classes.** Each class the COCO detector (``yolox_nano`` by default) finds becomes a label in
  Cloud Vision's spelling (:func:`display_name`: "person" -> "Person", "cell phone" -> "Mobile phone"),
  scored by its **best detection**; the COCO classes also climb the same table (a detected dog counts for
  "Dog", "Mammal" and "Animal" with its score).

Combined: a label's score is the **maximum** of its ImageNet sum and its best detection (the two are
different evidence for the same fact, so neither adds to the other); labels are sorted by score (ties: the
more specific first, "Giraffe" before "Mammal" before "Animal") and those below ``threshold`` (default
:data:`DEFAULT_THRESHOLD` = 0.5, about where Cloud Vision stops returning labels) are dropped.
:func:`label_wnid` gives each label's WordNet 3.0 id, a stable identifier.

The ImageNet roll-up applies only to a classifier with ImageNet-1k's classes (visor's default); the
classes of another classifier are not rolled up (:func:`imagenet_scores` returns nothing for them).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from visor.types import Classifications
from visor.types.detections import Detections

#: Labels scoring below this are dropped by :func:`generic_labels`.
DEFAULT_THRESHOLD = 0.5
TABLE = "imagenet_hypernyms"
#: COCO names Cloud Vision (Open Images vocabulary) writes differently; others are capitalised.
COCO_DISPLAY_NAMES: dict[str, str] = {
    "sports ball": "Ball", "tv": "Television", "cell phone": "Mobile phone", "potted plant": "Houseplant",
    "hair drier": "Hair dryer", "dining table": "Table", "couch": "Couch", "remote": "Remote control",
    "mouse": "Computer mouse", "skis": "Ski", "donut": "Doughnut", "laptop": "Laptop",
}


class GenericLabel(NamedTuple):
    """One generic label, a ``(name, score)`` pair: its name in Cloud Vision's spelling and its score in 0..1."""

    name: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "score", "wnid"}`` (the WordNet 3.0 id, "" when there is none; see :func:`label_wnid`)."""
        return {"name": self.name, "score": round(float(self.score), 6), "wnid": label_wnid(self.name)}


@dataclass(frozen=True)
class HypernymTable:
    """The packaged table: generic label names, their wnids, and which classes sit under each."""

    names: tuple[str, ...]
    wnids: tuple[str, ...]
    imagenet: np.ndarray
    """``(labels, 1000)`` float32, 1 where the ImageNet class is under the label (read-only)."""
    coco: np.ndarray
    """``(labels, 80)`` bool, True where the COCO class is under the label (read-only)."""
    imagenet_names: tuple[str, ...]
    imagenet_wnids: tuple[str, ...]
    coco_names: tuple[str, ...]

    def index(self, name: str) -> int:
        return self.names.index(name)


def _read(name: str) -> dict[str, Any]:
    return json.loads(importlib.resources.files("visor.models.labels").joinpath(f"{name}.json").read_text())


@functools.cache
def hypernym_table() -> HypernymTable:
    """The generic-label table shipped with visor (read once; immutable)."""
    table, imagenet, coco = _read(TABLE), _read("imagenet1k"), _read("coco80")
    rows = table["labels"]
    member = np.zeros((len(rows), len(imagenet["names"])), np.float32)
    coco_member = np.zeros((len(rows), len(coco["names"])), bool)
    for i, row in enumerate(rows):
        member[i, row["imagenet"]] = 1.0
        coco_member[i, row["coco"]] = True
    member.flags.writeable = False
    coco_member.flags.writeable = False
    return HypernymTable(tuple(r["name"] for r in rows), tuple(r["wnid"] for r in rows), member, coco_member,
                         tuple(imagenet["names"]), tuple(imagenet["synsets"]), tuple(coco["names"]))


def display_name(name: str) -> str:
    """A class name as Cloud Vision writes it: "person" -> "Person", "cell phone" -> "Mobile phone"."""
    name = str(name).strip()
    mapped = COCO_DISPLAY_NAMES.get(name)
    if mapped is not None:
        return mapped
    return name[:1].upper() + name[1:]


def hypernyms(imagenet_class: int | str) -> list[str]:
    """The generic labels above one ImageNet-1k class (by index or name), most specific first:
    ``hypernyms("English springer") == ["Dog", "Mammal", "Animal"]``."""
    table = hypernym_table()
    index = table.imagenet_names.index(imagenet_class) if isinstance(imagenet_class, str) else int(imagenet_class)
    if not 0 <= index < len(table.imagenet_names):
        raise IndexError(f"ImageNet-1k has classes 0..{len(table.imagenet_names) - 1}, not {index}")
    return [n for n, row in zip(table.names, table.imagenet, strict=True) if row[index]]


def imagenet_wnid(class_id: int, label: str) -> str:
    """The WordNet id of an ImageNet-1k class when ``label`` is that class's name, else ""."""
    table = hypernym_table()
    ok = 0 <= int(class_id) < len(table.imagenet_names) and table.imagenet_names[int(class_id)] == str(label)
    return table.imagenet_wnids[int(class_id)] if ok else ""


def _probabilities(source: np.ndarray | Classifications | Mapping[str, Any]) -> np.ndarray | None:
    """A length-1000 ImageNet probability vector (zeros where unknown), or None for another classifier."""
    table = hypernym_table()
    n = len(table.imagenet_names)
    if isinstance(source, Mapping):  # the JSON form of Classifications
        source = Classifications.from_dict(dict(source))
    if isinstance(source, Classifications):
        ids, labels = source.class_id.tolist(), source.label.tolist()
        if any(not imagenet_wnid(c, lbl) for c, lbl in zip(ids, labels, strict=True)):
            return None
        probs = np.zeros(n, np.float32)
        probs[ids] = source.confidence
        return probs
    probs = np.asarray(source, np.float32).reshape(-1)
    return probs if len(probs) == n else None


def imagenet_scores(source: np.ndarray | Classifications | Mapping[str, Any]) -> dict[str, float]:
    """Generic label -> the summed probability of the ImageNet classes under it (capped at 1).

    ``source``: the 1000 softmax probabilities, or a :class:`~visor.types.Classifications` (or its JSON
    form) of an ImageNet-1k classifier (its top k: the sums are then lower bounds). Another classifier's
    results give ``{}``. Labels with no probability under them are left out.
    """
    probs = _probabilities(source)
    if probs is None:
        return {}
    table = hypernym_table()
    sums = np.minimum(table.imagenet @ probs, 1.0)
    return {name: float(s) for name, s in zip(table.names, sums, strict=True) if s > 0}


def detector_scores(detections: Detections | Mapping[str, Any], labels: Sequence[str] | None = None
                    ) -> dict[str, float]:
    """Label -> the best detection score: each detected class in Cloud Vision's spelling, and for COCO
    classes the generic labels above them. Class names come from ``data["class_name"]`` (what visor's
    detectors add) or ``labels[class_id]``."""
    if isinstance(detections, Mapping):
        detections = Detections.from_dict(dict(detections))
    table = hypernym_table()
    names = detections.data.get("class_name")
    out: dict[str, float] = {}
    for i, (cid, score) in enumerate(zip(detections.class_id.tolist(), detections.confidence.tolist(),
                                         strict=True)):
        if names is not None:
            name = str(names[i])
        elif labels is not None and 0 <= cid < len(labels):
            name = str(labels[cid])
        else:
            continue
        found = [display_name(name)]
        if name in table.coco_names:
            column = table.coco[:, table.coco_names.index(name)]
            found += [n for n, under in zip(table.names, column, strict=True) if under]
        for label in found:
            out[label] = max(out.get(label, 0.0), float(score))
    return out


@functools.cache
def _wnids() -> dict[str, str]:
    table = hypernym_table()
    ids = dict(zip(table.names, table.wnids, strict=True))
    for name, wnid in zip(table.coco_names, _read(TABLE)["coco_synsets"], strict=True):
        ids.setdefault(display_name(name), wnid)
    return ids


def label_wnid(name: str) -> str:
    """The WordNet 3.0 id of a generic label or of a COCO class in Cloud Vision's spelling ("Dog" ->
    "n02084071"), "" for other names: a stable identifier for labels."""
    return _wnids().get(name, "")


def generic_labels(
    classifications: np.ndarray | Classifications | Mapping[str, Any] | None = None,
    detections: Detections | Mapping[str, Any] | None = None,
    *,
    labels: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    max_results: int | None = None,
) -> list[GenericLabel]:
    """Generic labels with scores, best first (see the module docstring for how scores combine).

    ``classifications``: ImageNet-1k probabilities (a length-1000 vector) or a classifier's
    :class:`~visor.types.Classifications` (or its JSON form); ``detections``: a detector's
    :class:`~visor.types.detections.Detections` (or its JSON form), with ``labels`` the detector's class names
    when the detections carry no ``class_name``. Labels scoring below ``threshold`` are dropped;
    ``max_results`` keeps the best ones.
    """
    scores: dict[str, float] = {}
    parts = [imagenet_scores(classifications) if classifications is not None else {},
             detector_scores(detections, labels) if detections is not None else {}]
    for part in parts:
        for name, score in part.items():
            scores[name] = max(scores.get(name, 0.0), min(1.0, score))
    order = {name: i for i, name in enumerate(hypernym_table().names)}  # most specific first
    ranked = sorted((GenericLabel(n, s) for n, s in scores.items() if s >= threshold),
                    key=lambda g: (-g.score, order.get(g.name, -1), g.name))
    return ranked if max_results is None else ranked[: max(0, int(max_results))]


__all__ = ["COCO_DISPLAY_NAMES", "DEFAULT_THRESHOLD", "GenericLabel", "HypernymTable", "detector_scores",
           "display_name", "generic_labels", "hypernym_table", "hypernyms", "imagenet_scores", "imagenet_wnid",
           "label_wnid"]
