"""Multi-object tracking metrics: CLEAR MOT (MOTA, MOTP, switches, fragmentations, MT/PT/ML) and the ID
measures (IDF1, IDP, IDR), computed as py-motmetrics 1.4.0 computes them (numpy + scipy only).

Per frame (every frame with a ground-truth or a predicted box, ascending), the distance of a pair is
``1 - IoU``; pairs with ``IoU < iou_threshold`` cannot match. Pairs matched in an earlier frame are kept when
still within the threshold; the rest are matched by a min-cost (Hungarian) assignment. A ground-truth id
matched to a different prediction id than its last match is an ID switch. Unmatched ground truth boxes
are misses (FN), unmatched predictions false positives (FP).

- ``mota = 1 - (FN + IDsw + FP) / num_objects``; ``motp`` is py-motmetrics' MOTP: the mean *distance*
  ``1 - IoU`` over matched pairs (lower is better; the mean IoU of the matches is ``1 - motp``).
- A ground-truth track is mostly tracked (MT) when matched in >= 80% of its boxes, mostly lost (ML) under
  20%, partially tracked (PT) in between; a fragmentation is a run of misses between two matched boxes
  of the same ground-truth track.
- IDF1/IDP/IDR: ground-truth ids and prediction ids are paired one to one by a global min-cost bipartite
  matching that maximises the number of frames where paired boxes are within the threshold (IDTP).

A ratio whose denominator is 0 is NaN (as py-motmetrics gives).

HOTA (Luiten et al., IJCV 2020) is computed as TrackEval's ``HOTA`` metric computes it (checked against the
``trackeval`` package on MOT15 and synthetic sequences): for each localisation threshold alpha in 0.05, 0.10,
..., 0.95, detections are matched per frame by a Hungarian assignment maximising ``IoU x`` the global
alignment of their two ids (a soft Jaccard of the id pair over the whole sequence); a match counts at alpha
when its IoU >= alpha. ``DetA = TP / (TP + FN + FP)``, ``AssA`` = the mean over true positives of the Jaccard
``TPA / (TPA + FNA + FPA)`` of their id pair, ``HOTA = sqrt(DetA * AssA)``; the reported figures are means over
the 19 alphas. HOTA does not use ``iou_threshold``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from visor.data.mot import MotTracks
from visor.errors import InvalidInput

MOSTLY_TRACKED = 0.8
MOSTLY_LOST = 0.2


@dataclass(frozen=True)
class TrackingReport:
    """CLEAR MOT and ID metrics of a tracker's output against ground truth (see the module)."""

    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    precision: float
    recall: float
    num_switches: int
    num_fragmentations: int
    mostly_tracked: int
    partially_tracked: int
    mostly_lost: int
    num_false_positives: int
    num_misses: int
    num_matches: int
    num_frames: int
    num_objects: int
    num_predictions: int
    num_unique_objects: int
    idtp: int
    idfp: int
    idfn: int
    iou_threshold: float
    hota: float = float("nan")
    deta: float = float("nan")
    assa: float = float("nan")
    loca: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The fields, JSON-safe (NaN as None)."""
        return {k: _json_number(v) for k, v in asdict(self).items()}

    def format_table(self) -> str:
        """The metrics as aligned text, one a line (ratios with 6 decimals; n/a where undefined)."""
        def f(x: float) -> str:
            return "n/a" if math.isnan(x) else f"{x:.6f}"

        n_gt = self.mostly_tracked + self.partially_tracked + self.mostly_lost
        rows = [
            ("MOTA", f(self.mota)),
            ("MOTP", f"{f(self.motp)}  (mean 1 - IoU of the matches)"),
            ("IDF1", f(self.idf1)),
            ("IDP", f(self.idp)),
            ("IDR", f(self.idr)),
            ("HOTA", f"{f(self.hota)}  (DetA {f(self.deta)}, AssA {f(self.assa)}, LocA {f(self.loca)})"),
            ("precision", f(self.precision)),
            ("recall", f(self.recall)),
            ("ID switches", str(self.num_switches)),
            ("false positives", str(self.num_false_positives)),
            ("misses (FN)", str(self.num_misses)),
            ("MT / PT / ML", f"{self.mostly_tracked} / {self.partially_tracked} / {self.mostly_lost} "
                             f"of {n_gt} ground-truth tracks"),
            ("fragmentations", str(self.num_fragmentations)),
            ("frames", str(self.num_frames)),
            ("boxes", f"{self.num_objects} ground truth, {self.num_predictions} predicted"),
            ("IoU threshold", f"{self.iou_threshold:g}"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


@dataclass(frozen=True, eq=False)
class HotaReport:
    """HOTA and its parts at each localisation threshold ``alphas`` (arrays of 19), and their means."""

    alphas: np.ndarray
    hota: np.ndarray
    deta: np.ndarray
    assa: np.ndarray
    detre: np.ndarray
    detpr: np.ndarray
    assre: np.ndarray
    asspr: np.ndarray
    loca: np.ndarray
    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    means: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        names = ("hota", "deta", "assa", "detre", "detpr", "assre", "asspr", "loca")
        object.__setattr__(self, "means", {n: float(np.mean(getattr(self, n))) for n in names})

    def to_dict(self) -> dict[str, Any]:
        by_alpha = {n: getattr(self, n).tolist() for n in (*self.means, "tp", "fn", "fp")}
        return {**self.means, "alphas": self.alphas.tolist(), "by_alpha": by_alpha}


def _json_number(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of ``x, y, w, h`` boxes (0 where they do not intersect)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    a_min, a_max = a[..., :2], a[..., :2] + a[..., 2:]
    b_min, b_max = b[..., :2], b[..., :2] + b[..., 2:]
    i_vol = np.prod(np.maximum(np.minimum(a_max, b_max) - np.maximum(a_min, b_min), 0), axis=-1)
    a_vol = np.prod(np.maximum(a_max - a_min, 0), axis=-1)
    b_vol = np.prod(np.maximum(b_max - b_min, 0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(i_vol == 0, 0.0, i_vol / (a_vol + b_vol - i_vol))


def _assign(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-cost assignment where NaN/inf entries are forbidden (py-motmetrics' scipy solver, exactly)."""
    if costs.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    valid = np.isfinite(costs)
    if valid.all():
        finite = costs
    elif not valid.any():
        finite = np.zeros_like(costs)
    else:
        c = np.abs(costs[valid]).max() + 1
        finite = np.where(valid, costs, 2 * min(costs.shape) * c + 1)
    rows, cols = linear_sum_assignment(finite)
    keep = valid[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def _divide(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def evaluate_tracking(gt: MotTracks, pred: MotTracks, *, iou_threshold: float = 0.5) -> TrackingReport:
    """Score ``pred`` (a tracker's boxes) against ``gt`` (see the module for the definitions)."""
    if not isinstance(gt, MotTracks) or not isinstance(pred, MotTracks):
        raise InvalidInput("evaluate_tracking takes two MotTracks (see visor.data.mot.read_mot)")
    thr = float(iou_threshold)
    if not 0.0 < thr <= 1.0:
        raise InvalidInput(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    max_dist = 1.0 - thr
    gt_frames, pred_frames = gt.per_frame(), pred.per_frame()
    frames = sorted(set(gt_frames) | set(pred_frames))

    last: dict[int, int] = {}  # ground-truth id -> prediction id of its latest match
    tracked: dict[int, list[bool]] = {}  # ground-truth id -> matched or not, per appearance
    pair_hits: dict[tuple[int, int], int] = {}  # (gt id, pred id) -> frames within the threshold
    switches = matches = false_pos = misses = 0
    dist_sum = 0.0

    for f in frames:
        g, p = gt_frames.get(f), pred_frames.get(f)
        oids = [int(i) for i in g.ids] if g is not None else []
        hids = [int(i) for i in p.ids] if p is not None else []
        o_done = np.zeros(len(oids), bool)
        h_done = np.zeros(len(hids), bool)
        status = [False] * len(oids)
        if oids and hids:
            dists = 1.0 - box_iou_xywh(g.boxes, p.boxes)
            dists[dists > max_dist] = np.nan
            for i, j in zip(*np.nonzero(np.isfinite(dists)), strict=True):
                key = (oids[i], hids[j])
                pair_hits[key] = pair_hits.get(key, 0) + 1
            # 1. keep the previous frame's correspondences that are still valid
            for i, o in enumerate(oids):
                if o not in last:
                    continue
                free = [j for j, h in enumerate(hids) if not h_done[j] and h == last[o]]
                if free and np.isfinite(dists[i, free[0]]):
                    j = free[0]
                    o_done[i] = h_done[j] = True
                    status[i] = True
                    matches += 1
                    dist_sum += dists[i, j]
            # 2. min-cost assignment of the rest
            dists[o_done, :] = np.nan
            dists[:, h_done] = np.nan
            for i, j in zip(*_assign(dists), strict=True):
                o, h = oids[i], hids[j]
                if o in last and last[o] != h:
                    switches += 1
                else:
                    matches += 1
                last[o] = h
                o_done[i] = h_done[j] = True
                status[i] = True
                dist_sum += dists[i, j]
        misses += int((~o_done).sum())
        false_pos += int((~h_done).sum())
        for o, s in zip(oids, status, strict=True):
            tracked.setdefault(o, []).append(s)

    num_objects = len(gt)
    num_predictions = len(pred)
    detections = matches + switches
    ratios = {o: sum(s) / len(s) for o, s in tracked.items()}
    fragmentations = 0
    for s in tracked.values():
        hit = np.flatnonzero(s)
        if len(hit):
            span = np.asarray(s[hit[0]: hit[-1] + 1])
            fragmentations += int(np.count_nonzero(span[:-1] & ~span[1:]))

    idtp, idfn, idfp = _id_counts(gt, pred, pair_hits)
    h = evaluate_hota(gt, pred).means
    return TrackingReport(
        mota=1.0 - _divide(misses + switches + false_pos, num_objects) if num_objects else float("nan"),
        motp=_divide(dist_sum, detections),
        idf1=_divide(2 * idtp, num_objects + num_predictions),
        idp=_divide(idtp, idtp + idfp),
        idr=_divide(idtp, idtp + idfn),
        precision=_divide(detections, detections + false_pos),
        recall=_divide(detections, num_objects),
        num_switches=switches,
        num_fragmentations=fragmentations,
        mostly_tracked=sum(r >= MOSTLY_TRACKED for r in ratios.values()),
        partially_tracked=sum(MOSTLY_LOST <= r < MOSTLY_TRACKED for r in ratios.values()),
        mostly_lost=sum(r < MOSTLY_LOST for r in ratios.values()),
        num_false_positives=false_pos,
        num_misses=misses,
        num_matches=matches,
        num_frames=len(frames),
        num_objects=num_objects,
        num_predictions=num_predictions,
        num_unique_objects=len(tracked),
        idtp=idtp,
        idfp=idfp,
        idfn=idfn,
        iou_threshold=thr,
        hota=h["hota"],
        deta=h["deta"],
        assa=h["assa"],
        loca=h["loca"],
    )


def _id_counts(gt: MotTracks, pred: MotTracks, pair_hits: dict[tuple[int, int], int]) -> tuple[int, int, int]:
    """IDTP, IDFN, IDFP of the global id matching (py-motmetrics' ``id_global_assignment``)."""
    oids, ocount = np.unique(gt.ids, return_counts=True)  # one box per (frame, id): boxes = frames
    hids, hcount = np.unique(pred.ids, return_counts=True)
    no, nh = len(oids), len(hids)
    fp = np.zeros((no + nh, no + nh))
    fn = np.zeros((no + nh, no + nh))
    fp[no:, :nh] = np.nan
    fn[:no, nh:] = np.nan
    fn[:no, :nh] = ocount[:, None]
    fn[np.arange(no), nh + np.arange(no)] = ocount
    fp[:no, :nh] = hcount[None, :]
    fp[no + np.arange(nh), np.arange(nh)] = hcount
    o_index = {int(o): k for k, o in enumerate(oids)}
    h_index = {int(h): k for k, h in enumerate(hids)}
    for (o, h), hits in pair_hits.items():
        fp[o_index[o], h_index[h]] -= hits
        fn[o_index[o], h_index[h]] -= hits
    rows, cols = _assign(fp + fn)
    idfn = round(float(fn[rows, cols].sum()))
    idfp = round(float(fp[rows, cols].sum()))
    return len(gt) - idfn, idfn, idfp


HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)  # 0.05 ... 0.95, the 19 thresholds of TrackEval
_EPS = float(np.finfo(float).eps)


def evaluate_hota(gt: MotTracks, pred: MotTracks) -> HotaReport:
    """HOTA of ``pred`` against ``gt`` at the 19 localisation thresholds (see the module)."""
    if not isinstance(gt, MotTracks) or not isinstance(pred, MotTracks):
        raise InvalidInput("evaluate_hota takes two MotTracks (see visor.data.mot.read_mot)")
    n_alpha = len(HOTA_ALPHAS)
    tp, fn, fp = np.zeros(n_alpha), np.zeros(n_alpha), np.zeros(n_alpha)
    loc = np.zeros(n_alpha)
    zeros = np.zeros(n_alpha)
    if not len(pred) or not len(gt):  # nothing to associate: every box is a miss or a false positive
        fn[:], fp[:] = len(gt), len(pred)
        return HotaReport(HOTA_ALPHAS, zeros, zeros, zeros, *_det_ratios(tp, fn, fp)[1:], zeros, zeros,
                          np.ones(n_alpha), tp, fn, fp)
    o_ids, o_idx = np.unique(gt.ids, return_inverse=True)  # ids -> 0..n-1
    h_ids, h_idx = np.unique(pred.ids, return_inverse=True)
    gt_frames, pred_frames = gt.per_frame(), pred.per_frame()
    o_rows = _rows_by_frame(gt.frames, o_idx)
    h_rows = _rows_by_frame(pred.frames, h_idx)
    frames = sorted(set(gt_frames) | set(pred_frames))
    empty = np.zeros(0, np.int64)

    # pass 1: the soft overlap of every id pair over the sequence, and each id's box count
    sims: dict[int, np.ndarray] = {}
    potential = np.zeros((len(o_ids), len(h_ids)))
    o_count = np.bincount(o_idx, minlength=len(o_ids)).astype(float)[:, None]
    h_count = np.bincount(h_idx, minlength=len(h_ids)).astype(float)[None, :]
    for f in frames:
        o, h = o_rows.get(f, empty), h_rows.get(f, empty)
        if not len(o) or not len(h):
            continue
        sim = box_iou_xywh(gt_frames[f].boxes, pred_frames[f].boxes)
        sims[f] = sim
        denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        share = np.zeros_like(sim)
        ok = denom > _EPS
        share[ok] = sim[ok] / denom[ok]
        potential[o[:, None], h[None, :]] += share
    alignment = potential / (o_count + h_count - potential)

    # pass 2: per frame, the matching that maximises IoU x alignment; counted at each alpha it passes
    matched: list[np.ndarray] = []  # (alpha, gt id, pred id) of each match, flattened (kept sparse)
    for f in frames:
        o, h = o_rows.get(f, empty), h_rows.get(f, empty)
        if not len(o) or not len(h):
            fn += len(o)
            fp += len(h)
            continue
        sim = sims[f]
        rows, cols = linear_sum_assignment(-(alignment[o[:, None], h[None, :]] * sim))
        matched_sim = sim[rows, cols]
        passed = matched_sim[None, :] >= HOTA_ALPHAS[:, None] - _EPS  # (alpha, match)
        n = passed.sum(1)
        tp += n
        fn += len(o) - n
        fp += len(h) - n
        loc += np.where(passed, matched_sim[None, :], 0.0).sum(1)
        a, k = np.nonzero(passed)
        matched.append((a * len(o_ids) + o[rows[k]]) * len(h_ids) + h[cols[k]])

    # association: per alpha, the Jaccard of each matched id pair, weighted by its matches
    keys, m = np.unique(np.concatenate([*matched, np.zeros(0, np.int64)]), return_counts=True)
    a, rest = np.divmod(keys, len(o_ids) * len(h_ids))
    oi, hi = np.divmod(rest, len(h_ids))
    oc, hc, m = o_count[oi, 0], h_count[0, hi], m.astype(float)
    per_tp = np.maximum(1, tp)
    assa = np.bincount(a, m * (m / np.maximum(1, oc + hc - m)), minlength=n_alpha) / per_tp
    assre = np.bincount(a, m * (m / np.maximum(1, oc)), minlength=n_alpha) / per_tp
    asspr = np.bincount(a, m * (m / np.maximum(1, hc)), minlength=n_alpha) / per_tp
    deta, detre, detpr = _det_ratios(tp, fn, fp)
    loca = np.maximum(1e-10, loc) / np.maximum(1e-10, tp)
    return HotaReport(HOTA_ALPHAS, np.sqrt(deta * assa), deta, assa, detre, detpr, assre, asspr, loca, tp, fn, fp)


def _det_ratios(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DetA, DetRe, DetPr (0 where there is nothing)."""
    return (tp / np.maximum(1, tp + fn + fp), tp / np.maximum(1, tp + fn), tp / np.maximum(1, tp + fp))


def _rows_by_frame(frames: np.ndarray, index: np.ndarray) -> dict[int, np.ndarray]:
    """``{frame: the id indexes of its rows}`` in row order (rows are sorted by frame)."""
    starts = np.flatnonzero(np.r_[True, frames[1:] != frames[:-1]]) if len(frames) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(frames)]
    return {int(frames[s]): index[s:e].astype(np.int64) for s, e in zip(starts, ends, strict=True)}
