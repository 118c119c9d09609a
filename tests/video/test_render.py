"""Drawing tracked frames (exact pixels on a synthetic frame) and the atomic annotated-video writer."""

from __future__ import annotations

import gc
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from visor.errors import InvalidInput, UnsupportedFormat
from visor.io.outputs import OutputWriteError
from visor.io.video import open_video
from visor.types import Detections
from visor.video.render import ZONE_ALPHA, Trails, VideoWriter, draw_frame, track_color

GREY = 60
H, W = 320, 480  # (W + H) / 2 * 0.004 = 1.6: lines 2 px wide, whose centre pixels carry the exact colour


def _dets(boxes, ids=None, conf=None, names=None) -> Detections:
    n = len(boxes)
    data = {}
    if ids is not None:
        data["tracker_id"] = np.asarray(ids, dtype=np.int64)
    if names is not None:
        data["class_name"] = np.asarray(names)
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4),
                      np.asarray(conf if conf is not None else [0.9] * n, np.float32),
                      np.zeros(n, np.int64), data=data)


def _scene():
    """Duck-typed ZoneConfig, FrameAnalytics and Analytics.counts() (the real ones live in visor.video.analytics)."""
    zone = SimpleNamespace(name="yard", polygon=np.array([[200, 150], [400, 150], [400, 300], [200, 300]], float),
                           classes=None)
    line = SimpleNamespace(name="gate", start=(440.0, 0.0), end=(440.0, 320.0), classes=None)
    zones = SimpleNamespace(zones=(zone,), lines=(line,), anchor="bottom_center")
    analytics = SimpleNamespace(zones={"yard": {"person": 2, "bicycle": 1}}, members={}, dwell_s={}, crossings=())
    totals = {"lines": {"gate": {"in": {"person": 2, "bicycle": 1}, "out": {"person": 1}}}, "zones": {}}
    return zones, analytics, totals


def _frame() -> np.ndarray:
    return np.full((H, W, 3), GREY, np.uint8)


# ----------------------------------------------------------------------------------------------- trails


def test_trails_keep_the_last_bottom_centres_per_track():
    trails = Trails(max_len=3)
    for x in range(5):
        trails.update(_dets([[10 * x, 0, 10 * x + 4, 20], [0, 50, 2, 60 + x]], ids=[4, 9]))
    np.testing.assert_array_equal(trails.points(4), [[22, 20], [32, 20], [42, 20]])
    np.testing.assert_array_equal(trails.points(9), [[1, 62], [1, 63], [1, 64]])
    assert trails.points(4).dtype == np.float64
    assert trails.points(123).shape == (0, 2)
    assert sorted(trails.ids()) == [4, 9]


def test_trails_forget_tracks_unseen_for_max_len_updates_and_on_reset():
    trails = Trails(max_len=3)
    trails.update(_dets([[0, 0, 2, 2]], ids=[1]))
    trails.update(_dets([[0, 0, 2, 2]], ids=[2]))
    trails.update(_dets([[0, 0, 2, 2]], ids=[2]))
    assert trails.ids() == [1, 2]
    trails.update(_dets([[0, 0, 2, 2]], ids=[2]))  # track 1 last seen 3 updates ago
    assert trails.ids() == [2]
    trails.update(_dets([[0, 0, 2, 2]]))  # untracked detections are ignored
    assert trails.ids() == [2]
    trails.reset()
    assert len(trails) == 0
    assert trails.points(2).shape == (0, 2)
    with pytest.raises(InvalidInput):
        Trails(max_len=0)


# ----------------------------------------------------------------------------------------------- drawing


def test_draw_frame_exact_pixels_of_box_trail_zone_and_line():
    zones, analytics, totals = _scene()
    trails = Trails()
    for x in range(20, 101, 20):  # track 3 moves right along y = 200
        trails.update(_dets([[x, 160, x + 20, 200], [40, 40, 120, 140]], ids=[3, 7]))
    image = _frame()
    before = image.copy()
    dets = _dets([[100, 160, 120, 200], [40, 40, 120, 140]], ids=[3, 7], conf=[0.5, 0.9])

    out = draw_frame(image, dets, labels=["person"], trails=trails, zones=zones, analytics=analytics, totals=totals)

    np.testing.assert_array_equal(image, before)  # the input is not drawn on
    assert out.shape == image.shape and out.dtype == np.uint8
    assert tuple(out[100, 40]) == track_color(7)  # left edge of track 7's box
    assert tuple(out[100, 120]) == track_color(7)  # right edge
    assert tuple(out[100, 80]) == (GREY,) * 3  # inside the box: untouched
    assert tuple(out[200, 60]) == track_color(3)  # trail of track 3, between its anchors (50, 200) and (70, 200)
    assert track_color(3) != track_color(7)
    zone_color = np.array([0, 200, 255], float)
    expected = np.round(GREY * (1 - ZONE_ALPHA) + zone_color * ZONE_ALPHA)
    assert tuple(out[250, 300]) == tuple(expected.astype(int)) == (45, 95, 109)  # the zone's translucent fill
    assert tuple(out[250, 150]) == (GREY,) * 3  # outside the zone
    assert tuple(out[150, 300]) == (0, 200, 255)  # the zone's outline
    assert tuple(out[100, 440]) == (255, 255, 0)  # the counting line, no crossing this frame


def test_draw_frame_tags(monkeypatch):
    zones, analytics, totals = _scene()
    texts: list[str] = []
    real = cv2.putText

    def spy(img, text, *args, **kwargs):
        texts.append(text)
        return real(img, text, *args, **kwargs)

    monkeypatch.setattr(cv2, "putText", spy)
    dets = _dets([[10, 10, 50, 50], [60, 60, 90, 90], [5, 5, 9, 9]], ids=[12, 5, 8], conf=[0.87, 0.5, 0.25],
                 names=["bicycle", "person", "car"])
    draw_frame(_frame(), dets, labels=["person"], zones=zones, analytics=analytics, totals=totals)
    # zones, then lines, then boxes from the lowest score up (so the best tag is on top)
    assert texts == ["yard: 3 (1 bicycle, 2 person)", "gate: in 3 / out 1", "#8 car 0.25", "#5 person 0.50",
                     "#12 bicycle 0.87"]

    texts.clear()
    untracked = _dets([[10, 10, 50, 50], [20, 20, 40, 40]], conf=[0.6, 0.3])
    untracked.class_id[:] = [1, 7]
    draw_frame(_frame(), untracked, labels=["person", "bicycle"], zones=zones)
    assert texts == ["yard", "gate", "7 0.30", "bicycle 0.60"]  # no analytics/totals: names only; unknown id

    texts.clear()
    one_class = SimpleNamespace(**{**vars(analytics), "zones": {"yard": {"person": 2, "car": 0}}})
    draw_frame(_frame(), _dets([]), labels=[], zones=zones, analytics=one_class, totals={})
    assert texts == ["yard: 2 person", "gate: in 0 / out 0"]


def test_draw_frame_marks_a_line_crossed_this_frame():
    zones, analytics, totals = _scene()
    crossed = SimpleNamespace(**{**vars(analytics), "crossings": (SimpleNamespace(line="gate"),)})
    out = draw_frame(_frame(), _dets([]), labels=[], zones=zones, analytics=crossed, totals=totals)
    assert tuple(out[100, 440]) == (255, 40, 40)
    width = np.flatnonzero((out[100] == (255, 40, 40)).all(axis=1))
    assert len(width) >= 4  # twice as thick as the idle line


def test_draw_frame_refuses_non_rgb_arrays():
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)):
        with pytest.raises(InvalidInput, match="HxWx3 uint8"):
            draw_frame(bad, _dets([]), labels=[])


def test_draw_frame_clips_boxes_and_zones_outside_the_frame():
    zones = SimpleNamespace(zones=(SimpleNamespace(name="off", polygon=np.array([[-50, -50], [-10, -50], [-10, -5]]),
                                                   classes=None),),
                            lines=(), anchor="center")
    out = draw_frame(_frame(), _dets([[-100, -100, 1e6, 1e6]], ids=[1]), labels=["x"], zones=zones)
    assert out.shape == (H, W, 3)


# ----------------------------------------------------------------------------------------------- writer


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _gradient(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None, None]
    img = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                          np.full((h, w, 1), 20.0 * i)], axis=2)
    return img.astype(np.uint8)


@pytest.mark.parametrize("name", ["out.mp4", "out.avi"])
def test_writer_writes_n_frames_that_decode_back(tmp_path, umask_022, name):
    path = tmp_path / name
    with VideoWriter(path, fps=10, size=(64, 48)) as writer:
        for i in range(7):
            writer.write(_gradient(i))
    assert writer.frames_written == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with open_video(path) as reader:
        frames = list(reader)
        assert reader.fps == pytest.approx(10)
    assert len(frames) == 7
    assert all(f.image.shape == (48, 64, 3) for f in frames)
    # lossy, but the colours come back where they were (RGB order kept)
    diff = np.abs(frames[3].image.astype(int) - _gradient(3).astype(int))
    assert diff.mean() < 6


def test_writer_mode_follows_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        with VideoWriter(tmp_path / "a.mp4", fps=5, size=(16, 16)) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.mp4").stat().st_mode) == 0o600


def test_writer_pads_odd_sizes_to_even(tmp_path):
    with VideoWriter(tmp_path / "odd.mp4", fps=5, size=(33, 17)) as writer:
        assert writer.encoded_size == (34, 18)
        for i in range(3):
            writer.write(_gradient(i, 33, 17))
    with open_video(tmp_path / "odd.mp4") as reader:
        assert [f.image.shape for f in reader] == [(18, 34, 3)] * 3


def test_writer_abort_and_exception_leave_nothing(tmp_path):
    path = tmp_path / "a.mp4"
    writer = VideoWriter(path, fps=5, size=(16, 16))
    writer.write(np.zeros((16, 16, 3), np.uint8))
    assert len(list(tmp_path.iterdir())) == 1  # the hidden temporary file
    assert next(tmp_path.iterdir()).name.startswith(".a.mp4.")
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidInput, match="closed"):
        writer.write(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(InvalidInput, match="aborted"):
        writer.commit()

    with pytest.raises(RuntimeError, match="boom"), VideoWriter(path, fps=5, size=(16, 16)) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_abort_keeps_an_existing_file_and_commit_replaces_it(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(b"old")
    writer = VideoWriter(path, fps=5, size=(16, 16))
    writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.abort()
    assert path.read_bytes() == b"old"
    writer = VideoWriter(path, fps=5, size=(16, 16))
    writer.write(np.zeros((16, 16, 3), np.uint8))
    assert writer.commit() == path
    assert writer.commit() == path  # idempotent
    assert path.read_bytes()[4:8] == b"ftyp"
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_writer_dropped_without_commit_removes_its_temporary_file(tmp_path):
    writer = VideoWriter(tmp_path / "a.mp4", fps=5, size=(16, 16))
    writer.write(np.zeros((16, 16, 3), np.uint8))
    del writer
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_writer_with_no_frames_writes_nothing(tmp_path):
    with pytest.raises(OutputWriteError, match="no frames"), VideoWriter(tmp_path / "a.mp4", fps=5, size=(16, 16)):
        pass
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_bad_frames_and_arguments(tmp_path):
    with VideoWriter(tmp_path / "a.mp4", fps=5, size=(16, 8)) as writer:
        for bad in (np.zeros((16, 8, 3), np.uint8), np.zeros((8, 16), np.uint8), np.zeros((8, 16, 3), np.float32)):
            with pytest.raises(InvalidInput, match="8x16x3 uint8"):
                writer.write(bad)
        writer.write(np.zeros((8, 16, 3), np.uint8))
    with pytest.raises(UnsupportedFormat):
        VideoWriter(tmp_path / "a.gif", fps=5, size=(16, 16))
    for fps in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InvalidInput, match="fps"):
            VideoWriter(tmp_path / "b.mp4", fps=fps, size=(16, 16))
    for size in ((0, 16), (16,), "ab"):
        with pytest.raises(InvalidInput, match="size"):
            VideoWriter(tmp_path / "b.mp4", fps=5, size=size)
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_writer_that_cannot_open_raises_a_typed_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputWriteError, match="cannot write"):
        VideoWriter(tmp_path / "file" / "a.mp4", fps=5, size=(16, 16))  # the parent is a file
    with pytest.raises(OutputWriteError, match="encoder could not open"):
        VideoWriter(tmp_path / ("n" * 240 + ".mp4"), fps=5, size=(16, 16))  # the temporary name is too long
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


# ----------------------------------------------------------------------------------------------- real video


def test_annotated_real_frames_round_trip(tmp_path, shared_data):
    video = Path(shared_data("videos")) / "bikes.mp4"
    zones, analytics, totals = _scene()
    trails = Trails()
    with open_video(video, max_frames=6) as reader:
        size = reader.size
        with VideoWriter(tmp_path / "annotated.mp4", fps=reader.fps, size=size) as writer:
            for frame in reader:
                x = 100 + 10 * frame.index
                dets = _dets([[x, 100, x + 40, 200]], ids=[1])
                trails.update(dets)
                writer.write(draw_frame(frame.image, dets, labels=["person"], trails=trails, zones=zones,
                                        analytics=analytics, totals=totals))
    with open_video(tmp_path / "annotated.mp4") as reader:
        frames = list(reader)
        assert reader.fps == pytest.approx(25)
    assert len(frames) == 6
    assert frames[0].image.shape == (272, 640, 3)
