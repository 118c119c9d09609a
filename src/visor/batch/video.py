"""Videos among the inputs of a batch run: each expanded into frames, one work item per kept frame.

An input whose name ends in a :data:`~visor.io.video.VIDEO_EXTENSIONS` suffix is a video (named as a
file or in a manifest; folders and globs list images only). It is read with
:func:`~visor.io.video.open_video` (the container is sniffed from its bytes) and every ``stride``-th
frame becomes a :class:`FrameItem`: one result row with the video's ``path``, the frame's ``frame``
index (0-based, in the source) and ``timestamp_s``. The default stride, ``"auto"``, keeps about one
frame per second of video (stride = the video's frame rate rounded, at least 1; every frame when the
rate is unknown); a number keeps every n-th frame (1: all frames). (``--task track`` reads its videos itself,
every frame under ``"auto"``: see :func:`visor.batch.run.run_batch`.)

The unit of completion is the whole video: its rows are committed together, in one part, once its last
frame has been inferred. A run stopped midway through a video writes none of its rows, and a re-run
redoes that video from its first frame; a video whose rows were committed is skipped.

A video that cannot be opened (missing, not a supported container, empty, its index damaged) is
quarantined with its typed error. A truncated or damaged video keeps the rows of the frames decoded
before the damage, *and* is quarantined with the :class:`~visor.errors.CorruptVideo` error (its
message says how many frame rows were kept). A video that opens but gives no frame is quarantined as
:class:`~visor.errors.CorruptVideo` too. So every video ends with at least one row somewhere.
(One window remains: a chunk's quarantine part is renamed before its results part, so a run killed between
the two renames of the chunk holding a truncated video leaves its quarantine row without its frame rows, and
a re-run skips it; delete that quarantine part to redo it.)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from visor.errors import ConfigError, CorruptVideo, VisorError

#: The default ``video_stride``: about one frame per second of video.
AUTO = "auto"

VideoStride = int | str


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether a batch input is taken as a video (by its suffix; the container is checked on opening)."""
    from visor.io.video import VIDEO_EXTENSIONS

    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS


def check_stride(stride: VideoStride) -> VideoStride:
    """``"auto"`` or a positive int (a digit string is accepted); anything else raises :class:`ConfigError`."""
    if isinstance(stride, str):
        text = stride.strip().lower()
        if text == AUTO:
            return AUTO
        if text.isdigit():
            stride = int(text)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or int(stride) < 1:
        raise ConfigError(f"video_stride must be 'auto' or a positive whole number, got {stride!r}")
    return int(stride)


def resolve_stride(stride: VideoStride, fps: float | None) -> int:
    """The frame step for a video of rate ``fps``: ``"auto"`` gives ``round(fps)`` (at least 1; 1 when unknown)."""
    if stride == AUTO:
        return max(1, round(fps)) if fps and math.isfinite(fps) and fps > 0 else 1
    return int(stride)


@dataclass(eq=False)
class VideoState:
    """One video of a run: what its reader has yielded, and what the sink has received."""

    path: str
    stride: int = 1
    emitted: int = 0
    """Frame items handed out so far."""
    received: int = 0
    """Outcomes (rows or errors) the sink has taken for this video."""
    finished: bool = False
    """The reader is exhausted (or failed): no more items will come."""
    error: VisorError | None = None
    """What stopped the reader early (a truncated file's :class:`CorruptVideo`), or None."""

    @property
    def closed(self) -> bool:
        """Every item of the video is in the sink: its rows can be committed."""
        return self.finished and self.received >= self.emitted


@dataclass(eq=False)
class FrameItem:
    """One work item of a video: a decoded frame, or (``image`` None) the video's failure to give any."""

    path: str
    frame: int | None
    timestamp_s: float | None
    image: np.ndarray | None
    video: VideoState = field(repr=False)
    error: VisorError | None = None
    """Set on the item standing for a video that gave no frame: preparing it raises this."""

    def pixels(self) -> np.ndarray:
        """The frame's RGB pixels, or the video's error raised."""
        if self.image is None:
            raise self.error or CorruptVideo(f"{self.path}: no frame")
        return self.image


def item_path(item: str | FrameItem) -> str:
    """The input path of a work item (an image's path, or a frame's video)."""
    return item.path if isinstance(item, FrameItem) else item


def expand_videos(
    paths: Iterable[str],
    *,
    stride: VideoStride = AUTO,
    max_pixels: int | None = None,
    on_open: Callable[[VideoState, int | None], None] = lambda state, expected: None,
    on_decode: Callable[[float], None] = lambda seconds: None,
) -> Iterator[str | FrameItem]:
    """``paths`` with each video replaced by its kept frames (images pass through as paths), lazily.

    ``on_open(state, expected)`` is called when a video opens, with the frame items it should give (from
    the declared frame count; None when unknown); ``on_decode(seconds)`` after each frame is read.
    Frames are decoded here, in the consumer's thread, one video at a time.
    """
    from visor.io.video import DEFAULT_VIDEO_LIMITS, VideoLimits, open_video

    stride = check_stride(stride)
    limits = DEFAULT_VIDEO_LIMITS if max_pixels is None else VideoLimits(max_pixels=max_pixels)
    for path in paths:
        if not is_video_path(path):
            yield path
            continue
        state = VideoState(path)
        try:
            reader = open_video(path, limits=limits)
        except VisorError as e:
            state.finished = True
            state.emitted = 1
            on_open(state, 1)
            yield FrameItem(path, None, None, None, state, e)
            continue
        with reader:
            state.stride = resolve_stride(stride, reader.fps)
            reader.stride = state.stride  # set before iterating: frames in between are grabbed, not converted
            count = reader.frame_count
            on_open(state, -(-count // state.stride) if count else None)
            frames = iter(reader)
            while True:
                t = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except VisorError as e:
                    state.error = e
                    break
                finally:
                    on_decode(time.perf_counter() - t)
                state.emitted += 1
                yield FrameItem(path, int(frame.index), frame.timestamp_s, frame.image, state)
        state.finished = True
        if state.emitted == 0:
            error = state.error or CorruptVideo(f"{path}: no frame could be decoded")
            state.error = None
            state.emitted = 1
            yield FrameItem(path, None, None, None, state, error)
