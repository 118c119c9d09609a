"""MOT text files: the MOT15 TUD sequences read into arrays, exact round trip, malformed rows refused."""

from __future__ import annotations

import numpy as np
import pytest

from visor.data.mot import MotTracks, empty_tracks, parse_mot, read_mot, write_mot
from visor.errors import InvalidInput


def test_reads_mot15_ground_truth_and_tracker_output(shared_data) -> None:
    seq = shared_data("videos/mot15-gt") / "TUD-Campus"
    gt = read_mot(seq / "gt.txt")
    assert len(gt) == 359 and len(gt.frame_ids) == 71 and gt.track_ids.tolist() == list(range(1, 9))
    assert gt.frame_ids[[0, -1]].tolist() == [1, 71]
    assert gt.extra.shape == (359, 3) and (gt.extra == -1).all() and (gt.confidences == 1).all()
    first = gt.per_frame()[1]
    assert first.ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert first.boxes[0].tolist() == [399, 182, 121, 229]
    pred = read_mot(seq / "test.txt")
    assert len(pred) == 222 and pred.track_ids.tolist() == list(range(1, 14))
    assert pred.boxes[0].tolist() == [113.84, 274.5, 57.307, 130.05]
    assert (pred.confidences == -1).all()
    assert len(read_mot(seq / "test.txt", min_confidence=0)) == 0
    assert len(read_mot(seq / "gt.txt", min_confidence=1)) == 359


def test_round_trip_is_exact(shared_data, tmp_path) -> None:
    src = read_mot(shared_data("videos/mot15-gt") / "TUD-Stadtmitte" / "test.txt")
    out = write_mot(tmp_path / "sub" / "t.txt", src)
    back = read_mot(out)
    for name in ("frames", "ids", "boxes", "confidences", "extra"):
        assert np.array_equal(getattr(back, name), getattr(src, name)), name
    assert out.read_text().splitlines()[0] == "1,1,425.78,91.371,106.46,241.58,-1,-1,-1,-1"


def test_rows_sorted_by_frame_short_rows_padded_whitespace_accepted() -> None:
    t = parse_mot("2,5,0,0,4,4,0.5,7\n\n1 9 1.5 2 3 4\n1,3,0,0,1,1,0.9\n")
    assert t.frames.tolist() == [1, 1, 2] and t.ids.tolist() == [9, 3, 5]
    assert t.confidences.tolist() == [1.0, 0.9, 0.5]  # a six-column row has confidence 1
    assert t.extra.tolist() == [[-1.0], [-1.0], [7.0]]
    assert [(f.frame, f.ids.tolist()) for f in t.iter_frames()] == [(1, [9, 3]), (2, [5])]
    assert parse_mot("2,5,0,0,4,4,0.5\n1,3,0,0,1,1,0.9\n", min_confidence=0.6).ids.tolist() == [3]
    assert len(empty_tracks()) == 0 and empty_tracks().per_frame() == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,2,3,4,5\n", "t.txt:1: expected at least 6 columns"),
        ("1,1,0,0,1,1\n1,2,x,0,1,1\n", "t.txt:2: not a number"),
        ("1.5,1,0,0,1,1\n", "t.txt:1: frame must be an integer"),
        ("1,nan,0,0,1,1\n", "t.txt:1: id must be an integer"),
        ("-1,1,0,0,1,1\n", "t.txt:1: frame must be >= 0"),
        ("1,1,0,inf,1,1\n", "t.txt:1: box values must be finite"),
        ("1,1,0,0,-1,1\n", "t.txt:1: width and height must be >= 0"),
        ("1,1,0,0,1,1,nan\n", "t.txt:1: confidence is not a number"),
        ("1,1,0,0,1,1\n2,1,0,0,1,1\n1,1,5,5,1,1\n", "t.txt: frame 1 has id 1 more than once"),
    ],
)
def test_malformed_rows_raise_invalid_input(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.")):
        parse_mot(text, source="t.txt")


def test_missing_file_and_bad_arrays(tmp_path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        read_mot(tmp_path / "none.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe1,1")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        read_mot(tmp_path / "bin.txt")
    with pytest.raises(InvalidInput, match="disagree"):
        MotTracks(np.array([1, 2]), np.array([1]), np.zeros((2, 4)), np.ones(2), np.zeros((2, 0)))
    with pytest.raises(InvalidInput, match="integers"):
        MotTracks(np.array([1.5]), np.array([1]), np.zeros((1, 4)), np.ones(1), np.zeros((1, 0)))
