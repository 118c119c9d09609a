"""Rekognition's shapes from visor's results: the pure translations behind :mod:`visor.serve.rekognition`.

Operations and what visor answers (confidences on Rekognition's 0-100 scale, geometry as ratios of the image):

* ``DetectLabels``: the generic labels Cloud Vision's LABEL_DETECTION builds (ImageNet roll-up and the detector's
  classes, :func:`visor.serve.cloudvision.label_annotations`) and the classifier's class names; ``Instances`` the
  detector's boxes for labels that are detector classes; ``Parents`` the generic labels above a label in
  :mod:`visor.features.labels`' table; ``MinConfidence`` (default 55), ``MaxLabels``; ``LabelModelVersion`` names
  the classifier and detector. ``Features``/``Settings`` (image properties, label filters) are not applied.
* ``DetectFaces``: ``BoundingBox``, ``Landmarks`` (YuNet's 5 points: ``eyeLeft``, ``eyeRight``, ``nose``,
  ``mouthLeft``, ``mouthRight``; left and right are the viewer's, as Rekognition's coordinates show them),
  ``Pose``, ``Quality`` (``Brightness``, ``Sharpness``, as :mod:`visor.faces.indexed` measures them on the face
  crop) and ``Confidence`` (YuNet's score). ``Attributes=["ALL"]`` adds nothing: visor does not estimate age,
  gender, emotions, glasses... and leaves those fields out rather than guess. Pose (:func:`pose`), in degrees:
  ``Roll`` = the slope of the eye line, ``atan2(dy, dx)`` from the viewer's left eye to the right one;
  ``Yaw`` = ``atan(2 s / d)`` where ``s`` is how far the nose tip sits from the eyes' midpoint along the eye
  line and ``d`` the eye distance (a nose half an eye distance to the side reads 45 degrees; positive: the
  nose towards the image's right); ``Pitch`` = ``atan((t - 0.5) / 0.5)`` with ``t`` where the nose sits between
  the eye line (0) and the mouth line (1) on the face's vertical (0.5 frontal; positive: looking down).
  Estimates from 5 points, good to tens of degrees, not a head-pose model.
* ``CompareFaces``: the source's largest face; every target face with ``Similarity`` =
  :func:`visor.faces.indexed.similarity` of dlib's distance (100 * (1 - d / 3): dlib's operating point 0.6 is
  80, Rekognition's default ``SimilarityThreshold``); ``FaceMatches`` at or above it, the others
  ``UnmatchedFaces``. ``QualityFilter`` (default NONE) drops target faces that fail it.
* Collections (``Create``/``List``/``Describe``/``DeleteCollection``), ``IndexFaces`` (``ExternalImageId``,
  ``MaxFaces``, ``QualityFilter`` default AUTO), ``ListFaces`` (paged), ``SearchFaces`` (by FaceId),
  ``SearchFacesByImage`` (the image's largest face passing ``QualityFilter``, default NONE) and
  ``DeleteFaces``: :class:`visor.faces.indexed.FaceIndex` in the service's faces database (``--faces-db``), so
  they survive restarts. ``CollectionArn`` is ``aws:rekognition:<region>:000000000000:collection/<id>``.
* ``DetectText``: the text lines in reading order as ``LINE`` detections (``Id`` 0..), then their words
  (split on spaces, boxes dividing the line's quadrilateral by character counts) as ``WORD`` with the line's
  ``ParentId``; ``Geometry`` ``BoundingBox`` and 4-point ``Polygon``; ``Filters.WordFilter`` (MinConfidence,
  MinBoundingBoxHeight/Width) applies; regions of interest are not.
* ``DetectModerationLabels``: :mod:`visor.features.moderation`'s scores on Rekognition's taxonomy
  (``MinConfidence`` default 50; a level-2 label brings its level-1 parent with the best child's confidence):

  ===============================================  ===============================  =========================
  visor score                                      Name (TaxonomyLevel 2)           ParentName (level 1)
  ===============================================  ===============================  =========================
  open_nsfw                                        (the parent itself)              Explicit Nudity
  nudenet FEMALE_GENITALIA_EXPOSED                 Graphic Female Nudity            Explicit Nudity
  nudenet MALE_GENITALIA_EXPOSED                   Graphic Male Nudity              Explicit Nudity
  nudenet FEMALE_BREAST_EXPOSED, BUTTOCKS_EXPOSED,  Nudity                           Explicit Nudity
  ANUS_EXPOSED
  nudenet FEMALE_BREAST_COVERED, BUTTOCKS_COVERED,  Female Swimwear Or Underwear     Suggestive
  FEMALE_GENITALIA_COVERED, ANUS_COVERED
  nudenet MALE_BREAST_EXPOSED                      Barechested Male                 Suggestive
  nudenet BELLY_EXPOSED, ARMPITS_EXPOSED           Revealing Clothes                Suggestive
  ===============================================  ===============================  =========================
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

#: The account id in ARNs (visor has no accounts).
ACCOUNT_ID = "000000000000"
DEFAULT_LABEL_CONFIDENCE = 55.0
DEFAULT_MODERATION_CONFIDENCE = 50.0
#: The (Name, ParentName) of each moderation score visor has (see the module docstring).
MODERATION_TAXONOMY: dict[str, tuple[str, str]] = {
    "open_nsfw": ("Explicit Nudity", ""),
    "FEMALE_GENITALIA_EXPOSED": ("Graphic Female Nudity", "Explicit Nudity"),
    "MALE_GENITALIA_EXPOSED": ("Graphic Male Nudity", "Explicit Nudity"),
    "FEMALE_BREAST_EXPOSED": ("Nudity", "Explicit Nudity"),
    "BUTTOCKS_EXPOSED": ("Nudity", "Explicit Nudity"),
    "ANUS_EXPOSED": ("Nudity", "Explicit Nudity"),
    "FEMALE_BREAST_COVERED": ("Female Swimwear Or Underwear", "Suggestive"),
    "BUTTOCKS_COVERED": ("Female Swimwear Or Underwear", "Suggestive"),
    "FEMALE_GENITALIA_COVERED": ("Female Swimwear Or Underwear", "Suggestive"),
    "ANUS_COVERED": ("Female Swimwear Or Underwear", "Suggestive"),
    "MALE_BREAST_EXPOSED": ("Barechested Male", "Suggestive"),
    "BELLY_EXPOSED": ("Revealing Clothes", "Suggestive"),
    "ARMPITS_EXPOSED": ("Revealing Clothes", "Suggestive"),
}
#: Rekognition's landmark names for YuNet's 5 points (in YuNet's order).
YUNET_LANDMARK_TYPES: tuple[str, ...] = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")
#: Where the nose tip sits between the eye line and the mouth line on a frontal face (for Pitch).
FRONTAL_NOSE = 0.5


# --------------------------------------------------------------------------- geometry and faces


def _ratio(v: float, size: int) -> float:
    return float(min(1.0, max(0.0, float(v) / max(1, size))))


def bounding_box(xyxy: Sequence[float], width: int, height: int) -> dict[str, float]:
    """A pixel box as Rekognition's ``BoundingBox`` (ratios of the image, clipped to it)."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    left, top, right, bottom = _ratio(x0, width), _ratio(y0, height), _ratio(x1, width), _ratio(y1, height)
    return {"Width": round(max(0.0, right - left), 6), "Height": round(max(0.0, bottom - top), 6),
            "Left": round(left, 6), "Top": round(top, 6)}


def landmarks(points: Sequence[Sequence[float]], width: int, height: int) -> list[dict[str, Any]]:
    """YuNet's 5 points as Rekognition landmarks (ratios; not clipped: a landmark may lie outside the image)."""
    if len(points) != len(YUNET_LANDMARK_TYPES):
        return []
    return [{"Type": name, "X": round(float(x) / max(1, width), 6), "Y": round(float(y) / max(1, height), 6)}
            for name, (x, y) in zip(YUNET_LANDMARK_TYPES, points, strict=True)]


def pose(points: Sequence[Sequence[float]]) -> dict[str, float]:
    """Roll, Yaw and Pitch in degrees from YuNet's 5 points (see the module docstring for the formulas)."""
    if len(points) != 5:
        return {"Roll": 0.0, "Yaw": 0.0, "Pitch": 0.0}
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = ((float(x), float(y)) for x, y in points)
    dx, dy = rx - lx, ry - ly
    d = math.hypot(dx, dy)
    if d < 1e-6:
        return {"Roll": 0.0, "Yaw": 0.0, "Pitch": 0.0}
    roll = math.atan2(dy, dx)
    ux, uy = dx / d, dy / d  # along the eye line
    vx, vy = -uy, ux  # the face's vertical (downwards on screen for an upright face)
    mx, my = (lx + rx) / 2, (ly + ry) / 2
    side = (nx - mx) * ux + (ny - my) * uy
    yaw = math.degrees(math.atan(2 * side / d))
    mouth = ((mlx + mrx) / 2 - mx) * vx + ((mly + mry) / 2 - my) * vy
    nose = (nx - mx) * vx + (ny - my) * vy
    pitch = 0.0
    if mouth > 1e-6:
        pitch = math.degrees(math.atan((nose / mouth - FRONTAL_NOSE) / FRONTAL_NOSE))

    def clip(a: float) -> float:
        return round(max(-180.0, min(180.0, a)), 3)

    return {"Roll": clip(math.degrees(roll)), "Yaw": clip(yaw), "Pitch": clip(pitch)}


def percent(v: float) -> float:
    v = float(v)
    return round(min(100.0, max(0.0, v)), 4) if math.isfinite(v) else 0.0


def face_detail(face: Any) -> dict[str, Any]:
    """A :class:`visor.faces.indexed.DetectedFace` as Rekognition's ``FaceDetail`` (what visor measures only)."""
    w, h = int(face.width), int(face.height)
    return {"BoundingBox": bounding_box(face.xyxy, w, h), "Landmarks": landmarks(face.landmarks, w, h),
            "Pose": pose(face.landmarks), "Quality": {"Brightness": percent(face.brightness),
                                                      "Sharpness": percent(face.sharpness)},
            "Confidence": percent(100.0 * float(face.confidence))}


def compared_face(face: Any) -> dict[str, Any]:
    """``ComparedFace``: the FaceDetail fields it has."""
    detail = face_detail(face)
    return {k: detail[k] for k in ("BoundingBox", "Confidence", "Landmarks", "Pose", "Quality")}


def face_json(record: Any) -> dict[str, Any]:
    """A :class:`visor.faces.indexed.FaceRecord` as Rekognition's ``Face``."""
    x0, y0, x1, y1 = (float(v) for v in record.box)
    out: dict[str, Any] = {
        "FaceId": record.face_id,
        "BoundingBox": {"Width": round(max(0.0, x1 - x0), 6), "Height": round(max(0.0, y1 - y0), 6),
                        "Left": round(x0, 6), "Top": round(y0, 6)},
        "ImageId": record.image_id, "Confidence": percent(100.0 * float(record.confidence))}
    if record.external_image_id:
        out["ExternalImageId"] = record.external_image_id
    return out


def collection_arn(region: str, name: str) -> str:
    return f"aws:rekognition:{region}:{ACCOUNT_ID}:collection/{name}"


def epoch(value: datetime) -> float:
    return round(value.timestamp(), 3)


# --------------------------------------------------------------------------- labels, text, moderation


@functools.cache
def _label_sets() -> dict[str, frozenset[tuple[str, int]]]:
    from visor.features.labels import hypernym_table

    table = hypernym_table()
    out = {}
    for name, row, coco in zip(table.names, table.imagenet, table.coco, strict=True):
        out[name] = frozenset({("i", int(i)) for i in row.nonzero()[0]} | {("c", int(i)) for i in coco.nonzero()[0]})
    return out


def label_parents(name: str, class_id: int | None = None) -> list[str]:
    """The generic labels above a label, most specific first: for an ImageNet class (``class_id``) its WordNet
    roll-up; for a generic label or a COCO class, the generic labels whose classes include all of its own."""
    from visor.features.labels import display_name, hypernym_table, hypernyms

    table = hypernym_table()
    if class_id is not None:
        try:
            return [p for p in hypernyms(int(class_id)) if p.lower() != name.lower()]
        except (IndexError, ValueError):
            return []
    sets = _label_sets()
    own = sets.get(name)
    if own is None:
        coco = [i for i, c in enumerate(table.coco_names) if display_name(c) == name]
        if not coco:
            return []
        own = frozenset({("c", coco[0])})
    if not own:
        return []
    return [other for other in table.names if other != name and own < sets[other]]


def detect_labels(doc: Mapping[str, Any], *, max_labels: int | None, min_confidence: float) -> list[dict[str, Any]]:
    """Rekognition ``Labels`` from visor's annotate document (``labels``, and ``objects`` with a detector)."""
    from visor.features.labels import display_name, imagenet_wnid
    from visor.serve.cloudvision import label_annotations

    width, height = int(doc["width"]), int(doc["height"])
    result = doc["labels"]
    ranked = label_annotations(result, dict(doc), 1000)
    imagenet = {str(p["label"]).lower(): int(p["class_id"]) for p in result.get("predictions", [])
                if imagenet_wnid(int(p["class_id"]), str(p["label"]))}
    objects = doc.get("objects")
    boxes: dict[str, list[dict[str, Any]]] = {}
    if isinstance(objects, dict) and "detections" in objects:
        for d in sorted(objects["detections"], key=lambda d: -float(d["confidence"])):
            name = display_name(str(d.get("class_name", d["class_id"])))
            boxes.setdefault(name.lower(), []).append({"BoundingBox": bounding_box(d["xyxy"], width, height),
                                                       "Confidence": percent(100.0 * float(d["confidence"]))})
    out = []
    for item in ranked:
        confidence = percent(100.0 * float(item["score"]))
        if confidence < min_confidence:
            continue
        name = str(item["description"])
        key = name.lower()
        class_id = imagenet.get(key) if name not in _label_sets() else None
        parents = label_parents(name, class_id)
        out.append({"Name": name, "Confidence": confidence, "Instances": boxes.get(key, []),
                    "Parents": [{"Name": p} for p in parents]})
        if max_labels is not None and len(out) >= max_labels:
            break
    return out


def text_detections(text: Mapping[str, Any], width: int, height: int,
                    word_filter: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rekognition ``TextDetections``: LINEs in reading order (Id 0..), then each line's WORDs (ParentId)."""
    from visor.serve.cloudvision import line_reading_order, sub_quad

    lines = list(text.get("lines") or [])
    if not lines:
        return []
    f = word_filter or {}
    min_conf = float(f.get("MinConfidence", 0.0))
    min_h, min_w = float(f.get("MinBoundingBoxHeight", 0.0)), float(f.get("MinBoundingBoxWidth", 0.0))

    def geometry(quad: Sequence[Sequence[float]]) -> dict[str, Any]:
        xs, ys = [float(p[0]) for p in quad], [float(p[1]) for p in quad]
        return {"BoundingBox": bounding_box((min(xs), min(ys), max(xs), max(ys)), width, height),
                "Polygon": [{"X": round(_ratio(x, width), 6), "Y": round(_ratio(y, height), 6)}
                            for x, y in zip(xs, ys, strict=True)]}

    def kept(g: dict[str, Any], confidence: float) -> bool:
        box = g["BoundingBox"]
        return confidence >= min_conf and box["Height"] >= min_h and box["Width"] >= min_w

    out_lines: list[dict[str, Any]] = []
    out_words: list[dict[str, Any]] = []
    order = [i for row in line_reading_order(lines) for i in row]
    next_id = 0
    line_ids = []
    for i in order:
        line = lines[i]
        g = geometry(line["polygon"])
        conf = percent(100.0 * float(line["confidence"]))
        if not kept(g, conf) or not str(line["text"]).strip():
            continue
        line_ids.append((next_id, line, conf))
        out_lines.append({"DetectedText": str(line["text"]), "Type": "LINE", "Id": next_id, "Confidence": conf,
                          "Geometry": g})
        next_id += 1
    for line_id, line, conf in line_ids:
        text_ = str(line["text"])
        n = max(len(text_), 1)
        for m in re.finditer(r"\S+", text_):
            g = geometry(sub_quad(line["polygon"], m.start() / n, m.end() / n))
            if not kept(g, conf):
                continue
            out_words.append({"DetectedText": m.group(), "Type": "WORD", "Id": next_id, "ParentId": line_id,
                              "Confidence": conf, "Geometry": g})
            next_id += 1
    return out_lines + out_words


def moderation_labels(scores: Mapping[str, float], min_confidence: float = DEFAULT_MODERATION_CONFIDENCE
                      ) -> list[dict[str, Any]]:
    """Rekognition ``ModerationLabels`` from visor's moderation scores (:data:`MODERATION_TAXONOMY`), best first;
    each level-2 label brings its level-1 parent (with the best child's confidence)."""
    best: dict[tuple[str, str], float] = {}
    for key, score in scores.items():
        if key not in MODERATION_TAXONOMY:
            continue
        conf = percent(100.0 * float(score))
        name, parent = MODERATION_TAXONOMY[key]
        best[(name, parent)] = max(best.get((name, parent), 0.0), conf)
        if parent:
            best[(parent, "")] = max(best.get((parent, ""), 0.0), conf)
    rows = [{"Confidence": c, "Name": n, "ParentName": p, "TaxonomyLevel": 2 if p else 1}
            for (n, p), c in best.items() if c >= min_confidence]
    return sorted(rows, key=lambda r: (-r["Confidence"], r["TaxonomyLevel"], r["Name"]))


__all__ = ["ACCOUNT_ID", "DEFAULT_LABEL_CONFIDENCE", "DEFAULT_MODERATION_CONFIDENCE", "MODERATION_TAXONOMY",
           "YUNET_LANDMARK_TYPES", "bounding_box", "collection_arn", "compared_face", "detect_labels", "epoch",
           "face_detail", "face_json", "label_parents", "landmarks", "moderation_labels", "percent", "pose",
           "text_detections"]
