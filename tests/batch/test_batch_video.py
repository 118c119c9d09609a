"""``visor batch`` over videos: frames as work items (exact indices, the classifier's own results), images and
videos mixed, bad and truncated videos quarantined, a finished video skipped on resume and an interrupted one
redone whole, the Ray engine refusing videos, outputs of the previous schema still readable and resumable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from video_files import faststart  # tests/video_files.py
from visor.batch import OutputMismatch, iter_results, part_files, read_params, read_results, run_batch
from visor.batch.video import check_stride, resolve_stride
from visor.errors import ConfigError
from visor.io.video import open_video

REPO = Path(__file__).resolve().parents[2]
BUS = os.path.abspath(REPO / "assets" / "bus.jpg")


@pytest.fixture(scope="module")
def videos(shared_data, tmp_path_factory) -> dict[str, str]:
    """bikes.mp4 (linked), its faststart copy cut in half (114 good frames), text and an empty file named .mp4."""
    bikes = Path(shared_data("videos")) / "bikes.mp4"
    root = tmp_path_factory.mktemp("batch-videos")
    (root / "bikes.mp4").symlink_to(bikes)
    data = faststart(bikes.read_bytes())
    (root / "half.mp4").write_bytes(data[: len(data) // 2])
    (root / "notes.mp4").write_text("not a video\n")
    (root / "empty.mp4").write_bytes(b"")
    return {name: os.path.abspath(root / f"{name}.mp4") for name in ("bikes", "half", "notes", "empty")}


@pytest.fixture(scope="module")
def frames(videos) -> dict[int, object]:
    """bikes.mp4's frames by index (every 25th)."""
    with open_video(videos["bikes"], stride=25) as reader:
        return {f.index: f for f in reader}


def _by_path(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["path"], []).append(r)
    return out


def _check_classified(rows: list[dict], images: list, classifier) -> None:
    """Each row holds what ``Classifier.classify`` gives for its image: classes, labels, confidences within 1e-6."""
    for row, ref in zip(rows, classifier.classify(images, top_k=5), strict=True):
        preds = row["result"]["predictions"]
        assert [p["class_id"] for p in preds] == ref.class_id.tolist()
        assert [p["label"] for p in preds] == ref.label.tolist()
        assert all(abs(p["confidence"] - c) <= 1e-6 for p, c in zip(preds, ref.confidence.tolist(), strict=True))
        assert row["label"] == ref.label[0] and row["status"] == "ok" and row["model"] == "efficientnet_lite0"


@pytest.fixture(scope="module")
def mixed_run(videos, classifier, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch-video-out") / "mixed.jsonl"
    inputs = [videos["bikes"], BUS, videos["notes"], videos["half"], videos["empty"]]
    summary = run_batch(inputs, out=out, video_stride=50, chunk_size=2, batch_size=4, workers=2, streams=1)
    return inputs, out, summary


def test_images_and_videos_mixed(mixed_run, videos, frames, classifier):
    _, out, summary = mixed_run
    rows = _by_path(list(iter_results(out)))
    assert sorted(rows) == sorted([videos["bikes"], BUS, videos["half"]])
    bikes = sorted(rows[videos["bikes"]], key=lambda r: r["frame"])
    assert [r["frame"] for r in bikes] == [0, 50, 100, 150, 200]
    assert [r["timestamp_s"] for r in bikes] == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])
    with open_video(videos["bikes"], stride=50) as reader:
        _check_classified(bikes, [f.image for f in reader], classifier)
    (bus,) = rows[BUS]
    assert bus["frame"] is None and bus["timestamp_s"] is None
    _check_classified([bus], [BUS], classifier)
    # The truncated video: rows of the frames decoded before the damage (114 of 250), and quarantined.
    half = sorted(rows[videos["half"]], key=lambda r: r["frame"])
    assert [r["frame"] for r in half] == [0, 50, 100]
    _check_classified(half, [frames[0].image, frames[50].image, frames[100].image], classifier)
    quarantine = {r["path"]: r for r in iter_results(out, quarantine=True)}
    assert {p: (r["error_type"], r["code"]) for p, r in quarantine.items()} == {
        videos["half"]: ("CorruptVideo", "corrupt_video"),
        videos["notes"]: ("UnsupportedFormat", "unsupported_format"),
        videos["empty"]: ("CorruptVideo", "corrupt_video"),
    }
    assert "stopped after 114 of 250 frames" in quarantine[videos["half"]]["message"]
    assert "(3 frame rows before the damage were kept)" in quarantine[videos["half"]]["message"]
    assert "empty (0 bytes)" in quarantine[videos["empty"]]["message"]
    assert (summary.inputs, summary.ok, summary.quarantined, summary.skipped) == (5, 9, 3, 0)
    assert (summary.videos, summary.frames, summary.processed) == (4, 8, 12)
    assert "video_decode" in summary.stages
    assert read_params(out)["video_stride"] == 50


def test_resume_skips_finished_videos(mixed_run):
    inputs, out, _ = mixed_run
    parts = part_files(out)
    summary = run_batch(inputs, out=out, video_stride=50)
    assert (summary.inputs, summary.skipped, summary.processed, summary.videos) == (5, 5, 0, 0)
    assert part_files(out) == parts
    with pytest.raises(OutputMismatch, match=r"video_stride: 50 in the output, 25 now"):
        run_batch(inputs, out=out, video_stride=25)


def test_auto_stride_keeps_one_frame_per_second_in_parquet(videos, frames, classifier, tmp_path):
    out = tmp_path / "auto.parquet"
    summary = run_batch(videos["bikes"], out=out, workers=2, streams=1)
    rows = sorted(iter_results(out), key=lambda r: r["frame"])
    assert [r["frame"] for r in rows] == list(range(0, 250, 25))
    assert [r["timestamp_s"] for r in rows] == pytest.approx([float(s) for s in range(10)])
    _check_classified(rows, [frames[i].image for i in range(0, 250, 25)], classifier)
    assert (summary.videos, summary.frames, summary.parts) == (1, 10, 1)
    table = read_results(out)
    assert table.schema.field("frame").type == "int64" and table.column("frame").to_pylist() == [
        r["frame"] for r in iter_results(out)]
    assert read_params(out)["video_stride"] == "auto"


def test_interrupted_video_is_redone_whole(videos, monkeypatch, tmp_path):
    from visor.batch.tasks import PredictorRunner

    infer = PredictorRunner.infer
    calls = []

    def stop_on_third(self, items):
        calls.append(len(items))
        if len(calls) == 3:  # the image, bikes frame 0, then frame 100: interrupted inside the video
            raise KeyboardInterrupt
        return infer(self, items)

    out = tmp_path / "stopped.jsonl"
    inputs = [BUS, videos["bikes"]]
    monkeypatch.setattr(PredictorRunner, "infer", stop_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_batch(inputs, out=out, video_stride=100, batch_size=1, chunk_size=1, workers=1, streams=1)
    monkeypatch.undo()
    assert [(r["path"], r["frame"]) for r in iter_results(out)] == [(BUS, None)]  # frame 0 was not committed
    summary = run_batch(inputs, out=out, video_stride=100, batch_size=1, chunk_size=1, workers=1, streams=1)
    assert (summary.skipped, summary.frames, summary.videos) == (1, 3, 1)
    assert sorted((r["path"], r["frame"] or 0) for r in iter_results(out)) == sorted([
        (BUS, 0), (videos["bikes"], 0), (videos["bikes"], 100), (videos["bikes"], 200)])


def test_detect_on_frames(videos, frames, yolox_nano, tmp_path):
    out = tmp_path / "boxes.jsonl"
    summary = run_batch(videos["bikes"], out=out, task="detect", video_stride=125, workers=1, streams=1)
    rows = sorted(iter_results(out), key=lambda r: r["frame"])
    assert [r["frame"] for r in rows] == [0, 125] and summary.frames == 2
    for row, ref in zip(rows, yolox_nano.detect([frames[0].image, frames[125].image]), strict=True):
        assert row["count"] == len(ref) > 0
        boxes = row["result"]["detections"]
        assert [b["class_name"] for b in boxes] == list(ref.data["class_name"])
        assert [b["class_id"] for b in boxes] == ref.class_id.tolist()
        assert all(abs(b["confidence"] - c) <= 1e-6 for b, c in zip(boxes, ref.confidence.tolist(), strict=True))


def test_ray_engine_refuses_videos(videos, tmp_path):
    with pytest.raises(ConfigError, match=r"--engine ray runs images only.*bikes\.mp4 is a video"):
        run_batch([BUS, videos["bikes"]], out=tmp_path / "r.jsonl", engine="ray")
    assert not (tmp_path / "r.jsonl").exists()


def test_output_of_the_previous_schema_resumes(videos, tmp_path):
    """A Parquet output written before ``frame``/``timestamp_s`` and ``video_stride`` existed: resumed with a
    video, read back with nulls in the old rows."""
    import pyarrow.parquet as pq

    out = tmp_path / "old.parquet"
    run_batch(BUS, out=out)
    (part,) = part_files(out)
    pq.write_table(pq.read_table(part).drop_columns(["frame", "timestamp_s"]), part)
    params = json.loads((out / "_visor_batch.json").read_text())
    del params["video_stride"]
    (out / "_visor_batch.json").write_text(json.dumps(params))
    with pytest.raises(OutputMismatch, match="video_stride: 'auto' in the output, 125 now"):
        run_batch([BUS, videos["bikes"]], out=out, video_stride=125)  # the older output stands for "auto"
    summary = run_batch([BUS, videos["bikes"]], out=out)
    assert (summary.skipped, summary.frames) == (1, 10)
    table = read_results(out)
    pairs = zip(table.column("path").to_pylist(), table.column("frame").to_pylist(), strict=True)
    expected = [(BUS, None)] + [(videos["bikes"], i) for i in range(0, 250, 25)]
    assert sorted(pairs, key=lambda t: (t[1] is not None, t)) == expected


def test_cli_video_stride(videos, tmp_path, capsys):
    from visor.cli.main import main

    out = tmp_path / "cli.jsonl"
    assert main(["batch", videos["bikes"], "--video-stride", "125", "--out", str(out), "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["videos"], summary["frames"], summary["ok"]) == (1, 2, 2)
    assert [r["frame"] for r in iter_results(out)] == [0, 125]
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", videos["bikes"], "--video-stride", "0", "--out", str(tmp_path / "x.jsonl")])
    assert exit_info.value.code == 2 and "--video-stride: expected 'auto'" in capsys.readouterr().err


def test_stride_rules():
    assert (check_stride("auto"), check_stride(" AUTO "), check_stride("3"), check_stride(7)) == ("auto", "auto", 3, 7)
    for bad in (0, -1, "0", "x", 1.5, True):
        with pytest.raises(ConfigError, match="video_stride"):
            check_stride(bad)
    assert (resolve_stride("auto", 25.0), resolve_stride("auto", 29.97), resolve_stride("auto", 0.4),
            resolve_stride("auto", None), resolve_stride(4, 25.0)) == (25, 30, 1, 1, 4)


def test_track_task_rows_equal_visor_track(videos, yolox_nano, tmp_path):
    from visor.video.track import TrackerOptions, track

    out = tmp_path / "tracks.jsonl"
    summary = run_batch([videos["bikes"], BUS, videos["notes"], videos["half"]], out=out, task="track",
                        video_stride=5)
    by_path = _by_path(list(iter_results(out)))
    rows = sorted(by_path[videos["bikes"]], key=lambda r: r["frame"])
    with track(videos["bikes"], model=yolox_nano, options=TrackerOptions(), stride=5) as stream:
        expected = list(stream)
    assert [r["frame"] for r in rows] == [t.index for t in expected] == list(range(0, 250, 5))
    ids = [[d["tracker_id"] for d in r["result"]["detections"]] for r in rows]
    assert ids == [t.detections.data["tracker_id"].tolist() for t in expected]
    assert sum(map(len, ids)) > 0 and all(r["count"] == len(i) for r, i in zip(rows, ids, strict=True))
    assert [r["result"]["scene"] for r in rows] == [t.scene for t in expected]
    # The truncated copy: the same tracks over its 114 good frames, then quarantined.
    half = sorted(by_path[videos["half"]], key=lambda r: r["frame"])
    assert [r["frame"] for r in half] == list(range(0, 114, 5))
    assert [r["result"]["detections"] for r in half] == [r["result"]["detections"] for r in rows[:23]]
    quarantine = {r["path"]: r["code"] for r in iter_results(out, quarantine=True)}
    assert quarantine == {BUS: "invalid_input", videos["notes"]: "unsupported_format",
                          videos["half"]: "corrupt_video"}
    assert (summary.videos, summary.frames, summary.ok, summary.quarantined) == (3, 73, 73, 3)
    assert read_params(out)["options"]["tracker"] == TrackerOptions().to_dict()
    with pytest.raises(ConfigError, match="--task track runs on the local engine"):
        run_batch(videos["bikes"], out=tmp_path / "ray.jsonl", task="track", engine="ray")
