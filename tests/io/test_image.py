"""Safe image input: typed errors, limits before decoding, EXIF, every mode to RGB."""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.errors import (
    CorruptImage,
    ImageNotFound,
    ImageTooLarge,
    InvalidInput,
    UnsupportedFormat,
    VisorError,
)
from visor.io import ImageLimits, expand_paths, load_image, open_image

# --------------------------------------------------------------------------- helpers


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_raw(width: int, height: int, bit_depth: int, color_type: int, rows: list[bytes] | None) -> bytes:
    """A PNG written by hand: any header, optional pixel rows (filter byte 0 added)."""
    out = b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    )
    if rows is not None:
        out += _chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + r for r in rows)))
    return out + _chunk(b"IEND", b"")


def upright() -> np.ndarray:
    """A 40x60 landscape image with no symmetry: each 20x20 cell a different colour."""
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    a = np.zeros((40, 60, 3), np.uint8)
    for i, c in enumerate(colors):
        r, col = divmod(i, 3)
        a[r * 20 : (r + 1) * 20, col * 20 : (col + 1) * 20] = c
    return a


# How each EXIF orientation stores an upright picture (EXIF 2.3, tag 0x0112).
STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1, :],  # mirrored vertically
    5: lambda a: a.transpose(1, 0, 2),  # mirrored horizontally and rotated 270 CW
    6: lambda a: np.rot90(a, 1),  # shown after rotating 90 CW: stored rotated 90 CCW
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored horizontally and rotated 90 CW
    8: lambda a: np.rot90(a, -1),  # shown after rotating 270 CW: stored rotated 90 CW
}


def with_orientation(a: np.ndarray, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = Image.fromarray(np.ascontiguousarray(STORED[orientation](a)))
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    return encode(img, fmt, exif=exif, **kwargs)


@pytest.fixture(scope="module")
def jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    return encode(Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)), "JPEG")


# --------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_is_exact(orientation):
    a = upright()
    out = load_image(with_orientation(a, orientation, "PNG"))
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg(orientation):
    a = upright()
    out = load_image(with_orientation(a, orientation, "JPEG"))
    assert out.shape == a.shape
    # JPEG blurs the edges between cells; the centre of each cell keeps its colour.
    centres = out[10::20, 10::20].astype(int)
    assert np.abs(centres - a[10::20, 10::20].astype(int)).max() < 40


def test_exif_orientation_applies_to_pil_input():
    a = upright()
    img = Image.open(io.BytesIO(with_orientation(a, 6, "PNG")))
    np.testing.assert_array_equal(load_image(img), a)


# --------------------------------------------------------------------------- modes to RGB


def test_16bit_grayscale_png_scales_to_8bit():
    values = np.array([[0, 257 * 100, 65535, 128]], dtype=np.uint16)
    rows = [values.astype(">u2").tobytes()]
    out = load_image(png_raw(4, 1, 16, 0, rows))
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255, 0])
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_16bit_rgb_png_keeps_the_high_byte():
    px = np.array([[[65535, 0, 257 * 7], [257 * 200, 65535, 0]]], dtype=np.uint16)
    out = load_image(png_raw(2, 1, 16, 2, [px.astype(">u2").tobytes()]))
    np.testing.assert_array_equal(out, [[[255, 0, 7], [200, 255, 0]]])


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = load_image(data)
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out[16, 16], [255, 0, 0], atol=8)


def test_palette_with_transparency_is_flattened_on_white():
    img = Image.new("P", (4, 1))
    img.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
    img.putdata([0, 1, 1, 0])
    out = load_image(encode(img, "PNG", transparency=0))
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [200, 10, 20], [200, 10, 20], [255, 255, 255]])


def test_palette_without_transparency():
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    img.putdata([1, 0])
    np.testing.assert_array_equal(load_image(encode(img, "PNG"))[0], [[40, 50, 60], [10, 20, 30]])


def test_rgba_alpha_is_composited_on_white():
    a = np.array([[[255, 0, 0, 255], [0, 0, 0, 0], [0, 0, 255, 128]]], np.uint8)
    out = load_image(encode(Image.fromarray(a, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])
    assert abs(int(out[0, 2, 0]) - 127) <= 1 and out[0, 2, 2] == 255


def test_grayscale_and_la_and_bilevel():
    gray = Image.fromarray(np.array([[0, 77, 255]], np.uint8), "L")
    np.testing.assert_array_equal(load_image(encode(gray, "PNG"))[0, :, 1], [0, 77, 255])
    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], np.uint8), "LA")
    np.testing.assert_array_equal(load_image(encode(la, "PNG"))[0], [[50, 50, 50], [255, 255, 255]])
    bilevel = Image.fromarray(np.array([[True, False]]))
    np.testing.assert_array_equal(load_image(encode(bilevel, "PNG"))[0], [[255] * 3, [0] * 3])


def test_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    np.testing.assert_array_equal(load_image(data)[0, 0], [255, 0, 0])


def test_multipage_tiff_gives_the_first_page():
    pages = [Image.new("RGB", (8, 8), c) for c in ((0, 200, 0), (9, 9, 9))]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    np.testing.assert_array_equal(load_image(data)[4, 4], [0, 200, 0])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_allowed_formats_decode(fmt):
    img = Image.new("RGB", (24, 16), (0, 128, 255))
    out = load_image(encode(img, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert out.shape == (16, 24, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "ICO", "PCX"])
def test_other_formats_pil_reads_are_refused(fmt):
    data = encode(Image.new("RGB", (16, 16), (1, 2, 3)), fmt)
    with pytest.raises(UnsupportedFormat):
        load_image(data)


# --------------------------------------------------------------------------- bad input


def test_truncated_jpeg(jpeg_bytes):
    with pytest.raises(CorruptImage):
        load_image(jpeg_bytes[: len(jpeg_bytes) // 2])


def test_truncated_png():
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(CorruptImage):
        load_image(data[: len(data) // 2])


def test_header_only_file_is_corrupt(jpeg_bytes):
    with pytest.raises(CorruptImage):
        load_image(jpeg_bytes[:30])


def test_decompression_bomb_refused_before_decoding():
    # A real, valid 30000x30000 1-bit PNG: ~110 kB on disk, 900 megapixels decoded.
    row = b"\x00" + b"\x00" * (30000 // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(30000)) + comp.flush()
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 1, 0, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    assert len(data) < 200_000
    with pytest.raises(ImageTooLarge, match="900000000 pixels"):
        load_image(data)


def test_bomb_header_without_data_is_refused_by_size_not_decoded():
    with pytest.raises(ImageTooLarge):
        load_image(png_raw(30000, 30000, 8, 2, None))


def test_text_renamed_to_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(UnsupportedFormat):
        load_image(path)


def test_empty_data():
    with pytest.raises(CorruptImage):
        load_image(b"")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageNotFound):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageNotFound):
        load_image(tmp_path)


@pytest.mark.parametrize("offset", [20, 40, 100, 300, 600])
def test_damaged_bytes_never_leak_pil_errors(jpeg_bytes, offset):
    data = bytearray(jpeg_bytes)
    data[offset : offset + 40] = b"\xff" * 40
    with contextlib.suppress(VisorError):  # a typed error is fine; decoding may also succeed
        load_image(bytes(data))


def test_random_damage_raises_only_typed_errors():
    """Seeded mutation fuzzing: flipped bytes, truncation and inserted junk in every format."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    seeds = [encode(base, "JPEG"), encode(base, "PNG"), encode(base, "WEBP"), encode(base, "BMP"),
             encode(base.convert("P"), "GIF"), encode(base, "TIFF", compression="tiff_lzw")]
    outcomes = {"decoded": 0, "typed": 0}
    for i in range(900):
        data = bytearray(seeds[i % len(seeds)])
        for _ in range(int(rng.integers(1, 5))):
            pos = int(rng.integers(0, len(data)))
            op = int(rng.integers(0, 3))
            if op == 0:
                data[pos] = int(rng.integers(0, 256))
            elif op == 1:
                data = data[: max(pos, 1)]
            else:
                data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8).tobytes()
        try:
            load_image(bytes(data))
            outcomes["decoded"] += 1
        except VisorError:
            outcomes["typed"] += 1
    assert outcomes["typed"] > 300 and outcomes["decoded"] > 50


def test_damaged_png_crc():
    data = bytearray(encode(Image.new("RGB", (8, 8), (9, 9, 9)), "PNG"))
    data[40] ^= 0xFF  # inside IDAT: the CRC no longer matches
    with pytest.raises(CorruptImage):
        load_image(bytes(data))


# --------------------------------------------------------------------------- limits


def test_default_limits():
    limits = ImageLimits()
    assert (limits.max_bytes, limits.max_pixels) == (20_000_000, 40_000_000)


def test_byte_limit_checked_for_path_bytes_and_file(tmp_path, jpeg_bytes):
    limits = ImageLimits(max_bytes=len(jpeg_bytes) - 1)
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes)
    for source in (path, str(path), jpeg_bytes, io.BytesIO(jpeg_bytes)):
        with pytest.raises(ImageTooLarge):
            load_image(source, limits=limits)
    assert load_image(path, limits=ImageLimits(max_bytes=len(jpeg_bytes))).shape == (64, 80, 3)


def test_pixel_limit_is_configurable(jpeg_bytes):
    with pytest.raises(ImageTooLarge):
        load_image(jpeg_bytes, limits=ImageLimits(max_pixels=64 * 80 - 1))
    assert load_image(jpeg_bytes, limits=ImageLimits(max_pixels=64 * 80)).shape == (64, 80, 3)
    with pytest.raises(ImageTooLarge):
        load_image(np.zeros((100, 100, 3), np.uint8), limits=ImageLimits(max_pixels=9999))


def test_limits_must_be_positive():
    with pytest.raises(InvalidInput):
        ImageLimits(max_bytes=0)


def test_http_statuses_of_errors():
    assert (ImageTooLarge.http_status, UnsupportedFormat.http_status, CorruptImage.http_status) == (
        413, 415, 400)


# --------------------------------------------------------------------------- sources


def test_every_source_kind_gives_the_same_pixels(tmp_path, jpeg_bytes):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes)
    ref = load_image(path)
    pil = Image.open(io.BytesIO(jpeg_bytes))
    for source in (str(path), jpeg_bytes, bytearray(jpeg_bytes), memoryview(jpeg_bytes),
                   io.BytesIO(jpeg_bytes), pil, ref):
        np.testing.assert_array_equal(load_image(source), ref)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(load_image(f), ref)


def test_arrays():
    gray = np.array([[0, 128]], np.uint8)
    np.testing.assert_array_equal(load_image(gray)[0, 1], [128] * 3)
    np.testing.assert_array_equal(load_image(gray[..., None])[0, 1], [128] * 3)
    np.testing.assert_array_equal(load_image(np.array([[[0.0, 0.5, 1.0]]]))[0, 0], [0, 128, 255])
    np.testing.assert_array_equal(load_image(np.array([[[65535, 0, 514]]], np.uint16))[0, 0], [255, 0, 2])
    rgba = np.array([[[10, 20, 30, 0]]], np.uint8)
    np.testing.assert_array_equal(load_image(rgba)[0, 0], [255, 255, 255])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 2), np.uint8), np.zeros((2, 4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.int64),
     np.full((2, 2, 3), np.nan), "not-a-real-file.png", 12345, io.StringIO("text")],
)
def test_unusable_sources_raise_typed_errors(bad):
    with pytest.raises(VisorError):
        load_image(bad)


def test_draft_decodes_large_jpeg_smaller_but_not_below_request():
    big = encode(Image.new("RGB", (2000, 1000), (10, 200, 30)), "JPEG")
    # 1/4 scale would give 500x250, below the requested 256 rows: 1/2 is the most it may reduce.
    assert open_image(big, draft_size=(256, 256)).size == (1000, 500)
    assert open_image(big, draft_size=(200, 200)).size == (500, 250)
    assert open_image(big).size == (2000, 1000)


def test_expand_paths(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("b.jpg", "a.PNG", "notes.txt", "sub/c.webp", "sub/deeper/d.tiff"):
        (tmp_path / name).write_bytes(b"x")
    got = expand_paths([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [
        "a.PNG", "b.jpg", "sub/c.webp", "sub/deeper/d.tiff"]
    globbed = expand_paths([str(tmp_path / "**" / "*.webp"), tmp_path / "notes.txt"])
    assert [p.name for p in globbed] == ["c.webp", "notes.txt"]
    missing = tmp_path / "none-*.jpg"
    assert expand_paths([missing]) == [Path(missing)]


# --------------------------------------------------------------------------- untrusted paths and sizes


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB, with (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 10))
            + _chunk(b"IEND", b""))


def test_images_past_pils_own_cap_get_visors_limit():
    """200 MP is past PIL's built-in cap (2 x 89.5 MP): the message was PIL's, naming PIL's 178956970."""
    big = _png_header(20_000, 10_000)
    with pytest.raises(ImageTooLarge) as e:
        load_image(big)
    assert str(e.value) == "image is 20000x10000 = 200000000 pixels; the limit is 40000000"
    with pytest.raises(ImageTooLarge) as e:
        load_image(big, limits=ImageLimits(max_pixels=100_000_000))
    assert str(e.value) == "image is 20000x10000 = 200000000 pixels; the limit is 100000000"
    # A limit raised above PIL's cap is honoured: the header passes, and decoding finds the data truncated.
    with pytest.raises(CorruptImage, match="truncated"):
        load_image(big, limits=ImageLimits(max_pixels=300_000_000))


def test_empty_file_and_empty_data_say_the_same(tmp_path):
    """A 0-byte file said 'not a supported image', 0 bytes of data 'image data is empty'."""
    (tmp_path / "empty.jpg").write_bytes(b"")
    messages = set()
    for source in (tmp_path / "empty.jpg", str(tmp_path / "empty.jpg"), b"", io.BytesIO(b"")):
        with pytest.raises(CorruptImage) as e:
            load_image(source)
        messages.add(str(e.value))
    assert messages == {"image data is empty (0 bytes)"}


def test_special_files_are_refused_without_being_opened(tmp_path):
    import os
    import threading

    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink("nowhere.jpg", tmp_path / "dangling.jpg")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    got: dict[str, str] = {}

    def run():
        for name in ("pipe.jpg", "dangling.jpg", "loop.jpg"):
            try:
                load_image(tmp_path / name)
            except ImageNotFound as e:
                got[name] = str(e)
        try:
            load_image("/dev/null")
        except ImageNotFound as e:
            got["null"] = str(e)

    worker = threading.Thread(target=run, daemon=True)  # opening the FIFO would block this thread forever
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert got == {
        "pipe.jpg": f"not a file: {tmp_path / 'pipe.jpg'} is a FIFO (named pipe)",
        "dangling.jpg": f"broken symbolic link: {tmp_path / 'dangling.jpg'} -> nowhere.jpg",
        "loop.jpg": f"cannot read {tmp_path / 'loop.jpg'}: Too many levels of symbolic links",
        "null": "not a file: /dev/null is a device file",
    }


@pytest.fixture
def looped_tree(tmp_path):
    """root/{a.jpg, sub/b.png, sub/up -> .., self -> ., twin -> sub, pipe.jpg (FIFO), dangling.jpg, notes.txt}."""
    import os

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png", "notes.txt"):
        (root / name).write_bytes(b"x")
    os.symlink("..", root / "sub" / "up")
    os.symlink(".", root / "self")
    os.symlink("sub", root / "twin")
    os.mkfifo(root / "pipe.jpg")
    os.symlink("nowhere.jpg", root / "dangling.jpg")
    return root


def _run_with_timeout(fn, seconds=20):
    import threading

    box: list = []
    worker = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert box, f"still running after {seconds} s"
    return box[0]


def test_folders_and_globs_do_not_follow_a_link_twice(looped_tree):
    """A '**' glob over a folder with link loops never finished (memory grew until killed)."""
    root = looped_tree
    pngs = _run_with_timeout(lambda: expand_paths([str(root / "**" / "*.png")]))
    assert [p.relative_to(root).as_posix() for p in pngs] == ["sub/b.png"]
    globbed = _run_with_timeout(lambda: expand_paths([str(root / "**" / "*.*")]))
    assert [p.relative_to(root).as_posix() for p in globbed] == [
        "a.jpg", "dangling.jpg", "notes.txt", "pipe.jpg", "sub/b.png"]
    # A folder lists the FIFO and the broken link too, so that reading them reports why they are no image.
    folder = _run_with_timeout(lambda: expand_paths([root]))
    assert [p.relative_to(root).as_posix() for p in folder] == ["a.jpg", "dangling.jpg", "pipe.jpg", "sub/b.png"]


def test_glob_matches_the_standard_glob_without_loops(tmp_path, monkeypatch):
    import glob
    import os

    from visor.io import glob_images

    for name in ("a/1.jpg", "a/b/2.jpg", "a/b/c/3.JPG", ".h/x/4.jpg", "a/.hid/5.jpg", ".6.jpg", "7.jpg",
                 "a/b/.8.jpg", "e/9.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    for pattern in ("**/*.jpg", "**", "*/*.jpg", "**/.*.jpg", ".*/**/*.jpg", "a/**/c/*", "[ae]/*", "*/**/*.png",
                    "**/b/**/*.jpg", str(tmp_path / "**" / "*.jpg"), "a/?.jpg", "**/*", "*.jpg", "a/**"):
        want = sorted({m for m in glob.glob(pattern, recursive=True) if not os.path.isdir(m)})
        assert glob_images(pattern) == want, pattern
