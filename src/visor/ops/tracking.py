"""Multi-object tracking by detection: ByteTrack (Zhang et al., ECCV 2022) in numpy and scipy.

Each track is a constant-velocity Kalman filter on ``(cx, cy, aspect, h)``. Per frame:

1. every track (tracked and lost) is predicted one step;
2. tracked and lost tracks are matched to the high-confidence boxes (``confidence >= track_thresh``)
   by IoU weighted by the box confidence (Hungarian, cost ``1 - IoU * conf`` at most ``match_thresh``);
3. the tracked tracks left over are matched to the low-confidence boxes (``low_thresh < conf < track_thresh``,
   cost ``1 - IoU`` at most 0.5): occluded objects keep their id through weak detections;
4. tracks born last frame (unconfirmed) are matched to the high boxes left (cost at most 0.7), the others die;
5. each high box left with ``conf >= track_thresh + 0.1`` starts an unconfirmed track (confirmed at once on
   the first frame);
6. tracks unmatched for more than ``track_buffer`` frames (scaled by ``frame_rate / 30``) are dropped.

A track gets its id when it is confirmed, so ids count 1, 2, 3... without gaps. :meth:`ByteTracker.update`
returns the input detections that belong to a confirmed track this frame (their boxes, scores, classes,
masks and data as given), with ``data["tracker_id"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import linear_sum_assignment

from visor.errors import ConfigError, InvalidInput
from visor.ops.nms import box_iou


class _Boxes(Protocol):
    """What the tracker needs of :class:`visor.types.Detections` (types imports ops, so ops names no type)."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray

    def __len__(self) -> int: ...
    def __getitem__(self, index: Any) -> Any: ...
    def with_data(self, **data: Any) -> Any: ...


D = TypeVar("D", bound=_Boxes)

TRACKED, LOST, REMOVED = 0, 1, 2

_F = np.eye(8) + np.eye(8, k=4)  # x' = x + v (dt = 1 frame)
_H = np.eye(4, 8)
_STD_POS, _STD_VEL = 1 / 20, 1 / 160  # ByteTrack's noise weights, relative to the box height


def xyxy_to_xyah(xyxy: np.ndarray) -> np.ndarray:
    """``(N, 4)`` x1, y1, x2, y2 to centre x, centre y, aspect (w / h), height."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    w, h = xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]
    return np.stack([xyxy[:, 0] + w / 2, xyxy[:, 1] + h / 2, w / np.maximum(h, 1e-9), h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """``(N, 4)`` centre x, centre y, aspect, height to x1, y1, x2, y2."""
    xyah = np.asarray(xyah, np.float64).reshape(-1, 4)
    w, h = xyah[:, 2] * xyah[:, 3], xyah[:, 3]
    return np.stack([xyah[:, 0] - w / 2, xyah[:, 1] - h / 2, xyah[:, 0] + w / 2, xyah[:, 1] + h / 2], axis=1)


@dataclass(eq=False)
class _Track:
    mean: np.ndarray  # (8,) cx, cy, a, h and their velocities
    cov: np.ndarray  # (8, 8)
    confidence: float
    class_id: int
    start_frame: int
    frame: int  # last frame it was matched
    state: int = TRACKED
    track_id: int = 0  # 0 until confirmed
    hits: int = field(default=1)

    @classmethod
    def start(cls, xyah: np.ndarray, confidence: float, class_id: int, frame: int) -> _Track:
        h = xyah[3]
        std = np.array([2 * _STD_POS * h, 2 * _STD_POS * h, 1e-2, 2 * _STD_POS * h,
                        10 * _STD_VEL * h, 10 * _STD_VEL * h, 1e-5, 10 * _STD_VEL * h])
        return cls(np.r_[xyah, np.zeros(4)], np.diag(std ** 2), confidence, class_id, frame, frame)

    def predict(self) -> None:
        if self.state != TRACKED:
            self.mean[7] = 0.0  # a lost box keeps its size
        h = self.mean[3]
        std = np.array([_STD_POS * h, _STD_POS * h, 1e-2, _STD_POS * h, _STD_VEL * h, _STD_VEL * h, 1e-5, _STD_VEL * h])
        self.mean = _F @ self.mean
        self.cov = _F @ self.cov @ _F.T + np.diag(std ** 2)

    def update(self, xyah: np.ndarray, confidence: float, class_id: int, frame: int) -> None:
        h = self.mean[3]
        r = np.array([_STD_POS * h, _STD_POS * h, 1e-1, _STD_POS * h]) ** 2
        s = _H @ self.cov @ _H.T + np.diag(r)
        gain = cho_solve(cho_factor(s, lower=True), _H @ self.cov).T  # (8, 4) = P H^T S^-1
        self.mean = self.mean + gain @ (xyah - _H @ self.mean)
        self.cov = self.cov - gain @ s @ gain.T
        self.confidence, self.class_id, self.frame, self.state = confidence, class_id, frame, TRACKED
        self.hits += 1

    @property
    def xyxy(self) -> np.ndarray:
        return xyah_to_xyxy(self.mean[:4])[0]


def _match(cost: np.ndarray, thresh: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian assignment keeping pairs of cost at most ``thresh``; returns pairs, unmatched rows, unmatched cols."""
    if cost.size == 0:
        return [], list(range(cost.shape[0])), list(range(cost.shape[1]))
    rows, cols = linear_sum_assignment(np.where(cost > thresh, thresh + 1e4, cost))
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= thresh]
    used_r, used_c = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [r for r in range(cost.shape[0]) if r not in used_r],
            [c for c in range(cost.shape[1]) if c not in used_c])


class ByteTracker:
    """ByteTrack: stable ids for detections across the frames of one video (see the module docstring).

    ``class_aware=True`` only matches a track to boxes of its own class. Call :meth:`reset` at a scene cut:
    every track ends and the objects that follow get new ids (ids are never reused by one tracker).
    """

    def __init__(self, track_thresh: float = 0.5, match_thresh: float = 0.8, low_thresh: float = 0.1,
                 track_buffer: int = 30, frame_rate: float = 30, class_aware: bool = False) -> None:
        if not 0 <= low_thresh <= track_thresh <= 1:
            raise ConfigError(f"ByteTracker needs 0 <= low_thresh <= track_thresh <= 1, "
                              f"got {low_thresh} and {track_thresh}")
        if not 0 < match_thresh <= 1:
            raise ConfigError(f"ByteTracker: match_thresh must be in (0, 1], got {match_thresh}")
        if track_buffer < 0 or frame_rate <= 0:
            raise ConfigError(f"ByteTracker: track_buffer must be >= 0 and frame_rate > 0, "
                              f"got {track_buffer} and {frame_rate}")
        self.track_thresh, self.match_thresh, self.low_thresh = track_thresh, match_thresh, low_thresh
        self.new_thresh = track_thresh + 0.1
        self.max_lost = int(frame_rate / 30 * track_buffer)
        self.class_aware = class_aware
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        """End every track (a scene cut); later objects get ids not used before."""
        self._tracks: list[_Track] = []
        self._frame = 0

    @property
    def frame(self) -> int:
        """Frames seen since the tracker was made or reset."""
        return self._frame

    def _cost(self, tracks: list[_Track], xyxy: np.ndarray, cls: np.ndarray, conf: np.ndarray | None) -> np.ndarray:
        if not tracks or not len(xyxy):
            return np.zeros((len(tracks), len(xyxy)))
        sim = box_iou(np.stack([t.xyxy for t in tracks]), xyxy)
        if conf is not None:
            sim = sim * conf[None, :]
        if self.class_aware:
            sim = np.where(np.array([t.class_id for t in tracks])[:, None] == cls[None, :], sim, 0.0)
        return 1.0 - sim

    def update(self, detections: D) -> D:
        """Track one frame's detections; returns those on confirmed tracks, with ``data["tracker_id"]`` (int64)."""
        if not all(hasattr(detections, a) for a in ("xyxy", "confidence", "class_id", "with_data")):
            raise InvalidInput(f"ByteTracker.update takes Detections, got {type(detections).__name__}")
        self._frame += 1
        frame = self._frame
        xyxy = np.asarray(detections.xyxy, np.float64)
        conf = np.asarray(detections.confidence, np.float64)
        cls = np.asarray(detections.class_id, np.int64)
        xyah = xyxy_to_xyah(xyxy)
        owner: list[_Track | None] = [None] * len(detections)  # the track each detection went to

        for t in self._tracks:
            t.predict()
        confirmed = [i for i, t in enumerate(self._tracks) if t.track_id]
        unconfirmed = [i for i, t in enumerate(self._tracks) if not t.track_id]

        def assign(ti: int, di: int) -> None:
            self._tracks[ti].update(xyah[di], float(conf[di]), int(cls[di]), frame)
            owner[di] = self._tracks[ti]

        # 1. confirmed tracks (tracked and lost) against the high boxes
        high = np.flatnonzero(conf >= self.track_thresh)
        cost = self._cost([self._tracks[i] for i in confirmed], xyxy[high], cls[high], conf[high])
        pairs, left_t, left_h = _match(cost, self.match_thresh)
        for r, c in pairs:
            assign(confirmed[r], int(high[c]))
        # 2. the tracked ones left against the low boxes
        pool = [confirmed[r] for r in left_t if self._tracks[confirmed[r]].state == TRACKED]
        low = np.flatnonzero((conf > self.low_thresh) & (conf < self.track_thresh))
        pairs, left_t, _ = _match(self._cost([self._tracks[i] for i in pool], xyxy[low], cls[low], None), 0.5)
        for r, c in pairs:
            assign(pool[r], int(low[c]))
        for r in left_t:
            self._tracks[pool[r]].state = LOST
        # 3. last frame's newborn tracks against the high boxes left: confirmed, or gone
        high = high[left_h]
        cost = self._cost([self._tracks[i] for i in unconfirmed], xyxy[high], cls[high], conf[high])
        pairs, left_u, left_h = _match(cost, 0.7)
        for r, c in pairs:
            assign(unconfirmed[r], int(high[c]))
            self._confirm(self._tracks[unconfirmed[r]])
        for r in left_u:
            self._tracks[unconfirmed[r]].state = REMOVED
        # 4. new tracks from the confident boxes left
        for di in high[left_h]:
            if conf[di] >= self.new_thresh:
                track = _Track.start(xyah[di], float(conf[di]), int(cls[di]), frame)
                if frame == 1:
                    self._confirm(track)
                owner[di] = track
                self._tracks.append(track)
        # 5. forget tracks lost too long, and lost duplicates of tracked ones
        for t in self._tracks:
            if t.state == LOST and frame - t.frame > self.max_lost:
                t.state = REMOVED
        self._drop_duplicates()
        self._tracks = [t for t in self._tracks if t.state != REMOVED]

        shown = [(i, t.track_id) for i, t in enumerate(owner) if t is not None and t.track_id and t.state == TRACKED]
        keep = np.array([i for i, _ in shown], np.int64)
        return detections[keep].with_data(tracker_id=np.array([k for _, k in shown], np.int64))

    def _confirm(self, track: _Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1

    def _drop_duplicates(self) -> None:
        """A lost track that overlaps a tracked one (IoU > 0.85) is a duplicate: the younger of the two goes."""
        tracked = [t for t in self._tracks if t.state == TRACKED and t.track_id]
        lost = [t for t in self._tracks if t.state == LOST]
        if not tracked or not lost:
            return
        iou = box_iou(np.stack([t.xyxy for t in tracked]), np.stack([t.xyxy for t in lost]))
        for i, j in zip(*np.nonzero(iou > 0.85), strict=True):
            a, b = tracked[i], lost[j]
            (b if a.frame - a.start_frame >= b.frame - b.start_frame else a).state = REMOVED
