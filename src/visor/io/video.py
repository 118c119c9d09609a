"""Safe video input: one reader for video files and image sequences.

:func:`open_video` returns a :class:`VideoReader`, a context manager that yields
:class:`Frame` objects (index, timestamp in seconds, ``HxWx3`` uint8 RGB image):

* video files (MP4/MOV, AVI, Matroska/WebM) are decoded by OpenCV's FFmpeg backend. The
  byte size is checked and the container recognised from its leading bytes *before* FFmpeg
  sees the file, so a text file, a playlist or any other format FFmpeg would follow is
  refused (:class:`~visor.errors.UnsupportedFormat`), and the frame size is checked against
  the pixel cap before the first frame is decoded;
* a folder of images (walked like :func:`visor.io.expand_paths`) or a glob pattern is read
  as a sequence, sorted by path, each image through :func:`visor.io.open_image` and its caps.

A damaged or truncated file: the frames decoded before the damage are yielded, then
:class:`CorruptVideo` is raised (``reader.frames_read`` says how many came out). Truncation
is detected when decoding stops before the frame count the container declares; a file cut
before its index (an MP4 whose ``moov`` atom was at the end) cannot be opened at all and
raises :class:`CorruptVideo` from :func:`open_video`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from visor.errors import CorruptVideo, ImageNotFound, ImageTooLarge, InvalidInput, UnsupportedFormat
from visor.io.image import DEFAULT_LIMITS, IMAGE_EXTENSIONS, ImageLimits, glob_images, open_image, walk_images

#: Extensions treated as video files (the container is checked from the bytes, not the name).
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm"})

# Containers whose frame count comes from an index (exact); Matroska's is estimated from the duration.
_EXACT_COUNT = ("mp4", "avi")


@dataclass(frozen=True)
class VideoLimits:
    """Caps checked before a video is decoded."""

    max_bytes: int = 4_000_000_000
    """Largest file accepted (4 GB by default)."""
    max_pixels: int = 40_000_000
    """Largest frame width x height accepted (as for images)."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise InvalidInput("video limits must be positive")


DEFAULT_VIDEO_LIMITS = VideoLimits()


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    index: int
    """Position in the source (0-based, counting frames skipped by ``stride``)."""
    timestamp_s: float | None
    """Presentation time in seconds; None for an image sequence without ``fps``."""
    image: np.ndarray
    """``HxWx3`` uint8 RGB."""


def _container(head: bytes) -> str | None:
    """The container named by the leading bytes, or None when it is not an allowed video."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


def _stat_regular(path: Path) -> os.stat_result:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            raise ImageNotFound(f"broken symbolic link: {path} -> {os.readlink(path)}") from None
        raise ImageNotFound(f"no such file: {path}") from None
    except OSError as e:
        raise ImageNotFound(f"cannot read {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageNotFound(f"not a regular file: {path}")
    return st


def _read_head(path: Path, n: int = 32) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise ImageNotFound(f"cannot read {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageNotFound(f"not a regular file: {path}")
        return f.read(n)


class VideoReader:
    """Frames of one source, in order. Iterate once; use as a context manager (or call :meth:`close`)."""

    fps: float | None
    """Frames per second (None for an image sequence without ``fps``)."""
    frame_count: int | None
    """Frames in the source as declared (before ``stride``/``max_frames``); None if unknown."""
    size: tuple[int, int]
    """(width, height) of every frame."""

    def __init__(self, source: str, *, stride: int, max_frames: int | None) -> None:
        if stride < 1:
            raise InvalidInput(f"stride must be at least 1, got {stride}")
        if max_frames is not None and max_frames < 0:
            raise InvalidInput(f"max_frames must not be negative, got {max_frames}")
        self.source = source
        self.stride = stride
        self.max_frames = max_frames
        self.frames_read = 0
        """Frames yielded so far."""
        self.truncated = False
        """True once decoding stopped before the declared frame count (then :class:`CorruptVideo` is raised)."""
        self._used = False

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __iter__(self) -> Iterator[Frame]:
        if self._used:
            raise InvalidInput(f"{self.source}: a video reader can be iterated once; open it again")
        self._used = True
        if self.max_frames == 0:
            return
        for frame in self._frames():
            yield frame
            self.frames_read += 1
            if self.max_frames is not None and self.frames_read >= self.max_frames:
                return

    def _frames(self) -> Iterator[Frame]:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source!r}, fps={self.fps}, frame_count={self.frame_count}, "
                f"size={self.size})")


class _FileReader(VideoReader):
    def __init__(self, path: Path, *, limits: VideoLimits, stride: int, max_frames: int | None) -> None:
        super().__init__(os.fspath(path), stride=stride, max_frames=max_frames)
        st = _stat_regular(path)
        if st.st_size > limits.max_bytes:
            raise ImageTooLarge(f"video file is {st.st_size} bytes; the limit is {limits.max_bytes}")
        if st.st_size == 0:
            raise CorruptVideo(f"{path}: video file is empty (0 bytes)")
        container = _container(_read_head(path))
        if container is None:
            raise UnsupportedFormat(f"{path}: not a supported video (allowed: MP4/MOV, AVI, MKV, WebM)")
        self.container = container
        import cv2  # only readers of videos pay for OpenCV's import

        cap = cv2.VideoCapture(os.fspath(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise CorruptVideo(f"{path}: the video cannot be opened (truncated, or its index is damaged)")
        self._cap = cap
        self._cv2 = cv2
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            self.close()
            raise CorruptVideo(f"{path}: the video declares an invalid frame size {width}x{height}")
        if width * height > limits.max_pixels:
            self.close()
            raise ImageTooLarge(f"video frames are {width}x{height} = {width * height} pixels; "
                                f"the limit is {limits.max_pixels}")
        self.size = (width, height)
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if fps > 0 and np.isfinite(fps) else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None

    def close(self) -> None:
        cap = getattr(self, "_cap", None)
        if cap is not None:
            cap.release()
            self._cap = None

    def _frames(self) -> Iterator[Frame]:
        cv2 = self._cv2
        cap = self._cap
        if cap is None:
            raise InvalidInput(f"{self.source}: the video reader is closed")
        index = 0
        while True:
            if not cap.grab():
                break
            if index % self.stride == 0:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    break
                if bgr.shape[1] != self.size[0] or bgr.shape[0] != self.size[1]:
                    raise CorruptVideo(f"{self.source}: frame {index} is {bgr.shape[1]}x{bgr.shape[0]}, "
                                       f"not {self.size[0]}x{self.size[1]}")
                msec = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                ts = msec / 1000.0 if msec >= 0 else (index / self.fps if self.fps else None)
                yield Frame(index, ts, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        if self.frame_count is not None and index < self.frame_count - (0 if self.container in _EXACT_COUNT else 1):
            self.truncated = True
            raise CorruptVideo(f"{self.source}: decoding stopped after {index} of {self.frame_count} frames "
                               f"(the file is truncated or damaged); {self.frames_read} frames were read")


class _SequenceReader(VideoReader):
    def __init__(self, paths: list[str], source: str, *, fps: float | None, limits: ImageLimits, stride: int,
                 max_frames: int | None) -> None:
        super().__init__(source, stride=stride, max_frames=max_frames)
        if not paths:
            raise ImageNotFound(f"no images in {source}")
        if fps is not None and not (fps > 0 and np.isfinite(fps)):
            raise InvalidInput(f"fps must be positive, got {fps}")
        self._paths = paths
        self._limits = limits
        self.fps = fps
        self.frame_count = len(paths)
        with open_image(paths[0], limits=limits) as first:
            self.size = first.size

    def _frames(self) -> Iterator[Frame]:
        for index in range(0, len(self._paths), self.stride):
            path = self._paths[index]
            image = np.asarray(open_image(path, limits=self._limits))
            if (image.shape[1], image.shape[0]) != self.size:
                raise InvalidInput(f"{path} is {image.shape[1]}x{image.shape[0]}; the sequence's frames are "
                                   f"{self.size[0]}x{self.size[1]}")
            yield Frame(index, index / self.fps if self.fps else None, image)


def open_video(
    source: str | os.PathLike,
    *,
    stride: int = 1,
    max_frames: int | None = None,
    fps: float | None = None,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
    image_limits: ImageLimits = DEFAULT_LIMITS,
) -> VideoReader:
    """Open a video file, a folder of images or a glob pattern of images.

    ``stride`` keeps every n-th frame (indices stay those of the source), ``max_frames`` stops after
    that many frames are yielded. ``fps`` gives an image sequence its frame rate (timestamps are then
    ``index / fps``); a video's own rate is always used for a file.

    Raises :class:`~visor.errors.ImageNotFound` (missing file, empty folder or glob),
    :class:`~visor.errors.ImageTooLarge` (byte or pixel cap), :class:`~visor.errors.UnsupportedFormat`
    (not an allowed container), :class:`CorruptVideo` (empty, truncated, undecodable) or
    :class:`~visor.errors.InvalidInput`; never a bare OpenCV or OS error. Iteration raises
    :class:`CorruptVideo` after the last good frame of a truncated file.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        paths = sorted(p for p in walk_images(text) if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS)
        return _SequenceReader(paths, text, fps=fps, limits=image_limits, stride=stride, max_frames=max_frames)
    if not path.exists() and not path.is_symlink() and any(c in text for c in "*?["):
        paths = [p for p in glob_images(text) if os.path.splitext(p)[1].lower() in IMAGE_EXTENSIONS]
        return _SequenceReader(paths, text, fps=fps, limits=image_limits, stride=stride, max_frames=max_frames)
    return _FileReader(path, limits=limits, stride=stride, max_frames=max_frames)
