"""Test helper: video files made from real ones (the faststart layout, whose frames survive a truncation)."""

from __future__ import annotations

import struct


def _atoms(data: bytes, start: int = 0, end: int | None = None):
    """(offset, type, size) of the boxes in data[start:end] (32-bit sizes; bikes.mp4 has no 64-bit boxes)."""
    i, end = start, len(data) if end is None else end
    while i < end:
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        yield i, kind, size
        i += size


def faststart(data: bytes) -> bytes:
    """The same MP4 with its ``moov`` index moved before ``mdat`` (chunk offsets shifted), as
    ``ffmpeg -movflags +faststart`` writes it: the layout whose frames survive a truncation."""
    top = {kind: (off, size) for off, kind, size in _atoms(data)}
    moov_off, moov_size = top[b"moov"]
    moov = bytearray(data[moov_off:moov_off + moov_size])

    def shift(start: int, end: int) -> None:
        for off, kind, size in _atoms(moov, start, end):
            if kind in (b"trak", b"mdia", b"minf", b"stbl", b"edts"):
                shift(off + 8, off + size)
            elif kind == b"stco":
                (n,) = struct.unpack(">I", moov[off + 12:off + 16])
                for k in range(n):
                    p = off + 16 + 4 * k
                    (v,) = struct.unpack(">I", moov[p:p + 4])
                    moov[p:p + 4] = struct.pack(">I", v + moov_size)
            elif kind == b"co64":  # pragma: no cover - not in bikes.mp4
                raise AssertionError("co64 not handled")

    shift(8, moov_size)
    assert moov_off > top[b"mdat"][0] and moov_off + moov_size == len(data)  # index last, as in bikes.mp4
    ftyp_end = top[b"ftyp"][0] + top[b"ftyp"][1]
    return data[:ftyp_end] + bytes(moov) + data[ftyp_end:moov_off]


def truncated_faststart(data: bytes) -> bytes:
    """The first half of :func:`faststart` of ``data`` (bikes.mp4: 114 of its 250 frames decode)."""
    moved = faststart(data)
    return moved[: len(moved) // 2]
