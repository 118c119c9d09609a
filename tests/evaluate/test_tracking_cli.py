"""``visor evaluate PRED GT``: a tracker's MOT CSV against MOT ground truth (py-motmetrics' figures on MOT15
TUD-Campus, printed and as JSON), the folder layouts, the flags, malformed input; and HOTA, pinned to TrackEval's."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from visor.cli.evaluate import is_tracking_output
from visor.cli.main import main
from visor.data.mot import MotTracks, empty_tracks, parse_mot, read_mot
from visor.errors import InvalidInput
from visor.evaluate.tracking import HOTA_ALPHAS, box_iou_xywh, evaluate_hota, evaluate_tracking

# py-motmetrics 1.4.0 on TUD-Campus (tests/evaluate/test_tracking_metrics.py pins the full-precision figures)
CAMPUS = {"MOTA": "0.526462", "MOTP": "0.277201", "IDF1": "0.557659", "IDP": "0.729730", "IDR": "0.451253",
          "ID switches": "7", "false positives": "13", "misses (FN)": "150", "fragmentations": "7"}
# trackeval 1.3.0 (TrackEval's HOTA, MIT; `pip download --no-deps trackeval`), on the same IoU matrices
HOTA_PINNED = {
    "TUD-Campus": dict(hota=0.3913974378451139, deta=0.418047030142763, assa=0.36912068120832836,
                       loca=0.770052227022172),
    "TUD-Stadtmitte": dict(hota=0.3978490169927877, deta=0.3922675723693166, assa=0.4088407518112996,
                           loca=0.737521177178062),
}


def _rows(text: str) -> dict[str, str]:
    """The printed table as {label: value text} (labels are separated from values by two spaces)."""
    out = {}
    for line in text.splitlines():
        if "  " in line:
            key, value = line.split("  ", 1)
            out[key.strip()] = value.strip()
    return out


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visor", "evaluate", *argv], capture_output=True, text=True,
                          timeout=120)


def test_prints_motmetrics_figures_in_a_fresh_process(shared_data) -> None:
    seq = shared_data("videos/mot15-gt") / "TUD-Campus"
    proc = _cli(str(seq / "test.txt"), str(seq / "gt.txt"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no deprecation warning: PRED is not a model
    rows = _rows(proc.stdout)
    for name, value in CAMPUS.items():
        assert rows[name].split()[0] == value, name
    assert rows["MT / PT / ML"].startswith("1 / 6 / 1 of 8")
    assert rows["HOTA"].split()[0] == "0.391397"
    assert rows["boxes"] == "359 ground truth, 222 predicted"


def test_json_from_folder_layouts_in_a_fresh_process(shared_data, tmp_path) -> None:
    seq = shared_data("videos/mot15-gt") / "TUD-Campus"
    run = tmp_path / "run"  # what `visor track --out` writes
    run.mkdir()
    shutil.copy(seq / "test.txt", run / "tracks.txt")
    (tmp_path / "TUD-Campus" / "gt").mkdir(parents=True)  # MOTChallenge: SEQ/gt/gt.txt
    shutil.copy(seq / "gt.txt", tmp_path / "TUD-Campus" / "gt" / "gt.txt")
    proc = _cli(str(run), str(tmp_path / "TUD-Campus"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["prediction"] == str(run / "tracks.txt")
    assert doc["ground_truth"] == str(tmp_path / "TUD-Campus" / "gt" / "gt.txt")
    assert doc["mota"] == pytest.approx(0.5264623955431755, abs=1e-9)
    assert doc["idf1"] == pytest.approx(0.5576592082616179, abs=1e-9)
    assert doc["hota"] == pytest.approx(HOTA_PINNED["TUD-Campus"]["hota"], abs=1e-12)
    assert (doc["num_switches"], doc["num_false_positives"], doc["num_misses"]) == (7, 13, 150)
    assert (doc["mostly_tracked"], doc["partially_tracked"], doc["mostly_lost"]) == (1, 6, 1)
    assert doc["iou_threshold"] == 0.5 and doc["ground_truth_rows"] == "confidence >= 1"
    # a sequence folder with gt.txt at its top (as ../shared lays MOT15 out) works too
    assert main(["evaluate", str(run), str(seq)]) == 0


GT = "1,1,0,0,10,10,1\n2,1,0,0,10,10,1\n2,2,50,50,10,10,0\n3,1,0,0,10,10,1\n"
PRED = "1,7,0,0,10,10\n2,7,2,0,10,10\n3,7,3,0,10,10\n"


def test_iou_ignored_rows_and_empty_predictions(tmp_path, capsys) -> None:
    (tmp_path / "gt.txt").write_text(GT)
    (tmp_path / "pred.txt").write_text(PRED)
    (tmp_path / "empty.txt").write_text("")

    def run(*argv: str) -> dict:
        assert main(["evaluate", *argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    gt, pred = str(tmp_path / "gt.txt"), str(tmp_path / "pred.txt")
    d = run(pred, gt)  # the confidence-0 box of id 2 is ignored; IoU 1, 2/3 (frame 2) and 7/13 (frame 3)
    assert (d["num_objects"], d["num_matches"], d["num_misses"], d["num_false_positives"]) == (3, 3, 0, 0)
    d = run(pred, gt, "--all-gt-rows")
    assert (d["num_objects"], d["num_misses"], d["ground_truth_rows"]) == (4, 1, "all")
    d = run(pred, gt, "--iou", "0.6")  # frame 3 (IoU 7/13 < 0.6) becomes a miss and a false positive
    assert (d["num_matches"], d["num_misses"], d["num_false_positives"], d["iou_threshold"]) == (2, 1, 1, 0.6)
    d = run(str(tmp_path / "empty.txt"), gt)  # undefined ratios are null, not NaN (strict JSON)
    assert d["motp"] is None and d["idp"] is None and d["mota"] == 0.0 and d["num_misses"] == 3
    assert d["hota"] == 0.0 and d["loca"] == 1.0


def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys) -> None:
    (tmp_path / "gt.txt").write_text(GT)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,0,0,10,10\n2,1,0,zero,10,10\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, message in (
        ([str(bad), str(tmp_path / "gt.txt")], f"{bad}:2: not a number"),
        ([str(tmp_path / "gt.txt"), str(bad)], f"{bad}:2: not a number"),
        ([str(tmp_path / "gt.txt"), str(empty)], "needs gt/gt.txt"),  # a folder without ground truth
        ([str(tmp_path / "gt.txt"), str(tmp_path / "nope.txt")], "no such ground-truth file"),
    ):
        assert main(["evaluate", *argv]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("visor: error: ") and message in lines[0], captured.err
    # usage errors: exit 2
    assert main(["evaluate", str(bad), str(tmp_path / "gt.txt"), "--iou", "0"]) == 2
    assert main(["evaluate", str(bad), str(tmp_path / "gt.txt"), "--model", "yolox_nano"]) == 2


def test_what_selects_tracking(tmp_path) -> None:
    (tmp_path / "t.txt").write_text(PRED)
    (tmp_path / "t.CSV").write_text(PRED)
    (tmp_path / "m.onnx").write_bytes(b"")
    run, model = tmp_path / "run", tmp_path / "model"
    run.mkdir()
    model.mkdir()
    (run / "tracks.txt").write_text(PRED)
    (model / "tracks.txt").write_text(PRED)
    (model / "card.json").write_text("{}")  # a model folder stays a model
    assert is_tracking_output(str(tmp_path / "t.txt")) and is_tracking_output(str(tmp_path / "t.CSV"))
    assert is_tracking_output(str(run))
    for other in (tmp_path / "m.onnx", model, tmp_path / "missing.txt", tmp_path, "yolox_nano", None):
        assert not is_tracking_output(None if other is None else str(other)), other


# ------------------------------------------------------------------------------------------------- HOTA


def _mot(rows: list[tuple[int, int, float, float, float, float]]) -> MotTracks:
    a = np.asarray(rows, np.float64)
    return MotTracks(a[:, 0], a[:, 1], a[:, 2:6], np.ones(len(a)), np.zeros((len(a), 0)))


def test_hota_hand_computed() -> None:
    gt = _mot([(f, 1, 0, 0, 10, 10) for f in range(1, 5)])
    split = _mot([(f, 7 if f <= 2 else 8, 0, 0, 10, 10) for f in range(1, 5)])  # one object, two ids
    r = evaluate_hota(gt, split)
    # every box matches at every alpha (IoU 1): DetA 1; each id pair agrees on 2 frames of 4 + 2 - 2: AssA 1/2
    assert r.tp.tolist() == [4] * 19 and r.fn.sum() == 0 and r.fp.sum() == 0
    np.testing.assert_allclose(r.deta, 1.0)
    np.testing.assert_allclose(r.assa, 0.5)
    np.testing.assert_allclose(r.hota, math.sqrt(0.5))
    np.testing.assert_allclose(r.assre, 0.5)  # 2 of the object's 4 frames on its id
    np.testing.assert_allclose(r.asspr, 1.0)  # each predicted id stays on one object
    # half the height: IoU 0.5, a match at the 10 alphas 0.05 ... 0.50 and a miss + false positive above
    half = _mot([(f, 7, 0, 0, 10, 5) for f in range(1, 5)])
    r = evaluate_hota(gt, half)
    assert r.tp.tolist() == [4] * 10 + [0] * 9
    assert r.means["hota"] == pytest.approx(10 / 19, abs=1e-12) and r.loca[:10] == pytest.approx(0.5)
    assert np.allclose(HOTA_ALPHAS, np.arange(1, 20) / 20)
    empty = evaluate_hota(gt, empty_tracks())
    assert empty.means["hota"] == 0.0 and empty.fn.tolist() == [4] * 19 and empty.means["loca"] == 1.0
    with pytest.raises(InvalidInput, match="two MotTracks"):
        evaluate_hota(gt, "1,1,0,0,1,1")  # type: ignore[arg-type]


@pytest.mark.parametrize("sequence", sorted(HOTA_PINNED))
def test_hota_pinned_to_trackeval(shared_data, sequence: str) -> None:
    seq = shared_data("videos/mot15-gt") / sequence
    gt, pred = read_mot(seq / "gt.txt", min_confidence=1), read_mot(seq / "test.txt")
    r = evaluate_hota(gt, pred)
    for name, value in HOTA_PINNED[sequence].items():
        assert r.means[name] == pytest.approx(value, abs=1e-12), name
    t = evaluate_tracking(gt, pred)
    assert (t.hota, t.deta, t.assa, t.loca) == tuple(r.means[k] for k in ("hota", "deta", "assa", "loca"))


def _trackeval_hota(gt: MotTracks, pred: MotTracks) -> dict:
    """trackeval's HOTA.eval_sequence on visor's IoU matrices (ids renumbered 0..n-1, one timestep a frame)."""
    from trackeval.metrics import HOTA

    o_ids, h_ids = np.unique(gt.ids), np.unique(pred.ids)
    gf, pf = gt.per_frame(), pred.per_frame()
    data: dict = {"num_gt_ids": len(o_ids), "num_tracker_ids": len(h_ids), "num_gt_dets": len(gt),
                  "num_tracker_dets": len(pred), "gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for f in range(1, max([*gf, *pf]) + 1):
        g, p = gf.get(f), pf.get(f)
        gi = np.searchsorted(o_ids, g.ids) if g else np.zeros(0, np.int64)
        pi = np.searchsorted(h_ids, p.ids) if p else np.zeros(0, np.int64)
        data["gt_ids"].append(gi)
        data["tracker_ids"].append(pi)
        data["similarity_scores"].append(box_iou_xywh(g.boxes, p.boxes) if g and p else np.zeros((len(gi), len(pi))))
    return HOTA().eval_sequence(data)


def test_hota_equals_trackeval_when_installed(shared_data) -> None:
    pytest.importorskip("trackeval")  # not in the test extra: it pulls opencv-python beside -headless
    cases = [(read_mot(shared_data("videos/mot15-gt") / s / "gt.txt", min_confidence=1),
              read_mot(shared_data("videos/mot15-gt") / s / "test.txt")) for s in sorted(HOTA_PINNED)]
    cases.append((parse_mot(GT, min_confidence=1), parse_mot(PRED)))
    for gt, pred in cases:
        ref, ours = _trackeval_hota(gt, pred), evaluate_hota(gt, pred)
        for mine, theirs in (("hota", "HOTA"), ("deta", "DetA"), ("assa", "AssA"), ("detre", "DetRe"),
                             ("detpr", "DetPr"), ("assre", "AssRe"), ("asspr", "AssPr"), ("loca", "LocA"),
                             ("tp", "HOTA_TP"), ("fn", "HOTA_FN"), ("fp", "HOTA_FP")):
            np.testing.assert_allclose(getattr(ours, mine), ref[theirs], rtol=0, atol=1e-12, err_msg=mine)
