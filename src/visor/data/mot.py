"""MOTChallenge text files: ``frame,id,x,y,w,h,conf,...`` one box a line, read into arrays and written back.

A row has at least the six columns ``frame,id,x,y,w,h`` (``x, y`` the top-left corner, ``w, h`` the size,
in pixels); the seventh is the confidence (1.0 when absent) and any further columns (MOT15's world
``x, y, z``, MOT16+'s class and visibility) are kept as ``extra``, padded with -1 where a row is shorter.
Commas separate the columns (whitespace too, as the MOTChallenge tools accept); blank lines are skipped.
Frames and ids are integers (``3`` or ``3.0``); a ``(frame, id)`` pair appears at most once; boxes are
finite with ``w, h >= 0``. Anything else raises :class:`~visor.errors.InvalidInput` naming the line.

Ground truth is usually read with ``min_confidence=1`` (MOTChallenge marks boxes to ignore with 0, as
``py-motmetrics``' ``eval_motchallenge`` does); tracker output is read with every row.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visor.errors import InvalidInput
from visor.io.files import atomic_write

MIN_COLUMNS = 6
_SPLIT = re.compile(r"\s*,\s*|\s+")


@dataclass(frozen=True)
class MotFrame:
    """The boxes of one frame: ``ids`` (int64), ``boxes`` (float64, ``x, y, w, h``), ``confidences``, in file order."""

    frame: int
    ids: np.ndarray
    boxes: np.ndarray
    confidences: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class MotTracks:
    """Boxes of a whole sequence, one row each, sorted by frame (file order within a frame).

    ``frames`` and ``ids`` are int64 ``(N,)``; ``boxes`` float64 ``(N, 4)`` as ``x, y, w, h``;
    ``confidences`` float64 ``(N,)``; ``extra`` float64 ``(N, E)``, the columns after the confidence.
    Built by :func:`read_mot` / :func:`parse_mot` or directly (the arrays are checked and copied).
    """

    frames: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    confidences: np.ndarray
    extra: np.ndarray

    def __post_init__(self) -> None:
        frames = _integers(self.frames, "frames")
        ids = _integers(self.ids, "ids")
        n = len(frames)
        boxes = np.array(self.boxes, dtype=np.float64).reshape(-1, 4) if np.size(self.boxes) else np.zeros((0, 4))
        conf = np.array(self.confidences, dtype=np.float64).reshape(-1)
        extra = np.array(self.extra, dtype=np.float64)
        if extra.size == 0:
            extra = np.zeros((n, extra.shape[1] if extra.ndim == 2 else 0))
        if len(ids) != n or len(boxes) != n or len(conf) != n or extra.ndim != 2 or len(extra) != n:
            raise InvalidInput(
                f"MOT arrays disagree: {n} frames, {len(ids)} ids, {len(boxes)} boxes, {len(conf)} confidences, "
                f"extra of shape {extra.shape}"
            )
        if not np.isfinite(boxes).all():
            raise InvalidInput("MOT boxes must be finite")
        if (boxes[:, 2:] < 0).any():
            raise InvalidInput("MOT box widths and heights must be >= 0")
        order = np.argsort(frames, kind="stable")
        frames, ids = frames[order], ids[order]
        if n > 1:
            pair = np.stack([frames, ids], axis=1)
            uniq, counts = np.unique(pair, axis=0, return_counts=True)
            if (counts > 1).any():
                f, i = uniq[np.argmax(counts > 1)]
                raise InvalidInput(f"frame {int(f)} has id {int(i)} more than once")
        for name, value in (("frames", frames), ("ids", ids), ("boxes", boxes[order]),
                            ("confidences", conf[order]), ("extra", extra[order])):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frame_ids(self) -> np.ndarray:
        """The frames that have at least one box, ascending."""
        return np.unique(self.frames)

    @property
    def track_ids(self) -> np.ndarray:
        """The distinct ids, ascending."""
        return np.unique(self.ids)

    def per_frame(self) -> dict[int, MotFrame]:
        """``{frame: MotFrame}`` for every frame with a box, in ascending frame order."""
        return {f.frame: f for f in self.iter_frames()}

    def iter_frames(self) -> Iterator[MotFrame]:
        """One :class:`MotFrame` per frame with a box, ascending."""
        if not len(self):
            return
        starts = np.flatnonzero(np.r_[True, self.frames[1:] != self.frames[:-1]])
        ends = np.r_[starts[1:], len(self)]
        for s, e in zip(starts, ends, strict=True):
            yield MotFrame(int(self.frames[s]), self.ids[s:e], self.boxes[s:e], self.confidences[s:e])

    def filter(self, *, min_confidence: float) -> MotTracks:
        """The rows whose confidence is at least ``min_confidence``."""
        keep = self.confidences >= min_confidence
        return MotTracks(self.frames[keep], self.ids[keep], self.boxes[keep], self.confidences[keep], self.extra[keep])

    def to_text(self) -> str:
        """The MOT text: ``frame,id,x,y,w,h,conf[,extra...]`` one row a line; floats written exactly (``repr``)."""
        lines = []
        for k in range(len(self)):
            cols = [str(int(self.frames[k])), str(int(self.ids[k]))]
            cols += [_number(v) for v in (*self.boxes[k], self.confidences[k], *self.extra[k])]
            lines.append(",".join(cols))
        return "".join(line + "\n" for line in lines)

    def to_dict(self) -> dict[str, Any]:
        return {"num_rows": len(self), "num_frames": len(self.frame_ids), "num_ids": len(self.track_ids)}


def empty_tracks(extra_columns: int = 0) -> MotTracks:
    """A sequence with no boxes."""
    z = np.zeros(0)
    return MotTracks(z, z, np.zeros((0, 4)), z, np.zeros((0, extra_columns)))


def parse_mot(text: str, *, source: str = "<text>", min_confidence: float | None = None) -> MotTracks:
    """Parse MOT text (see the module). ``min_confidence`` keeps only rows with at least that confidence."""
    rows: list[list[float]] = []
    widths: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        cells = _SPLIT.split(line)
        if len(cells) < MIN_COLUMNS:
            raise InvalidInput(f"{source}:{lineno}: expected at least {MIN_COLUMNS} columns "
                               f"(frame,id,x,y,w,h), got {len(cells)}: {raw!r}")
        try:
            values = [float(c) for c in cells]
        except ValueError:
            raise InvalidInput(f"{source}:{lineno}: not a number in {raw!r}") from None
        for name, v in zip(("frame", "id"), values[:2], strict=True):
            if not math.isfinite(v) or v != int(v):
                raise InvalidInput(f"{source}:{lineno}: {name} must be an integer, got {v!r}")
        if values[0] < 0:
            raise InvalidInput(f"{source}:{lineno}: frame must be >= 0, got {int(values[0])}")
        if not all(math.isfinite(v) for v in values[2:6]):
            raise InvalidInput(f"{source}:{lineno}: box values must be finite: {raw!r}")
        if values[4] < 0 or values[5] < 0:
            raise InvalidInput(f"{source}:{lineno}: width and height must be >= 0: {raw!r}")
        if len(values) > 6 and math.isnan(values[6]):
            raise InvalidInput(f"{source}:{lineno}: confidence is not a number: {raw!r}")
        rows.append(values)
        widths.append(len(values))
    n_extra = max(max(widths, default=7) - 7, 0)
    table = np.full((len(rows), 7 + n_extra), -1.0)
    table[:, 6] = 1.0
    for k, values in enumerate(rows):
        table[k, : len(values)] = values
    tracks = _from_table(table, source)
    return tracks if min_confidence is None else tracks.filter(min_confidence=min_confidence)


def read_mot(path: str | os.PathLike, *, min_confidence: float | None = None) -> MotTracks:
    """Read a MOT text file (see the module and :func:`parse_mot`)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"MOT file {p} does not exist or is not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{p}: not UTF-8 text ({exc.reason})") from None
    return parse_mot(text, source=str(p), min_confidence=min_confidence)


def write_mot(path: str | os.PathLike, tracks: MotTracks) -> Path:
    """Write ``tracks`` as MOT text (atomically); :func:`read_mot` gives the same arrays back."""
    return atomic_write(path, tracks.to_text())


def _from_table(table: np.ndarray, source: str) -> MotTracks:
    try:
        return MotTracks(table[:, 0], table[:, 1], table[:, 2:6], table[:, 6], table[:, 7:])
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: {exc}") from None


def _integers(values: Any, name: str) -> np.ndarray:
    a = np.asarray(values).reshape(-1)
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    f = a.astype(np.float64)
    if not np.isfinite(f).all() or (f != np.round(f)).any():
        raise InvalidInput(f"MOT {name} must be integers")
    return f.astype(np.int64)


def _number(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
