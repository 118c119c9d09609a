"""Safe image loading.

Every image that enters visor goes through :func:`open_image` (a PIL image) or
:func:`load_image` (a numpy array). Both:

* check the byte size before reading the data and the pixel count from the header
  before decoding it, so a decompression bomb is refused without being decoded;
* allow only JPEG, PNG, WebP, BMP, GIF (first frame) and TIFF (first page);
* apply the EXIF orientation;
* return 8-bit RGB whatever the input mode (palette, alpha, 16-bit, grayscale, CMYK);
* raise only :class:`~visor.errors.VisorError` subclasses.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visor.errors import CorruptImage, ImageNotFound, ImageTooLarge, InvalidInput, UnsupportedFormat

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes] | np.ndarray | Image.Image
"""Anything visor accepts as one image."""

#: PIL format names visor decodes. MPO is the multi-picture JPEG many cameras write.
ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
# Decoders PIL may try (its JPEG decoder returns MPO images itself).
_OPENERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

#: File extensions that folder expansion treats as images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)

# Leading bytes of the allowed formats: data that starts like one of them but does not
# parse is a damaged image (CorruptImage), not an unsupported one.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def _looks_allowed(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


# Errors PIL and its plugins raise on broken data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, TypeError,
                  KeyError, ZeroDivisionError, MemoryError)


@dataclass(frozen=True)
class ImageLimits:
    """Caps checked before an image is decoded."""

    max_bytes: int = 20_000_000
    """Largest encoded size accepted (20 MB by default)."""
    max_pixels: int = 40_000_000
    """Largest width x height accepted (40 megapixels by default)."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise InvalidInput("image limits must be positive")


DEFAULT_LIMITS = ImageLimits()

#: The one message for an empty image, whether it came as a file or as data.
EMPTY_MESSAGE = "image data is empty (0 bytes)"


def describe_source(source: object) -> str:
    """A short human-readable name for an image source, for messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else f"<{type(source).__name__}>"


def _not_regular(path: Path, mode: int) -> str:
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file")
    return f"not a file: {path} is {kind}" if kind != "not a regular file" else f"not a file: {path}"


def _read_path(path: Path, limits: ImageLimits) -> bytes:
    """The bytes of a regular file, never opening (and blocking on) a FIFO or a device."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            raise ImageNotFound(f"broken symbolic link: {path} -> {os.readlink(path)}") from None
        raise ImageNotFound(f"no such file: {path}") from None
    except OSError as e:
        raise ImageNotFound(f"cannot read {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageNotFound(_not_regular(path, st.st_mode))
    if st.st_size > limits.max_bytes:
        raise ImageTooLarge(f"file is {st.st_size} bytes; the limit is {limits.max_bytes}")
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the check above cannot block the open.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise ImageNotFound(f"cannot read {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise ImageNotFound(_not_regular(path, mode))
            data = f.read(limits.max_bytes + 1)
        except OSError as e:
            raise ImageNotFound(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"file exceeds the limit of {limits.max_bytes} bytes")
    if not data:
        raise CorruptImage(EMPTY_MESSAGE)
    return data


def _read_bytes(source: ImageSource, limits: ImageLimits) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source), limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        try:
            data = source.read(limits.max_bytes + 1)
        except OSError as e:
            raise CorruptImage(f"cannot read the file object: {e}") from None
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidInput("file objects must be opened in binary mode")
        data = bytes(data)
    else:
        raise InvalidInput(
            f"cannot read an image from {type(source).__name__}; give a path, bytes, "
            "a binary file object, a numpy array or a PIL image"
        )
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image data exceeds the limit of {limits.max_bytes} bytes")
    if not data:
        raise CorruptImage(EMPTY_MESSAGE)
    return data


def _open_past_pil_cap(data: bytes) -> Image.Image:
    """Parse the header again without PIL's own pixel cap (2 x ``Image.MAX_IMAGE_PIXELS``, about 179 MP),
    so that visor's limit decides, with visor's message, and a limit raised above PIL's is honoured.

    The allowed formats' openers are called directly, as ``Image.open`` does, without changing PIL's
    process-wide ``MAX_IMAGE_PIXELS``.
    """
    Image.init()
    prefix = data[:16]
    for fmt in _OPENERS:
        factory, accept = Image.OPEN[fmt]
        if accept is not None and accept(prefix) is not True:
            continue
        try:
            return factory(io.BytesIO(data), "")
        except _DECODE_ERRORS:
            continue
    raise CorruptImage("the image header is damaged")


def _bomb(e: Exception, limits: ImageLimits) -> ImageTooLarge:
    """Visor's message for PIL's DecompressionBombError (raised while decoding a frame)."""
    found = re.search(r"\((\d+) pixels\)", str(e))
    size = f"{int(found.group(1))} pixels" if found else "too large"
    return ImageTooLarge(f"image is {size}; the limit is {limits.max_pixels}")


def _check_pixels(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImage(f"image declares an invalid size {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}"
        )


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map a high-bit-depth single-channel array to 0..255."""
    if mode.startswith("I;16") or (arr.dtype.kind in "iu" and arr.max(initial=0) <= 65535 and mode == "I"):
        return (np.clip(arr, 0, 65535).astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if arr.dtype.kind == "f":
        hi = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return (np.clip(np.nan_to_num(arr), 0, hi) * (255.0 / hi) + 0.5).astype(np.uint8)
    hi = max(int(arr.max(initial=1)), 1)
    return (arr.astype(np.float64) * (255.0 / hi) + 0.5).astype(np.uint8)


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with alpha onto white."""
    rgba = img.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (palette, alpha, 16-bit, float, CMYK, grayscale)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if (mode == "P" and "transparency" in img.info) or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _flatten_alpha(img)
    if mode.startswith("I") or mode == "F":
        gray = _scale_to_uint8(np.asarray(img), mode)
        return Image.fromarray(np.ascontiguousarray(gray), "L").convert("RGB")
    return img.convert("RGB")


def _from_array(arr: np.ndarray, limits: ImageLimits) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidInput(f"arrays must be HxW, HxWx3 (RGB) or HxWx4 (RGBA); got shape {arr.shape}")
    _check_pixels(arr.shape[1], arr.shape[0], limits)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InvalidInput("float image arrays must be finite")
        scale = 255.0 if float(arr.max(initial=0.0)) <= 1.0 else 1.0
        arr = (np.clip(arr * scale, 0, 255) + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise InvalidInput(f"unsupported array dtype {arr.dtype}; use uint8, uint16, bool or float")
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.shape[2] == 4:
        return _flatten_alpha(Image.fromarray(arr, "RGBA"))
    return Image.fromarray(arr, "RGB")


def open_image(
    source: ImageSource,
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode one image safely into an 8-bit RGB PIL image with EXIF orientation applied.

    ``draft_size`` (width, height) lets the JPEG decoder downscale by 1/2, 1/4 or 1/8
    while it decodes, as long as the result stays at least that large. It is a
    speed hint for callers that will shrink the image anyway.

    Raises :class:`ImageNotFound`, :class:`ImageTooLarge`, :class:`UnsupportedFormat`,
    :class:`CorruptImage` or :class:`InvalidInput`; never a bare PIL or OS error.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, limits)
    if isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, limits)
        try:
            return to_rgb(ImageOps.exif_transpose(source) or source)
        except _DECODE_ERRORS as e:
            raise CorruptImage(f"cannot convert the PIL image: {e}") from None

    data = _read_bytes(source, limits)
    with warnings.catch_warnings():
        # Our own pixel cap runs before decoding, so PIL's bomb warning is redundant, and
        # damaged metadata (PIL warns "Corrupt EXIF data") is not worth a warning per image.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=_OPENERS)
        except UnidentifiedImageError:
            if _looks_allowed(data):
                raise CorruptImage("the image header is damaged") from None
            raise UnsupportedFormat(
                "not a supported image (allowed: JPEG, PNG, WebP, BMP, GIF, TIFF)"
            ) from None
        except Image.DecompressionBombError:
            img = _open_past_pil_cap(data)  # visor's limit, not PIL's, decides below
        except _DECODE_ERRORS as e:
            raise CorruptImage(f"cannot read the image header: {e}") from None
        if img.format not in ALLOWED_FORMATS:  # pragma: no cover - Image.open(formats=) enforces it
            raise UnsupportedFormat(f"format {img.format} is not allowed")
        _check_pixels(img.width, img.height, limits)
        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            if draft_size is not None and img.format in ("JPEG", "MPO"):
                img.draft("RGB", draft_size)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return to_rgb(img)
        except Image.DecompressionBombError as e:
            raise _bomb(e, limits) from None
        except _DECODE_ERRORS as e:
            raise CorruptImage(f"cannot decode the image: {e}") from None


def bounded_copy(image: Image.Image, *, max_side: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """``image`` itself when it fits, else a box-downscaled copy that does: its long side at most
    ``max_side`` and its area at most ``max_pixels``, aspect kept. The one way visor shrinks an
    image before work whose cost grows with its pixels (labels, faces, text, properties)."""
    w, h = image.size
    by_side = max_side / max(w, h) if max_side is not None else math.inf
    by_pixels = math.sqrt(max_pixels / (w * h)) if max_pixels is not None else math.inf
    scale = min(by_side, by_pixels)
    if scale >= 1:
        return image
    fit = math.floor if by_pixels <= by_side else round  # rounded down, a pixel budget is never exceeded
    return image.resize((max(1, fit(w * scale)), max(1, fit(h * scale))), Image.Resampling.BOX)


def load_image(source: ImageSource, *, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode one image safely into an ``HxWx3`` uint8 RGB array. See :func:`open_image`."""
    return np.asarray(open_image(source, limits=limits))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link
    except OSError:
        return False


def _is_regular(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # follows a link
    except OSError:
        return False


def _dir_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _list_dir(path: str) -> list[os.DirEntry]:
    with os.scandir(path or ".") as it:
        return sorted(it, key=lambda e: e.name)


def walk_images(folder: str | os.PathLike) -> Iterator[str]:
    """Image files below ``folder``, depth first, entries in name order, lazily.

    Links to folders are followed, but each real folder is listed once (a link loop ends).
    Entries that cannot be an image file, whatever their name (a FIFO, a socket, a device file,
    a broken link), are listed too, so the caller reports them with the reason instead of
    skipping them silently; they are never opened here. Raises :class:`InvalidInput` when a
    folder cannot be listed.
    """
    top = os.fspath(folder)
    seen: set[tuple[int, int]] = set()
    stack: list[Iterator[os.DirEntry]] = []

    def enter(path: str) -> None:
        key = _dir_key(path)
        if key is None or key in seen:
            return
        seen.add(key)
        try:
            stack.append(iter(_list_dir(path)))
        except OSError as e:
            raise InvalidInput(f"cannot list {path}: {e.strerror or e}") from None

    enter(top)
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif _is_dir(entry):
            enter(entry.path)
        elif _is_regular(entry):
            if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                yield entry.path
        else:
            yield entry.path  # not a regular file: listed so that reading it reports why


def glob_images(pattern: str | os.PathLike) -> list[str]:
    """Paths matching a glob ``pattern`` (``**`` for any folders), sorted, folders left out.

    Like :func:`glob.glob` with ``recursive=True`` (hidden names match only a pattern starting
    with ``.``), except that ``**`` lists each real folder once, so a link loop ends.
    """
    import fnmatch
    import glob

    text = os.fspath(pattern)
    parts = text.split(os.sep)
    absolute = text.startswith(os.sep)
    parts = [p for p in parts if p]
    first = next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))
    prefix = (os.sep if absolute else "") + os.sep.join(parts[:first])
    out: set[str] = set()
    seen: set[tuple[int, tuple[int, int]]] = set()

    def join(base: str, name: str) -> str:
        return os.path.join(base, name) if base else name

    def entries(base: str) -> list[os.DirEntry]:
        try:
            return _list_dir(base)
        except OSError:
            return []

    def match(base: str, segs: list[str]) -> None:
        seg, rest = segs[0], segs[1:]
        if seg == "**":
            key = _dir_key(base or ".")
            if key is None or (len(segs), key) in seen:
                return
            seen.add((len(segs), key))
            match(base, rest or ["*"])
            for entry in entries(base):
                if not entry.name.startswith(".") and _is_dir(entry):
                    match(join(base, entry.name), segs)
        elif glob.has_magic(seg):
            for entry in entries(base):
                if entry.name.startswith(".") and not seg.startswith("."):
                    continue
                if fnmatch.fnmatchcase(entry.name, seg):
                    if rest:
                        if _is_dir(entry):
                            match(join(base, entry.name), rest)
                    elif not _is_dir(entry):
                        out.add(join(base, entry.name))
        else:
            path = join(base, seg)
            if rest:
                if os.path.isdir(path):
                    match(path, rest)
            elif os.path.lexists(path) and not os.path.isdir(path):
                out.add(path)

    if first < len(parts):
        try:
            match(prefix, parts[first:])
        except RecursionError:
            raise InvalidInput(f"{text}: the folders are nested too deeply to search") from None
    return sorted(out)


def expand_paths(patterns: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (recursively, image extensions only) and glob patterns.

    Order is stable: each argument in turn, folder contents and glob matches sorted.
    A path that matches nothing is kept as it is, so the caller reports it as missing.
    Folders and globs follow links to folders but list each real folder once
    (:func:`walk_images`, :func:`glob_images`); a FIFO, device file or broken link inside a
    folder is listed, so reading it reports why it is not an image.
    """
    out: list[Path] = []
    for pattern in patterns:
        text = os.fspath(pattern)
        path = Path(text)
        if path.is_dir():
            out.extend(sorted(Path(p) for p in walk_images(text)))
        elif not path.exists() and any(c in text for c in "*?["):
            out.extend([Path(m) for m in glob_images(text)] or [path])
        else:
            out.append(path)
    return out
