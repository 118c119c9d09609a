"""The tracking pipeline on bikes.mp4 with yolox_nano: scene cuts reset ids, the output folder, partial
outputs on a truncated file or an interrupt, and sources that fail before their first frame."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mjpeg_server import MjpegServer, encode_video  # tests/mjpeg_server.py
from video_files import faststart  # tests/video_files.py
from visor.data.mot import read_mot
from visor.errors import ConfigError, CorruptVideo, ImageNotFound, OutputConflict, UnsupportedFormat
from visor.io.video import open_video
from visor.video.analytics import Line, Zone, ZoneConfig
from visor.video.track import OUTPUT_FILES, PARTIAL_FILES, TrackerOptions, VideoTracker, track, track_to_folder

BIKES_CUTS = [30, 76, 137, 187, 242]


@pytest.fixture(scope="module")
def bikes(shared_data) -> Path:
    return Path(shared_data("videos")) / "bikes.mp4"


@pytest.fixture(scope="module")
def bikes_run(bikes, yolox_nano):
    """Every frame of bikes.mp4 tracked, and the tracker's counts."""
    with track(bikes, model=yolox_nano) as stream:
        frames = list(stream)
        return frames, stream.tracker.counts()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"conf": 0.3}, "above low_thresh"),
    ({"track_thresh": 1.5}, "track_thresh must be a number in"),
    ({"low_thresh": 0.6}, "low_thresh <= track_thresh"),
    ({"match_thresh": 0}, "match_thresh must be above 0"),
    ({"track_buffer": -1}, "track_buffer"),
    ({"scene_cut_threshold": 1.0}, "scene_cut_threshold"),
    ({"iou": "0.5"}, "iou must be a number"),
])
def test_options_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrackerOptions(**kwargs)


# --------------------------------------------------------------------------- bikes.mp4


def test_scene_cuts_split_the_ids(bikes_run):
    frames, counts = bikes_run
    assert [f.index for f in frames] == list(range(250))
    assert [f.index for f in frames if f.scene_cut] == BIKES_CUTS
    assert [f.scene for f in frames] == [int(np.searchsorted(BIKES_CUTS, f.index, side="right")) for f in frames]
    ids_by_scene: dict[int, set[int]] = {}
    for f in frames:
        ids_by_scene.setdefault(f.scene, set()).update(f.detections.data["tracker_id"].tolist())
    scenes = sorted(ids_by_scene)
    assert scenes == [0, 1, 2, 3, 4, 5]
    assert sum(1 for s in scenes if ids_by_scene[s]) >= 4, ids_by_scene  # so that disjointness is not vacuous
    for a in scenes:
        for b in scenes:
            if a < b:
                assert not ids_by_scene[a] & ids_by_scene[b], (a, b)
    everything = set().union(*ids_by_scene.values())
    assert counts["tracks"] == len(everything) and sum(counts["tracks_by_class"].values()) == len(everything)
    assert counts["scene_cuts"] == BIKES_CUTS and counts["scenes"] == 6 and counts["frames"] == 250


def test_without_scene_cuts_an_id_spans_a_cut(bikes, yolox_nano):
    """The reset is what keeps ids apart: with cut detection off, a track carries across the cut at 76."""
    tracker = VideoTracker(yolox_nano, options=TrackerOptions(scene_cut_threshold=None), fps=25.0)
    with open_video(bikes, max_frames=84) as reader:
        frames = [tracker.process(f) for f in reader if f.index >= 66]
    before = set().union(*(f.detections.data["tracker_id"].tolist() for f in frames if f.index < 76))
    after = set().union(*(f.detections.data["tracker_id"].tolist() for f in frames if f.index >= 76))
    assert before & after == {1}
    assert all(f.scene == 0 and not f.scene_cut for f in frames)


def test_frames_carry_ids_and_class_names(bikes_run, yolox_nano):
    frames, _ = bikes_run
    labels = yolox_nano.labels
    boxes = 0
    for f in frames:
        d = f.detections
        assert d.data["tracker_id"].dtype == np.int64
        assert len(set(d.data["tracker_id"].tolist())) == len(d)  # one box per track per frame
        assert [labels[c] for c in d.class_id.tolist()] == d.data["class_name"].tolist()
        assert (d.confidence > 0.1).all()
        boxes += len(d)
        row = json.loads(json.dumps(f.to_dict()))
        assert row["frame"] == f.index and row["analytics"] is None and f.image is None
        assert [r["tracker_id"] for r in row["detections"]] == d.data["tracker_id"].tolist()
    assert boxes > 250


def test_process_equals_the_threaded_pipeline(bikes, bikes_run, yolox_nano):
    """VideoTracker.process one frame at a time (what watch runs) gives what track()'s prefetching thread gives."""
    frames, _ = bikes_run
    tracker = VideoTracker(yolox_nano, fps=25.0)
    with open_video(bikes, max_frames=40) as reader:
        got = [tracker.process(frame, keep_image=True) for frame in reader]
    assert [g.to_dict() for g in got] == [f.to_dict() for f in frames[:40]]
    assert got[0].image.shape == (272, 640, 3)


def test_zones_are_counted(bikes, yolox_nano):
    everywhere = Zone("all", np.array([[-10, -10], [650, -10], [650, 290], [-10, 290]], float))
    people = Zone("people", np.array([[0, 0], [640, 0], [640, 272], [0, 272]], float), classes=("person",))
    zones = ZoneConfig(zones=(everywhere, people), lines=(Line("mid", (320, 0), (320, 272)),))
    with track(bikes, model=yolox_nano, zones=zones, max_frames=60) as stream:
        frames = list(stream)
        counts = stream.tracker.counts()
    assert len(frames) == 60 and set(counts) >= {"lines", "zones", "tracks"}
    for f in frames:
        names = Counter(f.detections.data["class_name"].tolist())
        assert f.analytics.zones["all"] == dict(names)
        assert sorted(f.analytics.members["all"]) == sorted(f.detections.data["tracker_id"].tolist())
        assert set(f.analytics.zones["people"]) <= {"person"}
    assert any(f.analytics.zones["all"] for f in frames)


def test_zone_class_unknown_to_the_model(bikes, yolox_nano):
    zones = ZoneConfig(zones=(Zone("z", np.array([[0, 0], [10, 0], [10, 10]], float), classes=("persn",)),))
    with pytest.raises(ConfigError, match=r"no class 'persn'.*person"):
        track(bikes, model=yolox_nano, zones=zones)


def test_image_sequence(tmp_path, bikes, yolox_nano):
    seq = tmp_path / "seq"
    seq.mkdir()
    with open_video(bikes, max_frames=6) as reader:
        for f in reader:
            Image.fromarray(f.image).save(seq / f"{f.index:04d}.png")
    with track(seq, model=yolox_nano, fps=5.0) as stream:
        frames = list(stream)
    assert [(f.index, f.timestamp_s) for f in frames] == [(i, i / 5.0) for i in range(6)]


# --------------------------------------------------------------------------- the output folder


def test_track_to_folder(tmp_path, bikes, bikes_run, yolox_nano):
    frames, _ = bikes_run
    out = tmp_path / "out"
    summary = track_to_folder(bikes, out, model=yolox_nano, max_frames=40)
    assert summary.complete and summary.frames == 40 and summary.scene_cuts == (30,)
    assert sorted(os.listdir(out)) == sorted(OUTPUT_FILES.values())  # no temporary file left
    for name in OUTPUT_FILES.values():
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644 & ~_umask()
    rows = (out / "frames.jsonl").read_text().splitlines()
    assert [json.loads(r) for r in rows] == [f.to_dict() for f in frames[:40]]
    mot = read_mot(out / "tracks.txt")
    expected = [(f.index + 1, tid) for f in frames[:40] for tid in f.detections.data["tracker_id"].tolist()]
    assert list(zip(mot.frames.tolist(), mot.ids.tolist(), strict=True)) == sorted(expected)
    first = next(f for f in frames if len(f.detections))
    row = mot.per_frame()[first.index + 1]
    x1, y1, x2, y2 = first.detections.xyxy[0].astype(np.float64)
    np.testing.assert_allclose(row.boxes[0], [x1, y1, x2 - x1, y2 - y1], atol=2e-3)
    assert mot.extra.shape[1] == 2 and (mot.extra[:, 1] == -1).all()
    classes = [c for f in frames[:40] for c in f.detections.class_id.tolist()]
    assert Counter(mot.extra[:, 0].astype(int).tolist()) == Counter(classes)
    with open_video(out / "annotated.mp4") as reader:
        assert reader.size == (640, 272) and reader.fps == pytest.approx(25.0)
        assert sum(1 for _ in reader) == 40
    doc = json.loads((out / "summary.json").read_text())
    assert doc["complete"] is True and doc["frames"] == 40 and doc["error"] is None
    assert json.loads((out / "counts.json").read_text()) == doc["counts"] == summary.counts
    with pytest.raises(OutputConflict, match="already exists"):
        track_to_folder(bikes, out, model=yolox_nano, max_frames=3)
    again = track_to_folder(bikes, out, model=yolox_nano, max_frames=3, video=False, overwrite=True)
    assert again.frames == 3 and len((out / "frames.jsonl").read_text().splitlines()) == 3
    assert "video" not in again.files and not (out / "annotated.mp4").exists()  # not left from the first run


def test_a_dropped_stream_stops_its_thread(bikes, yolox_nano):
    import gc
    import threading

    stream = track(bikes, model=yolox_nano)
    assert next(stream).index == 0
    assert any(t.name == "visor-track-decode" for t in threading.enumerate())
    del stream
    gc.collect()
    for _ in range(50):
        if not any(t.name == "visor-track-decode" for t in threading.enumerate()):
            break
        threading.Event().wait(0.05)
    assert not any(t.name == "visor-track-decode" for t in threading.enumerate())


def test_output_folder_may_not_hold_the_input(tmp_path, bikes, yolox_nano):
    seq = tmp_path / "seq"
    seq.mkdir()
    Image.new("RGB", (32, 24)).save(seq / "a.png")
    with pytest.raises(OutputConflict, match="is inside the input"):
        track_to_folder(seq, seq / "out", model=yolox_nano, fps=1.0)
    assert sorted(os.listdir(seq)) == ["a.png"]


def test_truncated_file_keeps_partial_outputs(tmp_path, bikes, bikes_run, yolox_nano):
    frames, _ = bikes_run
    data = faststart(bikes.read_bytes())
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with pytest.raises(CorruptVideo, match="stopped after 114 of 250"):
        track_to_folder(half, out, model=yolox_nano)
    assert sorted(os.listdir(out)) == sorted(PARTIAL_FILES.values())
    rows = [json.loads(r) for r in (out / "frames.partial.jsonl").read_text().splitlines()]
    assert rows == [f.to_dict() for f in frames[:114]]
    doc = json.loads((out / "summary.json").read_text())
    assert doc["complete"] is False and doc["frames"] == 114 and doc["error"].startswith("CorruptVideo:")
    assert doc["scene_cuts"] == [30, 76]
    with open_video(out / "annotated.partial.mp4") as reader:
        assert sum(1 for _ in reader) == 114
    assert read_mot(out / "tracks.partial.txt").frames.max() <= 114


def test_interrupt_keeps_partial_outputs(tmp_path, bikes, yolox_nano, monkeypatch):
    real = VideoTracker.update

    def interrupted(self, frame, detections, **kw):
        if frame.index == 5:
            raise KeyboardInterrupt
        return real(self, frame, detections, **kw)

    monkeypatch.setattr(VideoTracker, "update", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        track_to_folder(bikes, out, model=yolox_nano, max_frames=20)
    assert sorted(os.listdir(out)) == sorted(PARTIAL_FILES.values())
    doc = json.loads((out / "summary.json").read_text())
    assert doc["complete"] is False and doc["frames"] == 5 and doc["error"] == "KeyboardInterrupt"
    assert len((out / "frames.partial.jsonl").read_text().splitlines()) == 5


def test_failure_before_the_first_frame_leaves_nothing(tmp_path, bikes, yolox_nano, monkeypatch):
    def broken(self, frame, detections, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(VideoTracker, "update", broken)
    with pytest.raises(RuntimeError, match="boom"):
        track_to_folder(bikes, tmp_path / "out", model=yolox_nano)
    assert not (tmp_path / "out").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError, match="boom"):
        track_to_folder(bikes, tmp_path / "kept", model=yolox_nano)
    assert os.listdir(tmp_path / "kept") == []


@pytest.mark.parametrize(("content", "error", "match"), [
    (b"", CorruptVideo, "empty"),
    (b"this is not a video\n", UnsupportedFormat, "not a supported video"),
    (None, CorruptVideo, "cannot be opened"),  # the first half of bikes.mp4: its index is at the end
])
def test_bad_sources_leave_nothing(tmp_path, bikes, yolox_nano, content, error, match):
    source = tmp_path / "clip.mp4"
    source.write_bytes(bikes.read_bytes()[: bikes.stat().st_size // 2] if content is None else content)
    with pytest.raises(error, match=match):
        track_to_folder(source, tmp_path / "out", model=yolox_nano)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ImageNotFound):
        track(tmp_path / "missing.mp4", model=yolox_nano)


def test_live_mjpeg_stream(tmp_path, bikes, yolox_nano, monkeypatch):
    """An HTTP MJPEG stream on loopback: frames in order (the latest first: indices may skip), then the folder."""
    jpegs = encode_video(bikes, max_frames=20)
    with MjpegServer(jpegs, fps=25, loop=True) as server:
        with track(server.url, model=yolox_nano, max_frames=5) as stream:
            frames = list(stream)
        assert len(frames) == 5
        assert [f.index for f in frames] == sorted({f.index for f in frames})
        assert all(f.timestamp_s is not None for f in frames)
        summary = track_to_folder(server.url, tmp_path / "out", model=yolox_nano, max_frames=4)
        assert summary.complete and summary.frames == 4 and summary.source == server.url
        with open_video(tmp_path / "out" / "annotated.mp4") as reader:
            assert sum(1 for _ in reader) == 4
        # Ctrl-C is how a run on a live stream ends: complete files, nothing raised
        real, calls = VideoTracker.update, []

        def interrupted(self, frame, detections, **kw):
            calls.append(frame.index)
            if len(calls) == 4:
                raise KeyboardInterrupt
            return real(self, frame, detections, **kw)

        monkeypatch.setattr(VideoTracker, "update", interrupted)
        summary = track_to_folder(server.url, tmp_path / "stopped", model=yolox_nano)
    assert summary.complete and summary.frames == 3
    assert sorted(os.listdir(tmp_path / "stopped")) == sorted(OUTPUT_FILES.values())
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text())["stopped_by_interrupt"] is True
