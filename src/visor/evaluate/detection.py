"""Object detection metrics: COCO-style AP/AR, per-class AP, best-F1 operating point and a
detection confusion matrix (:class:`DetectionReport`).

The evaluator follows pycocotools' ``COCOeval`` for boxes (``iouType="bbox"``) step by step,
written with numpy instead of per-object Python loops:

* matching is per image and per class; detections are sorted by score (stable mergesort,
  ties keep their input order) and only the ``max(max_dets)`` best of each image and class
  take part;
* a detection takes the not-yet-matched ground truth box with the highest IoU at or above
  the threshold (ties go to the later box), non-ignored boxes first; crowd boxes
  (``data["iscrowd"]``) use IoU = intersection / detection area, may be matched any number of
  times and are always ignored: a detection matched to one counts neither as TP nor FP;
* an area range ignores the ground truth boxes whose ``data["area"]`` (default: box area) lies
  outside it, and the unmatched detections whose box area lies outside it;
* precision is interpolated at 101 recall points with the precision envelope; recall is the
  final recall; entries for a class without any non-ignored ground truth are -1 and the
  summary numbers average the entries > -1 (-1 when there is none).

Boxes are ``xyxy`` in pixels; the IoU uses widths ``x2 - x1`` with no ``+1``, as COCO does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visor.errors import InvalidInput
from visor.types.detections import Detections

AREA_RANGES: tuple[tuple[float, float], ...] = ((0.0, 1e10), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e10))
AREA_LABELS: tuple[str, ...] = ("all", "small", "medium", "large")
RECALL_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, 101)
DEFAULT_IOU_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
DEFAULT_MAX_DETS: tuple[int, int, int] = (1, 10, 100)
OPERATING_IOU = 0.5  # IoU of the best-F1 point, the confusion matrix and the PR curves
BACKGROUND = "background"
_EPS = np.spacing(1)
_STAT_NAMES = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


# --------------------------------------------------------------------------- IoU


def coco_box_iou(dt_xyxy: np.ndarray, gt_xyxy: np.ndarray, iscrowd: np.ndarray | None = None) -> np.ndarray:
    """``(D, G)`` IoU of detections against ground truth boxes, exactly as pycocotools' ``bbIou``.

    Computed in float64 from ``[x, y, w, h]`` (no ``+1``); for a crowd box (``iscrowd[g]``) the
    union is the detection's area alone. Boxes that do not overlap give 0.
    """
    d = np.asarray(dt_xyxy, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt_xyxy, dtype=np.float64).reshape(-1, 4)
    crowd = np.zeros(len(g), bool) if iscrowd is None else np.asarray(iscrowd, dtype=bool).reshape(-1)
    dw, dh = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    w = np.minimum((dw + d[:, 0])[:, None], (gw + g[:, 0])[None, :]) - np.maximum(d[:, None, 0], g[None, :, 0])
    h = np.minimum((dh + d[:, 1])[:, None], (gh + g[:, 1])[None, :]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = w * h
    da = (dw * dh)[:, None]
    union = np.where(crowd[None, :], da, da + (gw * gh)[None, :] - inter)
    overlap = (w > 0) & (h > 0)
    return np.divide(inter, union, out=np.zeros_like(inter), where=overlap & (union != 0))


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class DetectionReport:
    """Metrics of a detector over a labelled set of images.

    The twelve summary numbers are pycocotools' ``COCOeval.stats`` (see :meth:`stats`):
    ``ap`` is AP@[.5:.95] at ``max_dets[2]`` detections per image, ``ar1``/``ar10``/``ar100``
    the AR at ``max_dets[0..2]``. A number that is undefined (no ground truth in that area
    range, or 0.5/0.75 missing from ``iou_thresholds``) is -1, as in pycocotools.

    ``per_class_ap`` / ``per_class_ap50`` / ``pr_curves`` only hold the classes with at least
    one non-crowd ground truth box; ``support`` counts those boxes for every class.

    ``best_f1`` pools every class (micro) at IoU 0.5, area "all", ``max_dets[2]``: the
    confidence ``threshold`` (keep detections with ``confidence >= threshold``) that maximises
    F1, with its ``precision``, ``recall``, ``f1`` (the highest such threshold on ties; all
    zero and threshold 0 with no counted detection).

    ``confusion`` is ``(C+1, C+1)`` counts at IoU 0.5 and that threshold, rows the true class,
    columns the predicted class, index C the background: row C holds false positives,
    column C missed ground truth. Its diagonal holds the COCO matches (true positives);
    a remaining detection is then matched greedily (highest score first) to the unmatched
    ground truth box of any class with the highest IoU >= 0.5. Crowd boxes, detections matched
    to them and detections beyond ``max_dets[2]`` per image and class are left out.

    ``precision`` ``(T, 101, C, 4, M)`` and ``recall`` ``(T, C, 4, M)`` are pycocotools'
    ``eval["precision"]`` / ``eval["recall"]`` (areas in :data:`AREA_LABELS` order).
    """

    labels: tuple[str, ...]
    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float
    per_class_ap: dict[str, float]
    per_class_ap50: dict[str, float]
    best_f1: dict[str, float]
    confusion: np.ndarray
    pr_curves: dict[str, tuple[np.ndarray, np.ndarray]]
    support: dict[str, int] = field(default_factory=dict)
    num_images: int = 0
    num_predictions: int = 0
    iou_thresholds: tuple[float, ...] = DEFAULT_IOU_THRESHOLDS
    max_dets: tuple[int, ...] = DEFAULT_MAX_DETS
    precision: np.ndarray = field(default_factory=lambda: np.zeros((0, 101, 0, 4, 0)), repr=False)
    recall: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 4, 0)), repr=False)

    def stats(self) -> np.ndarray:
        """The 12 numbers in pycocotools' ``COCOeval.stats`` order."""
        return np.array([getattr(self, name) for name in _STAT_NAMES], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, ints, lists and dicts (not the raw precision/recall arrays)."""
        return {
            "labels": list(self.labels),
            "num_images": self.num_images,
            "num_predictions": self.num_predictions,
            "iou_thresholds": list(self.iou_thresholds),
            "max_dets": list(self.max_dets),
            **{name: float(getattr(self, name)) for name in _STAT_NAMES},
            "per_class_ap": dict(self.per_class_ap),
            "per_class_ap50": dict(self.per_class_ap50),
            "support": dict(self.support),
            "best_f1": dict(self.best_f1),
            "confusion": np.asarray(self.confusion).tolist(),
            "pr_curves": {
                name: {"recall": r.tolist(), "precision": p.tolist()} for name, (r, p) in self.pr_curves.items()
            },
        }

    def format_table(self) -> str:
        """pycocotools' summary lines, the best-F1 point, then a per-class AP table."""
        iou = self.iou_thresholds
        span = f"{iou[0]:0.2f}:{iou[-1]:0.2f}"
        m = self.max_dets
        rows = [
            ("Average Precision", "(AP)", span, "all", m[2], self.ap),
            ("Average Precision", "(AP)", "0.50", "all", m[2], self.ap50),
            ("Average Precision", "(AP)", "0.75", "all", m[2], self.ap75),
            ("Average Precision", "(AP)", span, "small", m[2], self.ap_small),
            ("Average Precision", "(AP)", span, "medium", m[2], self.ap_medium),
            ("Average Precision", "(AP)", span, "large", m[2], self.ap_large),
            ("Average Recall", "(AR)", span, "all", m[0], self.ar1),
            ("Average Recall", "(AR)", span, "all", m[1], self.ar10),
            ("Average Recall", "(AR)", span, "all", m[2], self.ar100),
            ("Average Recall", "(AR)", span, "small", m[2], self.ar_small),
            ("Average Recall", "(AR)", span, "medium", m[2], self.ar_medium),
            ("Average Recall", "(AR)", span, "large", m[2], self.ar_large),
        ]
        lines = [f"images: {self.num_images}   predictions: {self.num_predictions}   classes: {len(self.labels)}"]
        lines += [
            f" {title:<18} {kind} @[ IoU={iou_s:<9} | area={area:>6s} | maxDets={md:>3d} ] = {value:0.3f}"
            for title, kind, iou_s, area, md, value in rows
        ]
        f1 = self.best_f1
        lines.append(
            f"best F1 @ IoU 0.50: threshold {f1['threshold']:.4f}   precision {f1['precision']:.4f}   "
            f"recall {f1['recall']:.4f}   f1 {f1['f1']:.4f}"
        )
        lines.append("")
        width = max([len("class"), *(len(str(name)) for name in self.labels)])
        lines.append(f"{'class':<{width}}  {'gt':>7}  {'AP':>7}  {'AP50':>7}")
        lines.append("-" * (width + 2 + 3 * 9 - 2))
        for name in self.labels:
            ap = self.per_class_ap.get(name)
            ap50 = self.per_class_ap50.get(name)
            ap_s = f"{ap:>7.4f}" if ap is not None else f"{'-':>7}"
            ap50_s = f"{ap50:>7.4f}" if ap50 is not None else f"{'-':>7}"
            lines.append(f"{name:<{width}}  {self.support.get(name, 0):>7d}  {ap_s}  {ap50_s}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- validation


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str):
        raise InvalidInput("labels must be a sequence of class names, not a string")
    names = tuple(str(s) for s in labels)
    if not names:
        raise InvalidInput("labels must name at least one class")
    if len(set(names)) != len(names):
        dup = next(s for s in names if names.count(s) > 1)
        raise InvalidInput(f"labels must be unique, {dup!r} appears more than once")
    return names


def _check_images(items: Sequence[Detections], what: str, num_classes: int) -> list[Detections]:
    out = list(items)
    for i, d in enumerate(out):
        if not isinstance(d, Detections):
            raise InvalidInput(f"{what}[{i}] is a {type(d).__name__}, expected visor.types.Detections")
        if len(d) and (d.class_id.min() < 0 or d.class_id.max() >= num_classes):
            raise InvalidInput(f"{what}[{i}] has a class_id outside [0, {num_classes})")
        if not np.isfinite(d.xyxy).all():
            raise InvalidInput(f"{what}[{i}] has non-finite box coordinates")
    return out


def _check_thresholds(iou_thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    thr = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if thr.size == 0 or not np.isfinite(thr).all() or thr.min() < 0 or thr.max() > 1:
        raise InvalidInput("iou_thresholds must be a non-empty sequence of values in [0, 1]")
    return thr


def _check_max_dets(max_dets: Sequence[int]) -> tuple[int, int, int]:
    values = [int(m) for m in max_dets]
    if len(values) != 3 or any(m != v or m < 1 for m, v in zip(values, max_dets, strict=True)):
        raise InvalidInput(f"max_dets must be three positive integers, got {tuple(max_dets)}")
    a, b, c = sorted(values)
    return a, b, c


def _gt_arrays(gt: Detections) -> tuple[np.ndarray, np.ndarray]:
    """(iscrowd bool, area float64) of one image's ground truth."""
    n = len(gt)
    crowd = np.asarray(gt.data["iscrowd"]).astype(bool).reshape(-1) if "iscrowd" in gt.data else np.zeros(n, bool)
    if "area" in gt.data:
        area = np.asarray(gt.data["area"], dtype=np.float64).reshape(-1)
    else:
        xyxy = gt.xyxy.astype(np.float64)
        area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    return crowd, area


# --------------------------------------------------------------------------- matching


def _last_argmax(values: np.ndarray) -> np.ndarray:
    """Index of the last maximum along the last axis."""
    return values.shape[-1] - 1 - np.argmax(values[..., ::-1], axis=-1)


def _match(iou: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Greedy COCO matching of score-sorted detections, for every area range and threshold at once.

    ``iou`` is ``(D, G)``, ``gt_ignore`` ``(A, G)``, ``crowd`` ``(G,)``, ``thresholds`` ``(T,)``.
    Returns ``(A, T, D)`` int64: the matched ground truth index, -1 for none.
    """
    d_count, g_count = iou.shape
    a_count, t_count = gt_ignore.shape[0], len(thresholds)
    match = np.full((a_count, t_count, d_count), -1, dtype=np.int64)
    if g_count == 0 or d_count == 0:
        return match
    thr = np.minimum(thresholds, 1 - 1e-10)[None, :, None]
    taken = np.zeros((a_count, t_count, g_count), dtype=bool)
    kept = ~gt_ignore[:, None, :]
    ignored = gt_ignore[:, None, :]
    a_idx, t_idx = np.indices((a_count, t_count))
    for d in range(d_count):
        row = iou[d][None, None, :]
        ok = (~taken | crowd[None, None, :]) & (row >= thr)
        ok_kept = ok & kept
        ok_ignored = ok & ignored
        best_kept = _last_argmax(np.where(ok_kept, row, -1.0))
        best_ignored = _last_argmax(np.where(ok_ignored, row, -1.0))
        m = np.where(ok_kept.any(-1), best_kept, np.where(ok_ignored.any(-1), best_ignored, -1))
        match[:, :, d] = m
        hit = m >= 0
        taken[a_idx[hit], t_idx[hit], m[hit]] = True
    return match


@dataclass(frozen=True)
class _Eval:
    """pycocotools' ``evaluateImg`` result for one image and class, for all area ranges."""

    image: int
    det_index: np.ndarray  # (D,) indices into the image's predictions, score-sorted, truncated
    scores: np.ndarray  # (D,)
    matched: np.ndarray  # (A, T, D) bool
    ignored: np.ndarray  # (A, T, D) bool
    gt_match: np.ndarray  # (A, T, D) int64, index into the image's ground truth, -1 for none
    num_kept_gt: np.ndarray  # (A,) non-ignored ground truth boxes


def _evaluate_image_class(
    image: int,
    gt: Detections,
    gt_crowd: np.ndarray,
    gt_area: np.ndarray,
    gt_index: np.ndarray,
    pred: Detections,
    pred_index: np.ndarray,
    thresholds: np.ndarray,
    max_det: int,
) -> _Eval:
    order = np.argsort(-pred.confidence[pred_index], kind="mergesort")[:max_det]
    det_index = pred_index[order]
    dt_xyxy = pred.xyxy[det_index]
    gt_xyxy = gt.xyxy[gt_index]
    crowd = gt_crowd[gt_index]
    area = gt_area[gt_index]
    lo = np.array([r[0] for r in AREA_RANGES])[:, None]
    hi = np.array([r[1] for r in AREA_RANGES])[:, None]
    gt_ignore = crowd[None, :] | (area[None, :] < lo) | (area[None, :] > hi)  # (A, G)

    iou = coco_box_iou(dt_xyxy, gt_xyxy, crowd)
    match = _match(iou, gt_ignore, crowd, thresholds)  # (A, T, D)
    hit = match >= 0
    a_idx = np.arange(len(AREA_RANGES))[:, None, None]
    dt_ignore = np.zeros_like(hit)
    if hit.any():
        dt_ignore = np.where(hit, gt_ignore[a_idx, np.maximum(match, 0)], False)
    d = dt_xyxy.astype(np.float64)
    dt_area = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    outside = (dt_area[None, :] < lo) | (dt_area[None, :] > hi)  # (A, D)
    dt_ignore = dt_ignore | (~hit & outside[:, None, :])
    gt_match = np.where(hit, gt_index[np.maximum(match, 0)], -1) if len(gt_index) else match
    return _Eval(
        image=image,
        det_index=det_index,
        scores=pred.confidence[det_index],
        matched=hit,
        ignored=dt_ignore,
        gt_match=gt_match,
        num_kept_gt=(~gt_ignore).sum(axis=1),
    )


# --------------------------------------------------------------------------- accumulation


def _accumulate_class(
    evals: list[_Eval], thresholds: np.ndarray, max_dets: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``accumulate`` for one class: precision ``(T, R, A, M)``, recall ``(T, A, M)``."""
    t_count, r_count, a_count, m_count = len(thresholds), len(RECALL_THRESHOLDS), len(AREA_RANGES), len(max_dets)
    precision = -np.ones((t_count, r_count, a_count, m_count))
    recall = -np.ones((t_count, a_count, m_count))
    if not evals:
        return precision, recall
    scores = np.concatenate([e.scores for e in evals])
    rank = np.concatenate([np.arange(len(e.scores)) for e in evals])
    matched = np.concatenate([e.matched for e in evals], axis=2)
    ignored = np.concatenate([e.ignored for e in evals], axis=2)
    npig = np.sum([e.num_kept_gt for e in evals], axis=0)
    for m, max_det in enumerate(max_dets):
        sel = np.flatnonzero(rank < max_det)
        order = sel[np.argsort(-scores[sel], kind="mergesort")]
        dtm = matched[:, :, order]
        dti = ignored[:, :, order]
        tp_sum = np.cumsum(dtm & ~dti, axis=2).astype(np.float64)
        fp_sum = np.cumsum(~dtm & ~dti, axis=2).astype(np.float64)
        nd = len(order)
        for a in range(a_count):
            if npig[a] == 0:
                continue
            rc = tp_sum[a] / npig[a]  # (T, nd)
            pr = tp_sum[a] / (fp_sum[a] + tp_sum[a] + _EPS)
            recall[:, a, m] = rc[:, -1] if nd else 0.0
            envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            for t in range(t_count):
                inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                q = np.zeros(r_count)
                valid = inds < nd
                q[valid] = envelope[t, inds[valid]]
                precision[t, :, a, m] = q
    return precision, recall


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def _threshold_index(thresholds: np.ndarray, value: float) -> int | None:
    hits = np.flatnonzero(np.isclose(thresholds, value, rtol=0.0, atol=1e-9))
    return int(hits[0]) if hits.size else None


# --------------------------------------------------------------------------- best F1 and confusion


def _best_f1(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> dict[str, float]:
    """Micro precision/recall/F1 at the confidence threshold that maximises F1."""
    if scores.size == 0:
        return {"threshold": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    tp_sum = np.cumsum(tp[order]).astype(np.float64)
    count = np.arange(1, len(s) + 1, dtype=np.float64)
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last detection of each distinct score
    tp_at, n_at = tp_sum[last], count[last]
    precision = tp_at / n_at
    recall = tp_at / num_gt if num_gt else np.zeros_like(tp_at)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return {
        "threshold": float(s[last[best]]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "f1": float(f1[best]),
    }


def _confusion(
    ground_truth: list[Detections],
    predictions: list[Detections],
    crowds: list[np.ndarray],
    status: list[np.ndarray],
    threshold: float,
    num_classes: int,
) -> np.ndarray:
    """``(C+1, C+1)`` counts; ``status`` per prediction: matched gt index, -1 unmatched, -2 left out."""
    c = num_classes
    cm = np.zeros((c + 1, c + 1), dtype=np.int64)
    for gt, pred, crowd, st in zip(ground_truth, predictions, crowds, status, strict=True):
        keep = (pred.confidence >= threshold) & (st != -2)
        gt_used = crowd.copy()  # crowd boxes never enter the matrix
        tp = keep & (st >= 0)
        np.add.at(cm, (pred.class_id[tp], pred.class_id[tp]), 1)
        gt_used[st[tp]] = True
        fp = np.flatnonzero(keep & (st == -1))
        fp = fp[np.argsort(-pred.confidence[fp], kind="mergesort")]
        if len(fp) and len(gt):
            iou = coco_box_iou(pred.xyxy[fp], gt.xyxy)
        for n, d in enumerate(fp):
            g = -1
            if len(gt):
                row = np.where(gt_used, -1.0, iou[n])
                g = int(np.argmax(row))
                if row[g] < OPERATING_IOU:
                    g = -1
            if g >= 0:
                gt_used[g] = True
                cm[gt.class_id[g], pred.class_id[d]] += 1
            else:
                cm[c, pred.class_id[d]] += 1
        missed = ~gt_used
        np.add.at(cm, (gt.class_id[missed], c), 1)
    return cm


# --------------------------------------------------------------------------- evaluator


def _checked(ground_truth: Sequence[Detections], predictions: Sequence[Detections],
             labels: Sequence[str]) -> tuple[list[str], list[Detections], list[Detections]]:
    names = _check_labels(labels)
    gts = _check_images(ground_truth, "ground_truth", len(names))
    preds = _check_images(predictions, "predictions", len(names))
    if len(gts) != len(preds):
        raise InvalidInput(f"{len(gts)} ground truth images but {len(preds)} prediction images")
    for i, p in enumerate(preds):
        if not np.isfinite(p.confidence).all():
            raise InvalidInput(f"predictions[{i}] has non-finite confidences")
    return names, gts, preds


def _evaluate_image(i: int, gt: Detections, pred: Detections, thresholds: np.ndarray,
                    max_det: int) -> tuple[np.ndarray, dict[int, _Eval]]:
    """Image ``i``'s crowd flags and its matching for each class present in it (ascending class id)."""
    crowd, area = _gt_arrays(gt)
    if len(crowd) != len(gt) or len(area) != len(gt):
        raise InvalidInput(f"ground_truth[{i}] data['iscrowd'] / data['area'] must have one value per box")
    return crowd, {int(k): _evaluate_image_class(i, gt, crowd, area, np.flatnonzero(gt.class_id == k), pred,
                                                 np.flatnonzero(pred.class_id == k), thresholds, max_det)
                   for k in np.union1d(gt.class_id, pred.class_id)}



def evaluate_detections(
    ground_truth: Sequence[Detections],
    predictions: Sequence[Detections],
    labels: Sequence[str],
    *,
    iou_thresholds: Sequence[float] | np.ndarray = DEFAULT_IOU_THRESHOLDS,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
) -> DetectionReport:
    """Evaluate per-image predictions against ground truth, aligned by index, the way pycocotools does.

    Ground truth needs ``xyxy`` and ``class_id``, and may carry ``data["iscrowd"]`` (bool) and
    ``data["area"]`` (COCO's annotation area, used for the small/medium/large ranges; default the
    box area); its ``confidence`` is not used. Predictions need ``xyxy``, ``confidence`` and
    ``class_id``. ``labels`` names the classes ``0..C-1``. Images are pooled in the order given
    (it only matters for exactly equal scores). See :class:`DetectionReport` for the results.
    """
    names, gts, preds = _checked(ground_truth, predictions, labels)
    c = len(names)
    thr_user = _check_thresholds(iou_thresholds)
    mdets = _check_max_dets(max_dets)
    t50 = _threshold_index(thr_user, OPERATING_IOU)
    thresholds = thr_user if t50 is not None else np.append(thr_user, OPERATING_IOU)
    t_op = t50 if t50 is not None else len(thr_user)

    crowds, status = [], []
    per_class: list[list[_Eval]] = [[] for _ in range(c)]
    support = np.zeros(c, dtype=np.int64)
    for i, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        crowd, evals = _evaluate_image(i, gt, pred, thresholds, mdets[-1])
        crowds.append(crowd)
        np.add.at(support, gt.class_id[~crowd], 1)
        st = np.full(len(pred), -2, dtype=np.int64)
        for k, e in evals.items():
            per_class[k].append(e)
            st[e.det_index] = np.where(e.ignored[0, t_op], -2, e.gt_match[0, t_op])
        status.append(st)

    t_count = len(thr_user)
    precision = -np.ones((t_count, len(RECALL_THRESHOLDS), c, len(AREA_RANGES), len(mdets)))
    recall = -np.ones((t_count, c, len(AREA_RANGES), len(mdets)))
    pr_curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k in range(c):
        p_k, r_k = _accumulate_class(per_class[k], thresholds, mdets)
        precision[:, :, k] = p_k[:t_count]
        recall[:, k] = r_k[:t_count]
        if p_k[t_op, 0, 0, -1] > -1:
            pr_curves[names[k]] = (RECALL_THRESHOLDS.copy(), p_k[t_op, :, 0, -1].copy())

    def ap(t: int | None = None, area: int = 0) -> float:
        s = precision[:, :, :, area, -1] if t is None else precision[t, :, :, area, -1]
        return _mean_valid(s)

    def ar(area: int = 0, m: int = -1) -> float:
        return _mean_valid(recall[:, :, area, m])

    t75 = _threshold_index(thr_user, 0.75)
    per_class_ap = {names[k]: _mean_valid(precision[:, :, k, 0, -1]) for k in range(c)}
    per_class_ap50 = {names[k]: _mean_valid(precision[t50, :, k, 0, -1]) for k in range(c)} if t50 is not None else {}

    # micro best-F1 over all classes at IoU 0.5, area "all", max_dets[-1]
    all_evals = [e for evals in per_class for e in evals]
    if all_evals:
        scores = np.concatenate([e.scores for e in all_evals])
        counted = np.concatenate([~e.ignored[0, t_op] for e in all_evals])
        tp = np.concatenate([e.matched[0, t_op] for e in all_evals])
        best = _best_f1(scores[counted], tp[counted], int(support.sum()))
    else:
        best = _best_f1(np.zeros(0), np.zeros(0, bool), int(support.sum()))
    confusion = _confusion(gts, preds, crowds, status, best["threshold"], c)

    return DetectionReport(
        labels=names,
        ap=ap(),
        ap50=ap(t50) if t50 is not None else -1.0,
        ap75=ap(t75) if t75 is not None else -1.0,
        ap_small=ap(area=1),
        ap_medium=ap(area=2),
        ap_large=ap(area=3),
        ar1=ar(m=0),
        ar10=ar(m=1),
        ar100=ar(m=2),
        ar_small=ar(area=1),
        ar_medium=ar(area=2),
        ar_large=ar(area=3),
        per_class_ap={k: v for k, v in per_class_ap.items() if v > -1},
        per_class_ap50={k: v for k, v in per_class_ap50.items() if v > -1},
        best_f1=best,
        confusion=confusion,
        pr_curves=pr_curves,
        support={names[k]: int(support[k]) for k in range(c)},
        num_images=len(gts),
        num_predictions=int(sum(len(p) for p in preds)),
        iou_thresholds=tuple(float(t) for t in thr_user),
        max_dets=mdets,
        precision=precision,
        recall=recall,
    )


class ResampledAP50:
    """AP50 of resamples of the images: what ``evaluate_detections(...).ap50`` gives for the resampled
    lists, exactly, for bootstrap intervals. Each image is matched with its ground truth once, here;
    a resample only pools the matches of the images it draws (in its order, repeats included), so a
    resample costs about a tenth of a whole evaluation."""

    def __init__(self, ground_truth: Sequence[Detections], predictions: Sequence[Detections],
                 labels: Sequence[str], *, max_dets: Sequence[int] = DEFAULT_MAX_DETS) -> None:
        names, gts, preds = _checked(ground_truth, predictions, labels)
        self.num_classes = len(names)
        self._thresholds = np.array([OPERATING_IOU])
        self._max_dets = _check_max_dets(max_dets)
        self._evals = [_evaluate_image(i, gt, pred, self._thresholds, self._max_dets[-1])[1]
                       for i, (gt, pred) in enumerate(zip(gts, preds, strict=True))]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """AP50 of each row of ``(B, n)`` image indices: ``(B,)``."""
        rows = np.atleast_2d(np.asarray(rows, dtype=np.int64))
        out = np.empty(len(rows))
        for r, row in enumerate(rows):
            per_class: list[list[_Eval]] = [[] for _ in range(self.num_classes)]
            for i in row.tolist():
                for k, e in self._evals[i].items():
                    per_class[k].append(e)
            precision = np.stack([_accumulate_class(evals, self._thresholds, self._max_dets)[0][0, :, 0, -1]
                                  for evals in per_class], axis=1)  # (R, C): area "all", max_dets[-1]
            out[r] = _mean_valid(precision)
        return out
