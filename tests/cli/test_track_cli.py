"""``visor track`` as users run it, in fresh processes: the whole of bikes.mp4 into a folder, frames on stdout,
and the bad sources (exit status, one error line, no files left as if complete)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from video_files import truncated_faststart  # tests/video_files.py
from visor.data.mot import read_mot
from visor.io.video import open_video

BIKES_CUTS = [30, 76, 137, 187, 242]


@pytest.fixture(scope="module")
def bikes(shared_data) -> Path:
    return Path(shared_data("videos")) / "bikes.mp4"


@pytest.fixture(scope="module")
def env(zoo_cache) -> dict[str, str]:
    return {**os.environ, "VISOR_CACHE": str(zoo_cache), "VISOR_OFFLINE": "1", "OMP_NUM_THREADS": "2"}


def visor_track(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visor", "track", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def test_bikes_into_a_folder(tmp_path, bikes, env):
    out = tmp_path / "out"
    proc = visor_track(env, bikes, "--model", "yolox_nano", "--out", out, "--json", "--no-progress")
    assert (proc.returncode, proc.stderr) == (0, "")
    summary = json.loads(proc.stdout)
    assert summary["complete"] is True and summary["frames"] == 250 and summary["scene_cuts"] == BIKES_CUTS
    doc = json.loads((out / "summary.json").read_text())
    assert {k: doc[k] for k in summary} == summary and doc["source_fps"] == 25.0
    with open_video(out / "annotated.mp4") as reader:  # decodable, every frame
        assert (reader.size, reader.frame_count) == ((640, 272), 250)
        assert sum(1 for _ in reader) == 250
    rows = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(250))
    ids_by_scene: dict[int, set[int]] = {}
    for r in rows:
        ids_by_scene.setdefault(r["scene"], set()).update(d["tracker_id"] for d in r["detections"])
    assert len(ids_by_scene) == 6
    seen: set[int] = set()
    for ids in ids_by_scene.values():  # no id spans a scene cut
        assert not ids & seen
        seen |= ids
    mot = read_mot(out / "tracks.txt")
    assert len(mot) == sum(len(r["detections"]) for r in rows) and set(mot.track_ids.tolist()) == seen
    assert mot.frames.min() >= 1 and mot.frames.max() <= 250
    counts = json.loads((out / "counts.json").read_text())
    assert counts["tracks"] == summary["tracks"] == len(seen) and counts["scene_cuts"] == BIKES_CUTS


def test_frames_on_stdout(bikes, env):
    proc = visor_track(env, bikes, "--max-frames", "3", "--stride", "2", "--json")
    assert (proc.returncode, proc.stderr) == (0, "")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["frame"], r["timestamp_s"]) for r in rows] == [(0, 0.0), (2, 0.08), (4, 0.16)]


@pytest.mark.parametrize(("content", "error"), [
    (b"", "CorruptVideo: "),
    (b"hello, this is text\n", "UnsupportedFormat: "),
    (None, "CorruptVideo: "),  # the first half of bikes.mp4, whose index is at its end
])
def test_bad_sources(tmp_path, bikes, env, content, error):
    source = tmp_path / "clip.mp4"
    source.write_bytes(bikes.read_bytes()[: bikes.stat().st_size // 2] if content is None else content)
    proc = visor_track(env, source, "--out", tmp_path / "out")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"visor: error: {error}{source}") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_usage_errors(tmp_path, bikes, env):
    proc = visor_track(env, bikes, "--stride", "0")
    assert proc.returncode == 2 and "--stride: must be at least 1" in proc.stderr
    proc = visor_track(env, tmp_path / "missing.mp4")
    assert proc.returncode == 1
    assert proc.stderr == f"visor: error: ImageNotFound: no such file: {tmp_path / 'missing.mp4'}\n"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.json").write_text("{}")
    proc = visor_track(env, bikes, "--out", tmp_path / "out", "--model", "yolox_nano")
    assert proc.returncode == 2 and "already exists; choose an empty folder or pass --overwrite" in proc.stderr
    assert os.listdir(tmp_path / "out") == ["summary.json"]


def test_unreachable_stream(tmp_path, env):
    """A closed port: each failed attempt is reported as it is retried, then given up after --reconnect-attempts:
    exit 1 with one error line, no output folder."""
    url = "rtsp://127.0.0.1:1/cam"
    proc = visor_track(env, url, "--out", tmp_path / "out", "--reconnect-attempts", "2")
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"{url}: connection attempt 1 failed") and "retrying in 0.5 s" in lines[0]
    assert lines[1].startswith(f"visor: error: StreamUnavailable: {url}: 2 consecutive connection attempts failed")
    assert len(lines) == 2
    assert not (tmp_path / "out").exists()


def test_truncated_video_keeps_partial_files(tmp_path, bikes, env):
    """A file cut in half (index first): the 114 frames before the cut are kept, under .partial names, and
    summary.json says the run is not complete; exit 1 with one line."""
    source = tmp_path / "half.mp4"
    source.write_bytes(truncated_faststart(bikes.read_bytes()))
    out = tmp_path / "out"
    proc = visor_track(env, source, "--out", out, "--no-progress")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"visor: error: CorruptVideo: {source}") and proc.stderr.count("\n") == 1
    assert sorted(os.listdir(out)) == ["annotated.partial.mp4", "counts.partial.json", "frames.partial.jsonl",
                                       "summary.json", "tracks.partial.txt"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["frames"] == 114
    assert len((out / "frames.partial.jsonl").read_text().splitlines()) == 114
    with open_video(out / "annotated.partial.mp4") as reader:
        assert sum(1 for _ in reader) == 114
