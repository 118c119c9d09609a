"""COCO run-length encoding (RLE) of binary masks, in numpy, compatible with pycocotools.

A COCO RLE is ``{"size": [height, width], "counts": ...}``: the lengths of alternating runs of 0s and 1s
(starting with 0s, so a mask whose first pixel is set starts with a 0) over the pixels in column-major
(Fortran) order. ``counts`` is either a list of integers ("uncompressed", as COCO stores crowd regions)
or a string ("compressed": the counts, each after the first three as the difference to the one two
before, written 5 bits a character from ``"0"``, the 6th bit saying that more follow).

:func:`encode` gives the same ``counts`` string, byte for byte, as ``pycocotools.mask.encode`` on the
Fortran-ordered mask; :func:`decode` reads both forms; :func:`area` counts the set pixels without
decoding; :func:`from_polygons` rasterises COCO polygons the way ``pycocotools.mask.frPyObjects`` does
(points on the boundary at 5x resolution, one crossing per column) and unites them, as the COCO API's
``annToMask``. Everything is vectorised: no loop runs per pixel.

Whatever arrives from outside is checked: a size of non-negative integers with at most
:data:`MAX_PIXELS` pixels, counts that are non-negative and add up to ``height * width``, a well-formed
string; anything else is :class:`~visor.errors.InvalidInput`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visor.errors import InvalidInput

MAX_PIXELS = 100_000_000
"""The most pixels an RLE read from outside may describe (a mask of 100 megapixels is 100 MB as bytes)."""

MAX_POLYGON_POINTS = 20_000_000
"""The most boundary points (at 5x resolution) one polygon may have: a bound on the memory a polygon with
coordinates far outside the image could otherwise ask for."""

_SCALE = 5  # pycocotools' upsampling of polygon outlines
_MAX_CHARS = 7  # characters per count in a compressed string: 35 bits, enough for any count below 2**32


# --------------------------------------------------------------------------- compressed strings


_LIMITS = np.array([1 << (5 * k - 1) for k in range(1, _MAX_CHARS + 1)], np.int64)


def _to_string(counts: np.ndarray) -> str:
    """The COCO compressed string of ``counts`` (pycocotools' ``rleToString``): each count (after the first
    three, less the count two before) in as few 5-bit characters as hold it as a signed number."""
    x = counts.astype(np.int64)  # a copy
    x[3:] -= counts[1:-2].astype(np.int64)
    magnitude = np.where(x < 0, ~x, x)
    width = 1 + np.searchsorted(_LIMITS, magnitude, side="right")
    offsets = np.cumsum(width) - width
    out = np.empty(int(width.sum()), np.uint8)
    idx = np.arange(len(x))
    k = 0
    while idx.size:
        more = width[idx] > k + 1
        out[offsets[idx] + k] = ((x[idx] >> (5 * k)) & 0x1F) + (more.astype(np.int64) << 5) + 48
        idx = idx[more]
        k += 1
    return out.tobytes().decode("ascii")


def _from_string(text: str | bytes) -> np.ndarray:
    """The counts of a COCO compressed string (pycocotools' ``rleFrString``), as int64."""
    try:
        raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError:
        raise InvalidInput("RLE counts string has characters outside '0'..'o'") from None
    b = np.frombuffer(raw, np.uint8)
    if not len(b):
        return np.zeros(0, np.int64)
    if b.min() < 48 or b.max() > 48 + 63:
        raise InvalidInput("RLE counts string has characters outside '0'..'o'")
    b = b - np.uint8(48)
    ends = np.flatnonzero((b & 0x20) == 0)  # the last character of each count
    if not len(ends) or ends[-1] != len(b) - 1:
        raise InvalidInput("RLE counts string ends in the middle of a count")
    starts = np.concatenate([[0], ends[:-1] + 1])
    width = ends - starts + 1
    if width.max() > _MAX_CHARS:
        raise InvalidInput(f"RLE counts string has a count of more than {_MAX_CHARS} characters")
    x = (b[starts] & 0x1F).astype(np.int64)
    idx = np.flatnonzero(width > 1)
    k = 1
    while idx.size:
        x[idx] |= (b[starts[idx] + k] & 0x1F).astype(np.int64) << (5 * k)
        k += 1
        idx = idx[width[idx] > k]
    negative = (b[ends] & 0x10) != 0
    x[negative] -= np.left_shift(np.int64(1), 5 * width[negative])
    counts = x.copy()  # undo the differences: count i (i > 2) was written less count i - 2
    counts[1::2] = np.cumsum(x[1::2])
    counts[2::2] = np.cumsum(x[2::2])
    return counts


# --------------------------------------------------------------------------- reading and checking


def _size(value: Any, max_pixels: int) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise InvalidInput(f"RLE size must be [height, width] as two integers, got {value!r}")
    h, w = int(value[0]), int(value[1])
    if h < 0 or w < 0:
        raise InvalidInput(f"RLE size must not be negative, got [{h}, {w}]")
    if h * w > max_pixels:
        raise InvalidInput(f"RLE size {h}x{w} = {h * w} pixels is more than the limit of {max_pixels}")
    return h, w


def parse(rle: Mapping[str, Any], *, max_pixels: int = MAX_PIXELS) -> tuple[tuple[int, int], np.ndarray]:
    """``((height, width), counts)`` of a COCO RLE (compressed or a list of counts), checked: counts
    non-negative, adding up to ``height * width``; ``InvalidInput`` otherwise."""
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise InvalidInput("an RLE mask must be an object with 'size' and 'counts'")
    h, w = _size(rle["size"], max_pixels)
    raw = rle["counts"]
    if isinstance(raw, (str, bytes)):
        if len(raw) > _MAX_CHARS * (h * w + 1):
            raise InvalidInput("RLE counts string is longer than its size allows")
        counts = _from_string(raw)
    elif isinstance(raw, (list, tuple, np.ndarray)):
        if len(raw) > h * w + 1:
            raise InvalidInput(f"RLE has {len(raw)} counts, more than its {h * w} pixels allow")
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw):
            raise InvalidInput("RLE counts must be a string or a list of integers")
        if any(v > h * w for v in raw):
            raise InvalidInput(f"RLE has a count of more than its {h * w} pixels")
        counts = np.array([int(v) for v in raw], dtype=np.int64) if len(raw) else np.zeros(0, np.int64)
    else:
        raise InvalidInput(f"RLE counts must be a string or a list of integers, got {type(raw).__name__}")
    if len(counts) and counts.min() < 0:
        raise InvalidInput("RLE counts must not be negative")
    total = int(counts.sum())
    if total != h * w:
        raise InvalidInput(f"RLE counts add up to {total} pixels, but its size {h}x{w} has {h * w}")
    return (h, w), counts


def canonical(rle: Mapping[str, Any], *, max_pixels: int = MAX_PIXELS) -> dict[str, Any]:
    """``rle`` checked, as ``{"size": [h, w], "counts": <compressed str>}`` (a new dict)."""
    (h, w), counts = parse(rle, max_pixels=max_pixels)
    raw = rle["counts"]
    if isinstance(raw, str):
        text = raw
    elif isinstance(raw, bytes):
        text = raw.decode("ascii")
    else:
        text = _to_string(counts)
    return {"size": [h, w], "counts": text}


# --------------------------------------------------------------------------- encode, decode, area


def _counts(flat: np.ndarray) -> np.ndarray:
    """Run lengths of a flat bool array, starting with the 0s (pycocotools' ``rleEncode``)."""
    n = flat.size
    if n == 0:
        return np.zeros(1, np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [n]]))
    return np.concatenate([[0], counts]) if flat[0] else counts


def encode(mask: np.ndarray) -> dict[str, Any]:
    """The COCO RLE of a ``(H, W)`` mask (bool, or numbers: non-zero is set) with a compressed string,
    the same as ``pycocotools.mask.encode(np.asfortranarray(mask))`` (whose counts are bytes)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    if m.dtype.kind not in "biuf":
        raise ValueError(f"a mask must be bool or numbers, got dtype {m.dtype}")
    flat = (m != 0).ravel(order="F")
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": _to_string(_counts(flat))}


def encode_labels(labels: np.ndarray) -> dict[int, dict[str, Any]]:
    """One COCO RLE per value present in an ``(H, W)`` integer label image, by value (ascending), in
    one pass over the pixels; each the same as :func:`encode` of ``labels == value``."""
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype.kind not in "biu":
        raise ValueError(f"labels must be a 2-D integer array, got {lab.dtype} of shape {lab.shape}")
    h, w = (int(s) for s in lab.shape)
    flat = lab.ravel(order="F")
    n = flat.size
    if n == 0:
        return {}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    values = flat[starts]
    order = np.argsort(values, kind="stable")  # runs of each value stay in pixel order
    bounds = np.flatnonzero(np.diff(values[order])) + 1
    out: dict[int, dict[str, Any]] = {}
    for group in np.split(order, bounds):
        s, e = starts[group], ends[group]
        counts = np.empty(2 * len(s) + 1, np.int64)
        counts[0] = s[0]
        counts[1::2] = e - s
        counts[2:-1:2] = s[1:] - e[:-1]
        counts[-1] = n - e[-1]
        if counts[-1] == 0:
            counts = counts[:-1]
        out[int(values[group[0]])] = {"size": [h, w], "counts": _to_string(counts)}
    return out


def decode(rle: Mapping[str, Any], *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The ``(H, W)`` bool mask of a COCO RLE (compressed string or a list of counts)."""
    (h, w), counts = parse(rle, max_pixels=max_pixels)
    bits = np.zeros(len(counts), bool)
    bits[1::2] = True
    flat = np.repeat(bits, counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def area(rle: Mapping[str, Any], *, max_pixels: int = MAX_PIXELS) -> int:
    """The number of set pixels of a COCO RLE, without decoding it."""
    return int(parse(rle, max_pixels=max_pixels)[1][1::2].sum())


# --------------------------------------------------------------------------- polygons


def _polygon_counts(xy: np.ndarray, h: int, w: int) -> np.ndarray:
    """The RLE counts of one polygon, exactly as pycocotools' ``rleFrPoly``."""
    k = len(xy)
    x = np.trunc(_SCALE * xy[:, 0] + 0.5).astype(np.int64)  # C's (int) cast: toward zero
    y = np.trunc(_SCALE * xy[:, 1] + 0.5).astype(np.int64)
    x, y = np.append(x, x[:1]), np.append(y, y[:1])
    xs, xe, ys, ye = x[:-1], x[1:], y[:-1], y[1:]
    dx, dy = np.abs(xe - xs), np.abs(ys - ye)
    horizontal = dx >= dy
    flip = (horizontal & (xs > xe)) | (~horizontal & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    steps = np.where(horizontal, dx, dy)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(horizontal, (ye - ys) / np.maximum(dx, 1), (xe - xs) / np.maximum(dy, 1))
    slope = np.where(steps == 0, 0.0, slope)  # a repeated point: pycocotools' 0/0 never reaches the mask
    n = steps + 1
    total = int(n.sum())
    if total > MAX_POLYGON_POINTS:
        raise InvalidInput(f"a polygon's outline has {total} points at 5x resolution, more than the limit of "
                           f"{MAX_POLYGON_POINTS} (coordinates far outside the image?)")
    edge = np.repeat(np.arange(k), n)
    d = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    t = np.where(flip[edge], steps[edge] - d, d)
    hz = horizontal[edge]
    across = np.trunc(np.where(hz, ys[edge], xs[edge]) + slope[edge] * t + 0.5).astype(np.int64)
    u = np.where(hz, t + xs[edge], across)
    v = np.where(hz, across, t + ys[edge])
    # one boundary point per change of column, at the pixel grid, downsampled
    j = np.flatnonzero(u[1:] != u[:-1]) + 1
    xd = np.where(u[j] < u[j - 1], u[j], u[j] - 1).astype(np.float64)
    xd = (xd + 0.5) / _SCALE - 0.5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= w - 1)
    yd = np.minimum(v[j], v[j - 1]).astype(np.float64)
    yd = np.ceil(np.clip((yd + 0.5) / _SCALE - 0.5, 0, h))
    a = np.sort(np.append(xd[keep].astype(np.int64) * h + yd[keep].astype(np.int64), h * w))
    a = np.diff(a, prepend=0)
    if not (a[1:] == 0).any():
        return a
    out = [int(a[0])]  # a zero-length run: it and the run after it join the run before (as pycocotools)
    i = 1
    while i < len(a):
        if a[i] > 0:
            out.append(int(a[i]))
            i += 1
        else:
            i += 1
            if i < len(a):
                out[-1] += int(a[i])
                i += 1
    return np.array(out, np.int64)


def _polygon(points: Any, i: int) -> np.ndarray:
    if isinstance(points, (str, bytes)) or not isinstance(points, (Sequence, np.ndarray)):
        raise InvalidInput(f"polygon {i} must be a flat list of numbers x1, y1, x2, y2, ...")
    try:
        xy = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"polygon {i} must be a flat list of numbers x1, y1, x2, y2, ...") from None
    if xy.ndim != 1 or len(xy) % 2 or not len(xy):
        raise InvalidInput(f"polygon {i} must be a flat list of x, y pairs, got {xy.size} values")
    if not np.isfinite(xy).all():
        raise InvalidInput(f"polygon {i} has a coordinate that is not a finite number")
    return xy.reshape(-1, 2)


def from_polygons(polygons: Sequence[Sequence[float]], height: int, width: int, *,
                  max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The ``(height, width)`` bool mask of the union of COCO polygons (flat ``x1, y1, x2, y2, ...`` lists in
    pixels), rasterised as pycocotools' ``frPyObjects`` + ``merge`` + ``decode`` do."""
    h, w = _size([height, width], max_pixels)
    if isinstance(polygons, (str, bytes)) or not isinstance(polygons, (Sequence, np.ndarray)):
        raise InvalidInput("polygons must be a list of flat coordinate lists")
    n = h * w
    delta = np.zeros(n + 1, np.int32)
    for i, points in enumerate(polygons):
        counts = _polygon_counts(_polygon(points, i), h, w)
        edges = np.cumsum(counts)
        starts, ends = edges[0:-1:2], edges[1::2]
        set_ = ends > starts
        np.add.at(delta, starts[set_], 1)
        np.add.at(delta, ends[set_], -1)
    flat = np.cumsum(delta[:n], dtype=np.int32) > 0
    return np.ascontiguousarray(flat.reshape(w, h).T)

