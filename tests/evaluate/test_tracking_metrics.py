"""Tracking metrics: a hand-computed sequence, and py-motmetrics 1.4.0's figures on two MOT15 sequences."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from visor.data.mot import empty_tracks, parse_mot, read_mot
from visor.errors import InvalidInput
from visor.evaluate.tracking import evaluate_tracking

GT = """\
1,1,0,0,10,10
1,2,100,0,10,10
2,1,0,0,10,10
2,2,100,0,10,10
3,1,0,0,10,10
3,2,100,0,10,10
4,1,0,0,10,10
4,2,100,0,10,10
5,1,0,0,10,10
6,1,0,0,10,10
6,3,200,200,10,10
"""
PRED = """\
1,10,0,0,10,10
1,20,100,0,10,10
2,10,0,0,10,10
2,20,100,0,10,10
2,30,50,50,10,10
3,11,0,0,10,10
4,11,0,0,10,10
4,20,100,0,10,10
5,11,2,0,10,10
6,11,3,0,10,10
6,12,0,0,10,10
"""


def test_hand_computed_sequence() -> None:
    # gt 1: matched to 10, then 11 (one switch); frame 6 keeps 11 (IoU 7/13) although 12 overlaps it exactly.
    # gt 2: matched, matched, missed, matched (one fragmentation, 3/4 tracked); gt 3: never matched.
    r = evaluate_tracking(parse_mot(GT), parse_mot(PRED))
    assert (r.num_matches, r.num_switches, r.num_misses, r.num_false_positives) == (8, 1, 2, 2)
    assert (r.mostly_tracked, r.partially_tracked, r.mostly_lost, r.num_fragmentations) == (1, 1, 1, 1)
    assert (r.num_frames, r.num_objects, r.num_predictions, r.num_unique_objects) == (6, 11, 11, 3)
    assert r.mota == pytest.approx(1 - 5 / 11, abs=1e-12)
    assert r.motp == pytest.approx((1 / 3 + 6 / 13) / 9, abs=1e-12)
    assert (r.idtp, r.idfp, r.idfn) == (7, 4, 4)  # 1 <-> 11 (4 frames), 2 <-> 20 (3 frames)
    assert r.idf1 == pytest.approx(7 / 11) and r.idp == pytest.approx(7 / 11) and r.idr == pytest.approx(7 / 11)
    assert r.precision == pytest.approx(9 / 11) and r.recall == pytest.approx(9 / 11)
    # IoU >= 0.7: frame 5 (IoU 2/3) is a miss and an FP; in frame 6 gt 1 goes to 12: a second switch
    strict = evaluate_tracking(parse_mot(GT), parse_mot(PRED), iou_threshold=0.7)
    assert (strict.num_matches, strict.num_switches, strict.num_misses, strict.num_false_positives) == (6, 2, 3, 3)
    assert strict.mota == pytest.approx(1 - 8 / 11, abs=1e-12) and strict.motp == 0.0


def test_empty_prediction_and_bad_arguments() -> None:
    r = evaluate_tracking(parse_mot(GT), empty_tracks())
    assert (r.num_misses, r.num_false_positives, r.mota, r.idf1, r.mostly_lost) == (11, 0, 0.0, 0.0, 3)
    assert math.isnan(r.motp) and math.isnan(r.idp)
    with pytest.raises(InvalidInput, match="iou_threshold"):
        evaluate_tracking(parse_mot(GT), parse_mot(PRED), iou_threshold=0)
    with pytest.raises(InvalidInput, match="two MotTracks"):
        evaluate_tracking(GT, PRED)  # type: ignore[arg-type]


# Measured with py-motmetrics 1.4.0 (gt read with min_confidence=1, test.txt with every row, IoU >= 0.5).
PINNED = {
    "TUD-Campus": dict(
        mota=0.5264623955431755, motp=0.2772010846394618, idf1=0.5576592082616179, idp=0.7297297297297297,
        idr=0.45125348189415043, num_switches=7, num_fragmentations=7, mostly_tracked=1, partially_tracked=6,
        mostly_lost=1, num_false_positives=13, num_misses=150, num_frames=71, num_objects=359, num_predictions=222,
    ),
    "TUD-Stadtmitte": dict(
        mota=0.5640138408304498, motp=0.34590429554400914, idf1=0.6446194225721785, idp=0.8197596795727636,
        idr=0.5311418685121108, num_switches=7, num_fragmentations=6, mostly_tracked=5, partially_tracked=4,
        mostly_lost=1, num_false_positives=45, num_misses=452, num_frames=179, num_objects=1156, num_predictions=749,
    ),
}
COMPARED = [*PINNED["TUD-Campus"], "precision", "recall", "num_matches", "num_unique_objects", "idtp", "idfp", "idfn"]


def _motmetrics(monkeypatch):
    if os.environ.get("CI", "").lower() == "true":
        import motmetrics  # CI installs the test extra: a missing package is a failure there
    else:
        motmetrics = pytest.importorskip("motmetrics")
    # motmetrics 1.4.0 calls np.asfarray, which numpy 2 removed
    monkeypatch.setattr(np, "asfarray", lambda a, dtype=float: np.asarray(a, dtype=dtype), raising=False)
    return motmetrics


@pytest.mark.parametrize("sequence", sorted(PINNED))
def test_mot15_pinned_values(shared_data, sequence: str) -> None:
    seq = shared_data("videos/mot15-gt") / sequence
    r = evaluate_tracking(read_mot(seq / "gt.txt", min_confidence=1), read_mot(seq / "test.txt"))
    for name, value in PINNED[sequence].items():
        assert getattr(r, name) == pytest.approx(value, abs=1e-9), name


@pytest.mark.parametrize("sequence", sorted(PINNED))
def test_mot15_matches_motmetrics(shared_data, monkeypatch, sequence: str) -> None:
    seq = shared_data("videos/mot15-gt") / sequence
    mm = _motmetrics(monkeypatch)
    gt = mm.io.loadtxt(str(seq / "gt.txt"), fmt="mot15-2D", min_confidence=1)
    ts = mm.io.loadtxt(str(seq / "test.txt"), fmt="mot15-2D")
    acc = mm.utils.compare_to_groundtruth(gt, ts, "iou", distth=0.5)
    ref = mm.metrics.create().compute(acc, metrics=COMPARED, name=sequence).iloc[0]
    r = evaluate_tracking(read_mot(seq / "gt.txt", min_confidence=1), read_mot(seq / "test.txt"))
    for name in COMPARED:
        assert getattr(r, name) == pytest.approx(float(ref[name]), abs=1e-6), name
