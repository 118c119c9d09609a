"""Video input: files and image sequences, caps before decoding, typed errors for bad and truncated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from video_files import faststart  # tests/video_files.py
from visor.errors import CorruptImage, ImageNotFound, ImageTooLarge, InvalidInput, UnsupportedFormat
from visor.io.video import CorruptVideo, Frame, VideoLimits, open_video

# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def bikes(shared_data) -> Path:
    return Path(shared_data("videos")) / "bikes.mp4"


@pytest.fixture(scope="module")
def bikes_frames(bikes) -> list[Frame]:
    with open_video(bikes) as reader:
        return list(reader)


def write_images(folder: Path, n: int, size=(32, 24)) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(n):
        a = np.zeros((size[1], size[0], 3), np.uint8)
        a[..., 0] = i * 10
        a[..., 1] = 255 - i
        a[:, i % size[0], 2] = 200
        Image.fromarray(a).save(folder / f"f{i:03d}.png")
        arrays.append(a)
    return arrays


# --------------------------------------------------------------------------- video files


def test_bikes_exact(bikes, bikes_frames):
    with open_video(bikes) as reader:
        assert (reader.fps, reader.frame_count, reader.size) == (25.0, 250, (640, 272))
    assert len(bikes_frames) == 250
    assert [f.index for f in bikes_frames] == list(range(250))
    assert [f.timestamp_s for f in bikes_frames[:3]] == [0.0, 0.04, 0.08]
    assert bikes_frames[-1].timestamp_s == pytest.approx(9.96)
    first = bikes_frames[0].image
    assert first.shape == (272, 640, 3) and first.dtype == np.uint8 and first.flags.c_contiguous


def test_frames_are_rgb(bikes, bikes_frames):
    import cv2

    cap = cv2.VideoCapture(str(bikes), cv2.CAP_FFMPEG)
    ok, bgr = cap.read()
    cap.release()
    assert ok
    np.testing.assert_array_equal(bikes_frames[0].image, bgr[..., ::-1])
    assert not np.array_equal(bgr[..., 0], bgr[..., 2])  # the swap is visible


def test_stride_and_max_frames(bikes, bikes_frames):
    with open_video(bikes, stride=10, max_frames=7) as reader:
        frames = list(reader)
        assert reader.frames_read == 7
    assert [f.index for f in frames] == [0, 10, 20, 30, 40, 50, 60]
    assert frames[3].timestamp_s == pytest.approx(1.2)
    for f in frames:
        np.testing.assert_array_equal(f.image, bikes_frames[f.index].image)
    with open_video(bikes, stride=100) as reader:
        assert [f.index for f in reader] == [0, 100, 200]
    with open_video(bikes, max_frames=0) as reader:
        assert list(reader) == []


def test_bad_options(bikes):
    with pytest.raises(InvalidInput, match="stride"):
        open_video(bikes, stride=0)
    with pytest.raises(InvalidInput, match="max_frames"):
        open_video(bikes, max_frames=-1)


def test_iterated_once(bikes):
    with open_video(bikes, max_frames=2) as reader:
        assert len(list(reader)) == 2
        with pytest.raises(InvalidInput, match="once"):
            list(reader)


@pytest.mark.parametrize(("ext", "fourcc"), [("avi", "MJPG"), ("mkv", "XVID"), ("mp4", "mp4v")])
def test_other_containers(tmp_path, ext, fourcc):
    import cv2

    path = tmp_path / f"clip.{ext}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    for i in range(23):
        writer.write(np.full((48, 64, 3), (i * 10, 0, 250 - i * 10), np.uint8))  # BGR
    writer.release()
    with open_video(path) as reader:
        assert (reader.fps, reader.frame_count, reader.size) == (10.0, 23, (64, 48))
        frames = list(reader)
    assert len(frames) == 23
    assert frames[5].timestamp_s == pytest.approx(0.5)
    red, blue = frames[5].image[24, 32, 0], frames[5].image[24, 32, 2]  # lossy codecs: near, not exact
    assert abs(int(red) - 200) <= 8 and abs(int(blue) - 50) <= 8


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(ImageNotFound, match="no such file"):
        open_video(tmp_path / "nope.mp4")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 10)
    with pytest.raises(UnsupportedFormat, match="not a supported video"):
        open_video(path)


def test_playlist_is_refused_before_ffmpeg(tmp_path):
    # FFmpeg would follow an HLS playlist to its URLs; visor never hands it anything but an allowed container.
    path = tmp_path / "clip.mp4"
    path.write_text("#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/x.ts\n")
    with pytest.raises(UnsupportedFormat):
        open_video(path)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(CorruptVideo, match="empty") as err:
        open_video(path)
    assert isinstance(err.value, CorruptImage) and err.value.code == "corrupt_video"


def test_byte_cap_checked_before_opening(bikes):
    with pytest.raises(ImageTooLarge, match="509868 bytes; the limit is 509867"):
        open_video(bikes, limits=VideoLimits(max_bytes=509_867))
    with open_video(bikes, limits=VideoLimits(max_bytes=509_868)) as reader:
        assert reader.frame_count == 250


def test_pixel_cap(bikes):
    with pytest.raises(ImageTooLarge, match="640x272 = 174080 pixels"):
        open_video(bikes, limits=VideoLimits(max_pixels=174_079))


def test_truncated_mp4_index_at_end(tmp_path, bikes):
    # bikes.mp4 keeps its index (moov) after the data: half the bytes leave nothing to decode.
    data = bikes.read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptVideo, match="cannot be opened"):
        open_video(path)


def test_truncated_mp4_keeps_frames_before_the_damage(tmp_path, bikes, bikes_frames):
    data = faststart(bikes.read_bytes())
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(data)
    with open_video(whole) as reader:  # the rewrite itself is lossless
        assert sum(1 for _ in reader) == 250 and not reader.truncated
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    got: list[Frame] = []
    with open_video(path) as reader:
        assert reader.frame_count == 250  # declared by the surviving index
        with pytest.raises(CorruptVideo, match="stopped after 114 of 250 frames"):
            for frame in reader:
                got.append(frame)
        assert reader.truncated and reader.frames_read == 114
    assert [f.index for f in got] == list(range(114))
    for f in got:
        np.testing.assert_array_equal(f.image, bikes_frames[f.index].image)


# --------------------------------------------------------------------------- image sequences


def test_folder_sequence(tmp_path):
    arrays = write_images(tmp_path / "seq", 12)
    (tmp_path / "seq" / "readme.txt").write_text("not an image")
    with open_video(tmp_path / "seq", fps=4.0, stride=5) as reader:
        assert (reader.fps, reader.frame_count, reader.size) == (4.0, 12, (32, 24))
        frames = list(reader)
    assert [(f.index, f.timestamp_s) for f in frames] == [(0, 0.0), (5, 1.25), (10, 2.5)]
    for f in frames:
        np.testing.assert_array_equal(f.image, arrays[f.index])


def test_glob_sequence_sorted_without_fps(tmp_path):
    arrays = write_images(tmp_path / "seq", 5)
    with open_video(str(tmp_path / "seq" / "f00[1-3].png")) as reader:
        assert reader.fps is None and reader.frame_count == 3
        frames = list(reader)
    assert [f.index for f in frames] == [0, 1, 2] and all(f.timestamp_s is None for f in frames)
    np.testing.assert_array_equal(frames[0].image, arrays[1])


def test_sequence_errors(tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(ImageNotFound, match="no images"):
        open_video(tmp_path / "none")
    with pytest.raises(ImageNotFound, match="no images"):
        open_video(str(tmp_path / "none" / "*.jpg"))
    write_images(tmp_path / "mixed", 2)
    Image.new("RGB", (8, 8)).save(tmp_path / "mixed" / "f999.png")
    with open_video(tmp_path / "mixed") as reader, pytest.raises(InvalidInput, match="8x8"):
        list(reader)
    write_images(tmp_path / "big", 1, size=(100, 100))
    from visor.io import ImageLimits

    with pytest.raises(ImageTooLarge):
        open_video(tmp_path / "big", image_limits=ImageLimits(max_pixels=9_999))
