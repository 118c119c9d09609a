"""The review queue: predictions a person should check, with their image, and the decisions.

The service queues a prediction when :func:`review_reason` gives a reason (low confidence
for its model, a label rule, or random sampling). A reviewer then accepts the predicted
label, corrects it, or rejects the item; a decision can be changed later. Accepted and
corrected items export as a dataset (:meth:`ReviewQueue.export`) that ``visor train`` and
``visor data stats`` read:

* ``imagefolder``: ``OUT/<label>/<id>_<name>`` (the image bytes as uploaded) and
  ``OUT/manifest.jsonl`` (``path``, ``label`` and the item's provenance, all strings), a visor
  manifest too; only classify items;
* ``coco``: ``OUT/images/<id>_<name>`` and ``OUT/instances.json``. Detect items keep their
  (accepted or corrected) boxes; a classify item becomes one whole-image box with its label.

Which tasks can be queued comes from the task registry (:func:`review_tasks`): an item's task is the
task's batch-task name (``classify``, ``detect``), and how it is reviewed and exported follows from the
task's result type: one label per image (``Classifications``) or labelled boxes (``Detections``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from visor.config import suggest
from visor.errors import ConfigError, InvalidInput, OutputConflict, VisorError
from visor.io.files import PRIVATE, atomic_write
from visor.io.outputs import OutputWriteError
from visor.models.tasks import TaskRegistry, builtin_tasks
from visor.serve.db import ReviewItemRow, ServiceDB, utcnow

__all__ = [
    "ACTIONS",
    "EXPORT_FORMATS",
    "STATUSES",
    "ExportSummary",
    "ReviewItem",
    "ReviewItemNotFound",
    "ReviewPolicy",
    "ReviewQueue",
    "review_reason",
    "review_tasks",
    "reviewable",
]

#: How each reviewable result type is reviewed: ``label`` (one label for the whole image: an imagefolder
#: class, a whole-image box in COCO) or ``boxes`` (labelled boxes, corrected box by box: COCO only).
REVIEW_KINDS = {"visor.types.classifications:Classifications": "label",
                "visor.types.detections:Detections": "boxes"}
#: The states of an item.
STATUSES = ("pending", "accepted", "corrected", "rejected")
#: What :meth:`ReviewQueue.list` filters by: a state, ``reviewed`` (decided) or ``all``.
LIST_STATUSES = (*STATUSES, "reviewed", "all")
ACTIONS = ("accept", "correct", "reject")
_MAX_ID = 2**31 - 1  # the largest INTEGER id on every backend (PostgreSQL's is 32-bit)
EXPORT_FORMATS = ("imagefolder", "coco")

_DONE = {"accept": "accepted", "correct": "corrected", "reject": "rejected"}
_EXTENSIONS = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/bmp": ".bmp",
    "image/gif": ".gif", "image/tiff": ".tif",
}


class ReviewItemNotFound(VisorError, LookupError):
    """No review item has that id (HTTP 404)."""

    http_status = 404
    code = "review_item_not_found"


# --------------------------------------------------------------------------- tasks


@functools.cache
def review_tasks(tasks: TaskRegistry | None = None) -> dict[str, str]:
    """The review queue's task names -> ``"label"`` or ``"boxes"`` (:data:`REVIEW_KINDS`): each task of the
    registry (default :func:`~visor.models.tasks.builtin_tasks`) whose result can be reviewed, named by its
    batch task (else its verb): ``{"classify": "label", "detect": "boxes"}`` for visor's own."""
    out: dict[str, str] = {}
    for spec in tasks if tasks is not None else builtin_tasks():
        name, kind = spec.batch_task or spec.verb, REVIEW_KINDS.get(spec.result)
        if name and kind:
            out[name] = kind
    return out


def reviewable(task: str, tasks: TaskRegistry | None = None) -> bool:
    """Whether items of ``task`` (a batch-task name such as ``"classify"``) can go to the review queue."""
    return task in review_tasks(tasks)


# --------------------------------------------------------------------------- policy


def _fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a number between 0 and 1, got {value!r}")
    if not 0 <= value <= 1:
        raise ConfigError(f"{what} must be between 0 and 1, got {value}")
    return float(value)


@dataclass
class ReviewPolicy:
    """When a prediction goes to the review queue.

    ``threshold``: queue predictions whose confidence is below it (0 disables);
    ``thresholds``: the same per model name, overriding ``threshold``;
    ``labels``: always queue predictions whose top label is one of these;
    ``sample_rate``: also queue this fraction of the other predictions at random.
    """

    threshold: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    sample_rate: float = 0.0

    def __post_init__(self) -> None:
        self.threshold = _fraction(self.threshold, "review threshold")
        if not isinstance(self.thresholds, Mapping):
            raise ConfigError(f"review thresholds must map model names to numbers, got {self.thresholds!r}")
        self.thresholds = {str(m): _fraction(t, f"review threshold of model {m!r}") for m, t in self.thresholds.items()}
        if isinstance(self.labels, str):
            self.labels = (self.labels,)
        self.labels = tuple(self.labels)
        for label in self.labels:
            if not isinstance(label, str) or not label:
                raise ConfigError(f"review labels must be non-empty strings, got {label!r}")
        self.sample_rate = _fraction(self.sample_rate, "review sample rate")

    def threshold_for(self, model: str) -> float:
        return self.thresholds.get(model, self.threshold)


def review_reason(
    policy: ReviewPolicy, model: str, confidence: float | None, label: str | None,
    rng: random.Random | None = None,
) -> str | None:
    """Why this prediction should be reviewed, or None.

    ``"low_confidence"`` when ``confidence`` is below the model's threshold, else
    ``"label_rule"`` when ``label`` is one of ``policy.labels``, else ``"sample"`` when
    ``rng.random() < policy.sample_rate`` (``rng`` is drawn from only when the rate is above 0).
    """
    if confidence is not None and confidence < policy.threshold_for(model):
        return "low_confidence"
    if label is not None and label in policy.labels:
        return "label_rule"
    if policy.sample_rate > 0 and (rng or random).random() < policy.sample_rate:
        return "sample"
    return None


# --------------------------------------------------------------------------- items


@dataclass(frozen=True)
class ReviewItem:
    """One queued prediction and its decision (the image itself is read with :meth:`ReviewQueue.image`)."""

    id: int
    created_at: datetime
    model: str
    task: str
    filename: str
    media_type: str
    reason: str
    prediction: dict[str, Any]
    predicted_label: str | None
    confidence: float | None
    labels: list[str]
    status: str
    label: str | None
    boxes: list[dict[str, Any]] | None
    reviewer: str | None
    decided_at: datetime | None
    image_sha256: str = ""

    @property
    def image_url(self) -> str:
        return f"/v1/review/items/{self.id}/image"

    def to_dict(self) -> dict[str, Any]:
        """The service's JSON form."""
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "model": self.model,
            "task": self.task,
            "image": self.filename,
            "image_url": self.image_url,
            "media_type": self.media_type,
            "reason": self.reason,
            "prediction": self.prediction,
            "predicted_label": self.predicted_label,
            "confidence": self.confidence,
            "labels": self.labels,
            "status": self.status,
            "label": self.label,
            "reviewer": self.reviewer,
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
        }

    def final_boxes(self) -> list[dict[str, Any]]:
        """Detect items: the reviewed boxes, ``[{"xyxy": [x1, y1, x2, y2], "label": str}]``.

        The corrected boxes when given; otherwise the predicted detections, labelled through
        ``labels`` (a detection's own ``label`` key wins), with the top one relabelled to a
        corrected ``label``.
        """
        if self.boxes is not None:
            return [dict(b) for b in self.boxes]
        out = []
        for d in _detections(self.prediction):
            out.append({"xyxy": [float(v) for v in d["xyxy"]], "label": _detection_label(d, self.labels)})
        if self.status == "corrected" and self.label is not None and out:
            out[_top_detection(self.prediction)]["label"] = self.label
        return [b for b in out if b["label"]]


def _detections(prediction: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = prediction.get("detections", [])
    return [r for r in rows if isinstance(r, Mapping) and isinstance(r.get("xyxy"), list) and len(r["xyxy"]) == 4]


def _detection_label(d: Mapping[str, Any], labels: Sequence[str]) -> str | None:
    if isinstance(d.get("label"), str) and d["label"]:
        return d["label"]
    cid = d.get("class_id")
    if isinstance(cid, int) and 0 <= cid < len(labels):
        return labels[cid]
    return None if cid is None else str(cid)


def _top_detection(prediction: Mapping[str, Any]) -> int:
    rows = _detections(prediction)
    return max(range(len(rows)), key=lambda i: rows[i].get("confidence") or 0.0) if rows else -1


def _predicted(kind: str, prediction: Mapping[str, Any], labels: Sequence[str]) -> tuple[str | None, float | None]:
    """The top label and its confidence: the first classification, or the most confident detection."""
    if kind == "label":
        preds = prediction.get("predictions") or []
        if not preds:
            return None, None
        top = preds[0]
        return (str(top["label"]) if top.get("label") is not None else None), _float(top.get("confidence"))
    rows = _detections(prediction)
    if not rows:
        return None, None
    top = rows[_top_detection(prediction)]
    return _detection_label(top, labels), _float(top.get("confidence"))


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _item(row: ReviewItemRow) -> ReviewItem:
    return ReviewItem(
        id=row.id, created_at=row.created_at, model=row.model, task=row.task, filename=row.filename,
        media_type=row.media_type, reason=row.reason, prediction=json.loads(row.prediction),
        predicted_label=row.predicted_label, confidence=row.confidence, labels=json.loads(row.labels),
        status=row.status, label=row.label, boxes=None if row.boxes is None else json.loads(row.boxes),
        reviewer=row.reviewer, decided_at=row.decided_at, image_sha256=row.image_sha256,
    )


def _check_boxes(boxes: Any) -> list[dict[str, Any]]:
    if not isinstance(boxes, (list, tuple)):
        raise InvalidInput(f"boxes must be a list of {{'xyxy': [x1, y1, x2, y2], 'label': ...}}, got {boxes!r}")
    out = []
    for i, b in enumerate(boxes):
        if not isinstance(b, Mapping) or set(b) - {"xyxy", "label"} or "xyxy" not in b or "label" not in b:
            raise InvalidInput(f"box {i} must be {{'xyxy': [x1, y1, x2, y2], 'label': ...}}, got {b!r}")
        xyxy = b["xyxy"]
        if (not isinstance(xyxy, (list, tuple)) or len(xyxy) != 4
                or any(_float(v) is None or not math.isfinite(v) for v in xyxy)):
            raise InvalidInput(f"box {i}: xyxy must be 4 finite numbers, got {xyxy!r}")
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        if not (x2 > x1 and y2 > y1):
            raise InvalidInput(f"box {i}: xyxy {list(xyxy)} has non-positive size")
        label = b["label"]
        if not isinstance(label, str) or not label.strip():
            raise InvalidInput(f"box {i}: label must be a non-empty string, got {label!r}")
        out.append({"xyxy": [x1, y1, x2, y2], "label": label.strip()})
    return out


# --------------------------------------------------------------------------- export helpers


@dataclass(frozen=True)
class ExportSummary:
    """What :meth:`ReviewQueue.export` wrote: the folder, format, item count and items per label."""

    out: Path
    format: str
    items: int
    labels: dict[str, int]
    skipped: int = 0
    """Accepted or corrected items the format cannot hold (detect items in imagefolder, no label)."""

    def to_dict(self) -> dict[str, Any]:
        return {"out": os.fspath(self.out), "format": self.format, "items": self.items, "labels": self.labels,
                "skipped": self.skipped}


#: The longest exported name part, in UTF-8 bytes (file systems allow 255 bytes per name, not characters).
_MAX_NAME_BYTES = 150


def _cut(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8")[:max(0, max_bytes)].decode("utf-8", "ignore")


def _safe_name(text: str, fallback: str = "_", max_bytes: int = _MAX_NAME_BYTES) -> str:
    """``text`` as one path component of at most ``max_bytes`` UTF-8 bytes: separators, control
    and odd characters become ``_``; no leading dot."""
    name = re.sub(r"[^\w.\- ,'()&+]", "_", text).strip().lstrip(".")
    return _cut(name, max_bytes).rstrip() or fallback


def _export_filename(item: ReviewItem) -> str:
    """``<id>_<name><ext>``: the upload's name cut to 150 bytes, keeping an image extension."""
    from visor.io import IMAGE_EXTENSIONS

    name = _safe_name(Path(item.filename.replace("\\", "/")).name, "image", max_bytes=len(item.filename.encode()))
    stem, ext = os.path.splitext(name)
    if ext.lower() not in IMAGE_EXTENSIONS or not stem:
        stem, ext = name, _EXTENSIONS.get(item.media_type, ".jpg")
    return f"{item.id}_{_cut(stem, _MAX_NAME_BYTES - len(ext.encode()))}{ext}"


def _image_size(data: bytes) -> tuple[int, int]:
    """(width, height) as visor decodes the image: EXIF orientation applied."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            with contextlib.suppress(Exception):
                if img.getexif().get(0x0112) in (5, 6, 7, 8):
                    width, height = height, width
            return width, height
    except Exception as e:  # noqa: BLE001 - any PIL failure means the stored bytes are unusable
        raise InvalidInput(f"cannot read the size of a queued image: {e}") from None


def _jsonl_row(item: ReviewItem, rel: str, label: str) -> dict[str, str]:
    row = {"path": rel, "label": label, "review_id": str(item.id), "model": item.model, "status": item.status,
           "image": item.filename, "image_sha256": item.image_sha256}
    if item.predicted_label is not None:
        row["predicted_label"] = item.predicted_label
    if item.reviewer:
        row["reviewer"] = item.reviewer
    return row


def _prepare_out(out: Path, overwrite: bool, db_path: Path | None) -> Path:
    """A fresh temporary folder beside ``out``, after checking ``out`` may be (re)written.

    ``out`` may not be, contain or be inside visor's data folder, nor be or contain the
    database file: replacing it would delete the queue, the keys and the face collections.
    """
    from visor.io.files import SQLITE_SIDE_FILES, data_home
    from visor.io.outputs import check_output_folder

    protected = {data_home(): "visor's data folder"}
    if db_path is not None:
        protected.update({f"{db_path}{side}": "the database" for side in ("", *SQLITE_SIDE_FILES)})
    check_output_folder(out, protected=protected, what="export folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputConflict(f"{out} is not empty; choose another folder or overwrite it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    except OSError as e:
        raise InvalidInput(f"cannot write into {out.parent}: {e.strerror or e}") from None


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` (renames in one folder; the old ``out`` is removed last)."""
    old = None
    try:
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.rmdir(old)
            os.replace(out, old)
        os.replace(tmp, out)
    except OSError as e:
        if old is not None and not out.exists():
            with contextlib.suppress(OSError):
                os.replace(old, out)
        raise InvalidInput(f"cannot write {out}: {e.strerror or e}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- the queue


class ReviewQueue:
    """The review items of a :class:`ServiceDB`."""

    def __init__(self, db: ServiceDB, *, tasks: TaskRegistry | None = None) -> None:
        self.db = db
        self.kinds = review_tasks(tasks)
        """Task name -> ``"label"`` or ``"boxes"`` (:func:`review_tasks`)."""

    # ------------------------------------------------------------------ adding

    def add(
        self, *, image: bytes, filename: str, media_type: str, model: str, task: str, prediction: dict,
        labels: Sequence[str], reason: str, predicted_label: str | None = None, confidence: float | None = None,
    ) -> int:
        """Queue a prediction with its image; returns the item's id.

        ``prediction`` is the ``Classifications.to_dict()`` or ``Detections.to_dict()`` of the
        image. ``predicted_label`` and ``confidence`` default to the top classification, or the
        most confident detection (its label from ``labels`` by class id).
        """
        if task not in self.kinds:
            known = list(self.kinds)
            raise InvalidInput(f"unknown task {task!r}; expected one of {', '.join(known)}.{suggest(str(task), known)}")
        if not isinstance(image, (bytes, bytearray, memoryview)) or not len(image):
            raise InvalidInput("a review item needs the image bytes")
        if not isinstance(prediction, Mapping):
            raise InvalidInput(f"prediction must be a JSON object, got {type(prediction).__name__}")
        if not reason:
            raise InvalidInput("a review item needs a reason")
        image = bytes(image)
        labels = [str(x) for x in labels]
        top_label, top_conf = _predicted(self.kinds[task], prediction, labels)
        row = ReviewItemRow(
            created_at=utcnow(), model=model, task=task, filename=filename or "image", media_type=media_type,
            image=image, image_sha256=hashlib.sha256(image).hexdigest(), reason=reason,
            prediction=json.dumps(prediction), predicted_label=predicted_label if predicted_label is not None
            else top_label, confidence=confidence if confidence is not None else top_conf,
            labels=json.dumps(labels), status="pending",
        )
        with self.db.session() as s:
            s.add(row)
            s.flush()
            return row.id

    # ------------------------------------------------------------------ reading

    def list(self, status: str = "pending", limit: int = 50, offset: int = 0) -> list[ReviewItem]:
        """Items with ``status`` (a state, ``reviewed`` or ``all``), by id, ``limit`` from ``offset``."""
        if status not in LIST_STATUSES:
            raise InvalidInput(f"unknown status {status!r}; expected one of {', '.join(LIST_STATUSES)}."
                               f"{suggest(str(status), LIST_STATUSES)}")
        for name, value in (("limit", limit), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} must be a whole number of 0 or more, got {value!r}")
        query = select(ReviewItemRow).order_by(ReviewItemRow.id).limit(limit).offset(offset)
        if status == "reviewed":
            query = query.where(ReviewItemRow.status != "pending")
        elif status != "all":
            query = query.where(ReviewItemRow.status == status)
        with self.db.session(write=False) as s:
            return [_item(r) for r in s.scalars(query)]

    def _row(self, s: Any, item_id: int, *, image: bool = False, lock: bool = False) -> ReviewItemRow:
        """The item's row; ``lock``: SELECT ... FOR UPDATE, so a concurrent decision waits for this one
        (PostgreSQL; SQLite's write sessions already hold the database's write lock)."""
        if isinstance(item_id, bool) or not isinstance(item_id, int) or not 1 <= item_id <= _MAX_ID:
            raise ReviewItemNotFound(f"no review item {item_id!r}")
        query = select(ReviewItemRow).where(ReviewItemRow.id == item_id)
        if lock:
            query = query.with_for_update()
        if image:
            query = query.options(undefer(ReviewItemRow.image))
        row = s.scalar(query)
        if row is None:
            raise ReviewItemNotFound(f"no review item {item_id}")
        return row

    def get(self, item_id: int) -> ReviewItem:
        with self.db.session(write=False) as s:
            return _item(self._row(s, item_id))

    def image(self, item_id: int) -> tuple[bytes, str]:
        """The queued image's bytes and media type."""
        with self.db.session(write=False) as s:
            row = self._row(s, item_id, image=True)
            return bytes(row.image), row.media_type

    def counts(self) -> dict[str, int]:
        """Items per state, and ``reviewed`` (decided) and ``all``."""
        with self.db.session(write=False) as s:
            rows = s.execute(select(ReviewItemRow.status, func.count()).group_by(ReviewItemRow.status)).all()
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in rows:
            counts[status] = counts.get(status, 0) + n
        counts["reviewed"] = sum(n for k, n in counts.items() if k != "pending")
        counts["all"] = counts["reviewed"] + counts["pending"]
        return counts

    # ------------------------------------------------------------------ deciding

    def decide(
        self, item_id: int, action: str, label: str | None = None, reviewer: str | None = None,
        boxes: Sequence[Mapping[str, Any]] | None = None,
    ) -> ReviewItem:
        """Record a decision (replacing any earlier one) and return the updated item.

        ``accept``: the predicted label stands; ``correct``: ``label`` (required, except for a
        detect item given ``boxes``) replaces it, and for detect items ``boxes``
        (``[{"xyxy": [x1, y1, x2, y2], "label": ...}]``, possibly empty) replace the predicted
        boxes; ``reject``: the item is left out of exports.
        """
        if not isinstance(action, str) or action not in ACTIONS:
            raise InvalidInput(
                f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}.{suggest(str(action), ACTIONS)}"
            )
        if label is not None:
            if not isinstance(label, str):
                raise InvalidInput(f"label must be a string, got {type(label).__name__}")
            label = label.strip() or None
        if reviewer is not None and (not isinstance(reviewer, str) or len(reviewer) > 255):
            raise InvalidInput("reviewer must be a string of at most 255 characters")
        if action != "correct" and boxes is not None:
            raise InvalidInput(f"'{action}' takes no boxes; use 'correct' to change them")
        checked = None if boxes is None else _check_boxes(boxes)
        with self.db.session() as s:
            row = self._row(s, item_id, lock=True)  # read-modify-write: each decision applies whole
            if checked is not None and self.kinds.get(row.task) != "boxes":
                boxed = ", ".join(t for t, k in self.kinds.items() if k == "boxes")
                raise InvalidInput(f"review item {item_id} is a {row.task} item; boxes are for {boxed} items")
            if action == "accept" and label is not None and label != row.predicted_label:
                raise InvalidInput(
                    f"'accept' keeps the predicted label {row.predicted_label!r}; use 'correct' to set {label!r}"
                )
            if action == "correct":
                if label is None and checked:
                    label = checked[0]["label"]
                if label is None and checked is None:
                    raise InvalidInput(f"'correct' needs the right label for review item {item_id}")
            row.status = _DONE[action]
            row.label = {"accept": row.predicted_label, "correct": label, "reject": None}[action]
            row.boxes = None if checked is None else json.dumps(checked)
            row.reviewer = reviewer or None
            row.decided_at = utcnow()
            s.flush()
            return _item(row)

    # ------------------------------------------------------------------ export

    def _reviewed_with_images(self) -> list[tuple[ReviewItem, bytes]]:
        query = (select(ReviewItemRow).where(ReviewItemRow.status.in_(("accepted", "corrected")))
                 .order_by(ReviewItemRow.id).options(undefer(ReviewItemRow.image)))
        with self.db.session(write=False) as s:
            return [(_item(r), bytes(r.image)) for r in s.scalars(query)]

    def export(self, out: str | os.PathLike, format: str = "imagefolder", *,  # noqa: A002
               overwrite: bool = False) -> ExportSummary:
        """Write the accepted and corrected items as a dataset in ``out`` (see the module docs).

        ``out`` must be missing or empty unless ``overwrite``; the dataset is written to a
        temporary folder beside it and renamed into place. Raises ConfigError for an unknown
        format and InvalidInput when no item can be exported.
        """
        if format not in EXPORT_FORMATS:
            raise ConfigError(
                f"unknown export format {format!r}; expected one of {', '.join(EXPORT_FORMATS)}."
                f"{suggest(str(format), EXPORT_FORMATS)}"
            )
        out = Path(out)
        items = self._reviewed_with_images()
        tmp = _prepare_out(out, overwrite, self.db.path)
        try:
            writer = self._write_imagefolder if format == "imagefolder" else self._write_coco
            try:
                labels, written, skipped = writer(tmp, items)
            except OSError as e:
                raise OutputWriteError(f"cannot write the export {out}: {e.strerror or e}") from None
            if not written:
                raise InvalidInput(
                    f"nothing to export as {format}: {len(items)} accepted or corrected item(s), "
                    f"{skipped} of them unusable in this format"
                )
            _swap_in(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ExportSummary(out, format, written, dict(sorted(labels.items())), skipped)

    def _write_imagefolder(self, tmp: Path, items: list[tuple[ReviewItem, bytes]]) -> tuple[Counter, int, int]:
        labels: Counter = Counter()
        rows, skipped = [], 0
        for item, data in items:
            if self.kinds.get(item.task) != "label" or not item.label:
                skipped += 1
                continue
            folder = _safe_name(item.label)
            rel = f"{folder}/{_export_filename(item)}"
            atomic_write(tmp / rel, data, permissions=PRIVATE)
            rows.append(json.dumps(_jsonl_row(item, rel, item.label), ensure_ascii=False))
            labels[item.label] += 1
        atomic_write(tmp / "manifest.jsonl", "".join(r + "\n" for r in rows), permissions=PRIVATE)
        return labels, len(rows), skipped

    def _write_coco(self, tmp: Path, items: list[tuple[ReviewItem, bytes]]) -> tuple[Counter, int, int]:
        entries, skipped = [], 0
        for item, data in items:
            kind = self.kinds.get(item.task)
            if kind == "label":
                if not item.label:
                    skipped += 1
                    continue
                width, height = _image_size(data)
                boxes = [{"xyxy": [0.0, 0.0, float(width), float(height)], "label": item.label}]
            elif kind is None:  # a task this visor does not know (a row from elsewhere)
                skipped += 1
                continue
            else:
                width, height = _image_size(data)
                boxes = item.final_boxes()
            entries.append((item, data, width, height, boxes))
        names = sorted({b["label"] for *_, boxes in entries for b in boxes})
        category = {name: i for i, name in enumerate(names, 1)}
        images, annotations, labels = [], [], Counter()
        for item, data, width, height, boxes in entries:
            file_name = _export_filename(item)
            atomic_write(tmp / "images" / file_name, data, permissions=PRIVATE)
            images.append({"id": item.id, "file_name": file_name, "width": width, "height": height,
                           "visor_review": {"status": item.status, "model": item.model, "image": item.filename}})
            for b in boxes:
                x1, y1, x2, y2 = b["xyxy"]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": item.id, "category_id": category[b["label"]],
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                    "segmentation": [],
                })
                labels[b["label"]] += 1
        coco = {
            "info": {"description": "visor review queue export"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in category.items()],
        }
        from visor.data.formats.coco import COCO_FILE

        atomic_write(tmp / COCO_FILE, json.dumps(coco, ensure_ascii=False) + "\n", permissions=PRIVATE)
        return labels, len(entries), skipped
