"""Synthetic tracking sequences with known tracks, and CLEAR MOT / IDF1 scores against them.

:func:`make_sequence` draws seeded scenes: boxes that move (constant velocity plus a little jitter), cross and
occlude each other (a box covered by a nearer one is detected with a low score, or not at all), enter and
leave the frame; detections carry corner noise, random misses, random low scores and a few false positives.
:func:`crossing_case` is a small hand-built scene with known ids. :func:`score` computes MOTA, IDF1 and
ID switches the way py-motmetrics does (IoU >= 0.5 matches; previous matches kept while still valid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from visor.ops.nms import box_iou
from visor.types.detections import Detections


@dataclass
class Sequence:
    """Per frame: the detections to track, and the truth (ids and boxes of the objects one can see)."""

    frames: list[Detections]
    truth_ids: list[np.ndarray]
    truth_xyxy: list[np.ndarray]


def _dets(xyxy: list, conf: list, cls: list | None = None) -> Detections:
    n = len(conf)
    return Detections(np.asarray(xyxy, np.float32).reshape(-1, 4), np.asarray(conf, np.float32),
                      np.asarray(cls if cls is not None else [0] * n, np.int64))


def _coverage(box: np.ndarray, others: np.ndarray) -> float:
    """Fraction of ``box`` covered by the union of ``others`` (on a 20 x 20 grid over the box)."""
    if not len(others):
        return 0.0
    xs = np.linspace(box[0], box[2], 20)
    ys = np.linspace(box[1], box[3], 20)
    gx, gy = np.meshgrid(xs, ys)
    inside = ((gx[..., None] >= others[:, 0]) & (gx[..., None] <= others[:, 2])
              & (gy[..., None] >= others[:, 1]) & (gy[..., None] <= others[:, 3])).any(-1)
    return float(inside.mean())


def make_sequence(seed: int, n_frames: int = 200, width: int = 640, height: int = 480, n_objects: int = 12,
                  noise: float = 0.03, p_miss: float = 0.05, p_low: float = 0.1, fp_rate: float = 0.3) -> Sequence:
    """A seeded scene of ``n_objects`` boxes born at random frames on the frame's edges or inside it."""
    rng = np.random.default_rng(seed)
    birth = rng.integers(0, n_frames // 2, n_objects)
    birth[: n_objects // 3] = 0
    wh = np.stack([rng.uniform(30, 90, n_objects), rng.uniform(50, 150, n_objects)], 1)
    depth = rng.permutation(n_objects)  # lower is nearer the camera
    pos = np.stack([rng.uniform(0, width, n_objects), rng.uniform(0, height, n_objects)], 1)
    edge = rng.random(n_objects) < 0.5  # born on the left or right edge, walking in
    pos[edge, 0] = np.where(rng.random(edge.sum()) < 0.5, -wh[edge, 0] / 2, width + wh[edge, 0] / 2)
    vel = rng.uniform(1, 5, (n_objects, 2)) * rng.choice([-1, 1], (n_objects, 2)) * [1, 0.4]
    vel[edge, 0] = np.abs(vel[edge, 0]) * np.sign(width / 2 - pos[edge, 0])

    frames, truth_ids, truth_xyxy = [], [], []
    for f in range(n_frames):
        alive = np.flatnonzero(birth <= f)
        pos[alive] += vel[alive]
        vel[alive] += rng.normal(0, 0.05, (len(alive), 2))
        boxes = np.concatenate([pos - wh / 2, pos + wh / 2], 1)
        clipped = np.clip(boxes, 0, [width, height, width, height])
        inside = np.prod(clipped[:, 2:] - clipped[:, :2], 1) / np.prod(wh, 1)
        shown = [i for i in alive if inside[i] >= 0.5]
        ids, gt, xyxy, conf = [], [], [], []
        for i in shown:
            nearer = clipped[[j for j in shown if depth[j] < depth[i]]]
            visible = 1 - _coverage(clipped[i], nearer)
            if visible < 0.3:
                continue  # hidden: not in the truth, not detected
            ids.append(i + 1)
            gt.append(clipped[i])
            if rng.random() < p_miss:
                continue
            size = np.r_[wh[i], wh[i]]
            xyxy.append(clipped[i] + rng.normal(0, noise, 4) * size)
            weak = visible < 0.7 or rng.random() < p_low
            conf.append(rng.uniform(0.15, 0.45) if weak else rng.uniform(0.6, 0.95))
        for _ in range(rng.poisson(fp_rate)):
            x, y = rng.uniform(0, width - 60), rng.uniform(0, height - 100)
            xyxy.append([x, y, x + rng.uniform(20, 60), y + rng.uniform(40, 100)])
            conf.append(rng.uniform(0.1, 0.55))
        frames.append(_dets(xyxy, conf))
        truth_ids.append(np.asarray(ids, np.int64))
        truth_xyxy.append(np.asarray(gt, np.float64).reshape(-1, 4))
    return Sequence(frames, truth_ids, truth_xyxy)


def crossing_case() -> tuple[list[Detections], list[list[int]]]:
    """A and B cross (B walks behind A: weakly seen for 2 frames, unseen for 3, weakly seen for 2), then C walks in.

    Returns 50 frames and, per frame, the truth label of each detection in order (1 = A, 2 = B, 3 = C).
    """
    frames, labels = [], []
    for f in range(50):
        xyxy, conf, lab = [], [], []
        ax = 40 + 6 * f  # A walks right, in front
        bx = 400 - 6 * f  # B walks left, behind A: hidden in frames 29-31
        xyxy.append([ax, 100, ax + 40, 200])
        conf.append(0.9)
        lab.append(1)
        overlap = max(0, 40 - abs(ax - bx)) / 40
        if overlap < 0.5:
            xyxy.append([bx, 110, bx + 40, 210])
            conf.append(0.85 if overlap == 0 else 0.3)  # partly hidden: a weak detection (27, 28, 32, 33)
            lab.append(2)
        if f >= 45:
            cx = 600 - 8 * (f - 45)  # C walks in from the right
            xyxy.append([cx, 300, cx + 30, 380])
            conf.append(0.8)
            lab.append(3)
        frames.append(_dets(xyxy, conf))
        labels.append(lab)
    return frames, labels


def score(truth_ids: list[np.ndarray], truth_xyxy: list[np.ndarray], hyp_ids: list[np.ndarray],
          hyp_xyxy: list[np.ndarray], min_iou: float = 0.5) -> dict[str, float]:
    """MOTA, IDF1, ID switches, misses and false positives, as py-motmetrics computes them."""
    last: dict[int, int] = {}  # truth id -> the hypothesis it was last matched to
    fn = fp = idsw = n_gt = n_hyp = 0
    pair_frames: dict[tuple[int, int], int] = {}
    for t_ids, t_box, h_ids, h_box in zip(truth_ids, truth_xyxy, hyp_ids, hyp_xyxy, strict=True):
        iou = box_iou(t_box, h_box)
        cost = np.where(iou >= min_iou, 1 - iou, np.nan)
        for a, b in pair_frames_iou(t_ids, h_ids, iou, min_iou):
            pair_frames[(a, b)] = pair_frames.get((a, b), 0) + 1
        matched: dict[int, int] = {}
        for i, t in enumerate(t_ids):  # a match still valid is kept
            if int(t) in last and last[int(t)] in h_ids.tolist():
                j = h_ids.tolist().index(last[int(t)])
                if not np.isnan(cost[i, j]) and j not in matched.values():
                    matched[i] = j
        rest_t = [i for i in range(len(t_ids)) if i not in matched]
        rest_h = [j for j in range(len(h_ids)) if j not in matched.values()]
        if rest_t and rest_h:
            sub = cost[np.ix_(rest_t, rest_h)]
            rows, cols = linear_sum_assignment(np.nan_to_num(sub, nan=1e6))
            for r, c in zip(rows, cols, strict=True):
                if not np.isnan(sub[r, c]):
                    i, j = rest_t[r], rest_h[c]
                    matched[i] = j
                    if int(t_ids[i]) in last and last[int(t_ids[i])] != int(h_ids[j]):
                        idsw += 1
        for i, j in matched.items():
            last[int(t_ids[i])] = int(h_ids[j])
        n_gt += len(t_ids)
        n_hyp += len(h_ids)
        fn += len(t_ids) - len(matched)
        fp += len(h_ids) - len(matched)
    # IDF1: the one-to-one truth/hypothesis id pairing that agrees on the most frames
    t_all = sorted({a for a, _ in pair_frames})
    h_all = sorted({b for _, b in pair_frames})
    idtp = 0
    if pair_frames:
        agree = np.zeros((len(t_all), len(h_all)))
        for (a, b), k in pair_frames.items():
            agree[t_all.index(a), h_all.index(b)] = k
        rows, cols = linear_sum_assignment(-agree)
        idtp = int(agree[rows, cols].sum())
    return {"mota": 1 - (fn + fp + idsw) / max(n_gt, 1), "idf1": 2 * idtp / max(n_gt + n_hyp, 1),
            "idsw": idsw, "fn": fn, "fp": fp, "num_gt": n_gt}


def pair_frames_iou(t_ids: np.ndarray, h_ids: np.ndarray, iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """The (truth id, hypothesis id) pairs whose boxes overlap enough in this frame (IDF1 counts these)."""
    return [(int(t_ids[i]), int(h_ids[j])) for i, j in zip(*np.nonzero(iou >= min_iou), strict=True)]
