"""OCR evaluation (visor.evaluate.ocr): exact figures on hand-made pages, the loader's errors, three real
receipts checked against an independent computation, and ``visor evaluate`` on OCR data in fresh processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from visor.errors import CorruptImage, InvalidInput
from visor.evaluate.ocr import (
    OcrPage,
    OcrPageResult,
    OcrReport,
    edit_distance,
    evaluate_ocr,
    greedy_pairs,
    load_ocr_dataset,
    polygon_iou_matrix,
    read_box_csv,
)
from visor.types.text import TextLines

REPO = Path(__file__).resolve().parents[2]


def box(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def lines(*items: tuple[list[list[float]], str]) -> TextLines:
    if not items:
        return TextLines.empty()
    return TextLines(np.array([b for b, _ in items], np.float32), [t for _, t in items],
                     np.ones(len(items), np.float32))


TOP, BOTTOM, BELOW = box(0, 0, 100, 20), box(0, 30, 100, 50), box(0, 60, 100, 80)
GT = OcrPage("p", None, np.array([TOP, BOTTOM], np.float64), ("TOTAL 7.42", "THANK YOU"))  # 4 words, 19 chars


def score(pred: TextLines, gt: OcrPage = GT, **kw) -> OcrReport:
    return evaluate_ocr({gt.name: pred}, [gt], **kw)


def figures(r: OcrReport) -> tuple:
    return (r.word_precision, r.word_recall, r.word_f1, r.cer, r.line_precision, r.line_recall)


def same(a: tuple, b: tuple) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-12) for x, y in zip(a, b, strict=True))


def test_perfect() -> None:
    r = score(lines((TOP, "TOTAL 7.42"), (BOTTOM, "THANK YOU")))
    assert same(figures(r), (1.0, 1.0, 1.0, 0.0, 1.0, 1.0))


def test_one_word_wrong() -> None:
    r = score(lines((TOP, "TOTAL 7.4Z"), (BOTTOM, "THANK YOU")))
    # 3 of 4 words; 1 edit over the 19 characters of the two paired lines
    assert same(figures(r), (0.75, 0.75, 0.75, 1 / 19, 1.0, 1.0))


def test_extra_line() -> None:
    r = score(lines((TOP, "TOTAL 7.42"), (BOTTOM, "THANK YOU"), (BELOW, "NOISE")))
    assert same(figures(r), (4 / 5, 1.0, 8 / 9, 0.0, 2 / 3, 1.0))


def test_missed_line() -> None:
    r = score(lines((TOP, "TOTAL 7.42")))
    assert same(figures(r), (1.0, 0.5, 2 / 3, 0.0, 1.0, 0.5))


def test_empty_prediction() -> None:
    r = score(lines())
    nan = float("nan")
    assert same(figures(r), (nan, 0.0, 0.0, nan, nan, 0.0))
    assert r.summary()["word_precision"] is None and r.summary()["cer"] is None  # NaN is null in JSON


def test_empty_ground_truth() -> None:
    empty = OcrPage("e", None, np.zeros((0, 4, 2)), ())
    nan = float("nan")
    assert same(figures(score(lines((TOP, "A B")), empty)), (0.0, nan, 0.0, nan, 0.0, nan))
    assert same(figures(score(lines(), empty)), (nan,) * 6)


def test_words_are_lower_cased_multisets_and_cer_ignores_case_by_default() -> None:
    r = score(lines((TOP, "Total  7.42 7.42"), (BOTTOM, "thank you.")))
    # predicted total 7.42 7.42 thank you. (5); matched total, 7.42 once, thank (3)
    assert (r.pages[0].predicted_words, r.pages[0].matched_words, r.pages[0].gt_words) == (5, 3, 4)
    # "total 7.42 7.42" vs "total 7.42": 5 edits; "thank you." vs "thank you": 1 edit
    assert r.cer == 6 / 19
    cs = score(lines((TOP, "Total 7.42"), (BOTTOM, "THANK YOU")), case_sensitive=True)
    assert cs.cer == 4 / 19 and cs.word_f1 == 1.0


def test_micro_average_over_pages() -> None:
    other = OcrPage("q", None, np.array([TOP]), ("A B C D E F",))
    r = evaluate_ocr({"p": lines((TOP, "TOTAL 7.42"), (BOTTOM, "THANK YOU")), "q": lines((TOP, "A B"))}, [GT, other])
    # matched 4 + 2 of predicted 4 + 2 and ground truth 4 + 6 (a page mean would give recall (1 + 1/3) / 2)
    # CER: "a b" against "a b c d e f" is 8 deletions, over 19 + 11 characters
    assert same(figures(r), (1.0, 0.6, 0.75, 8 / 30, 1.0, 1.0))


def test_line_pairing_at_iou_half_best_first() -> None:
    # IoU 1/3: not paired (the words still count, wherever they are)
    r = score(lines((box(50, 0, 150, 20), "TOTAL 7.42"), (BOTTOM, "THANK YOU")))
    assert (r.pages[0].matched_lines, r.word_f1) == (1, 1.0)
    # IoU exactly 0.5 pairs
    assert score(lines((box(0, 0, 50, 20), "TOTAL 7.42"))).pages[0].matched_lines == 1
    # two candidates for TOP: the better one (IoU 0.9) pairs, the other (0.8) stays a false positive
    iou = polygon_iou_matrix(np.array([TOP]), np.array([box(0, 0, 80, 20), box(0, 0, 90, 20)]))
    assert iou.tolist() == [[pytest.approx(0.8), pytest.approx(0.9)]]
    assert greedy_pairs(iou) == [(0, 1)]
    # one prediction covering two ground-truth lines pairs with the better one only
    assert greedy_pairs(np.array([[0.6], [0.7]])) == [(1, 0)]


def test_polygon_iou_rotated_and_any_corner_order() -> None:
    square = np.array([[[0, 0], [1, 0], [1, 1], [0, 1]]], np.float64)
    c, h = 0.5, math.sqrt(0.5)
    diamond = np.array([[[c, c - h], [c + h, c], [c, c + h], [c - h, c]]])
    octagon = 2 * (math.sqrt(2) - 1)  # the two unit squares' intersection
    assert polygon_iou_matrix(square, diamond)[0, 0] == pytest.approx(octagon / (2 - octagon), abs=1e-12)
    bowtie = square[:, [0, 2, 1, 3]]  # corners out of order: the convex hull is the square
    assert polygon_iou_matrix(bowtie, square)[0, 0] == pytest.approx(1.0)
    assert polygon_iou_matrix(square, square + 5).tolist() == [[0.0]]
    assert polygon_iou_matrix(np.zeros((0, 4, 2)), square).shape == (0, 1)


def test_polygon_iou_agrees_with_shapely() -> None:
    shapely = pytest.importorskip("shapely")
    rng = np.random.default_rng(7)

    def quads(n: int) -> np.ndarray:
        centre = rng.uniform(0, 40, (n, 1, 2))
        half = np.stack([rng.uniform(3, 15, n), rng.uniform(2, 8, n)], -1)[:, None]
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        a = rng.uniform(-0.6, 0.6, n)
        rot = np.stack([np.stack([np.cos(a), np.sin(a)], -1), np.stack([-np.sin(a), np.cos(a)], -1)], -2)
        return centre + corners @ rot

    a, b = quads(25), quads(30)
    ours = polygon_iou_matrix(a, b)
    pa, pb = [shapely.Polygon(q) for q in a], [shapely.Polygon(q) for q in b]
    ref = np.array([[p.intersection(q).area / p.union(q).area for q in pb] for p in pa])
    assert (ref > 0).sum() > 50
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == edit_distance("abc", "") == 3
    assert edit_distance("TOTAL", "TOTAL") == 0
    assert edit_distance("flaw", "lawn") == 2


def test_time_median_and_p90() -> None:
    pages = tuple(OcrPageResult(str(i), 1, 1, 1, 1, 1, 1, 0, 1, float(i)) for i in range(1, 11))
    r = OcrReport(pages)
    assert (r.median_seconds, r.p90_seconds) == (5.5, pytest.approx(9.1))
    assert math.isnan(OcrReport(pages[:0]).median_seconds)


def test_worst_pages_by_f1() -> None:
    r = evaluate_ocr({"p": lines((TOP, "TOTAL 7.42"), (BOTTOM, "THANK YOU")), "q": lines((TOP, "TOTAL"))},
                     [GT, OcrPage("q", None, np.array([TOP]), ("TOTAL 7.42",))])
    assert [p.name for p in r.worst(2)] == ["q", "p"]
    assert "worst 2 pages by word F1" in r.format_table()


# --------------------------------------------------------------------------- loading


def test_read_box_csv(tmp_path: Path) -> None:
    f = tmp_path / "1.csv"
    f.write_bytes("\ufeff1,2,3,2,3,4,1,4,TOTAL, 7.42\r\n\r\n5,6,7,6,7,8,5,8,CAFÉ\r\n".encode())
    polys, texts = read_box_csv(f)
    assert texts == ("TOTAL, 7.42", "CAFÉ")
    assert polys.tolist() == [[[1, 2], [3, 2], [3, 4], [1, 4]], [[5, 6], [7, 6], [7, 8], [5, 8]]]


@pytest.mark.parametrize(("content", "message"), [
    (b"1,2,3,4,TOTAL\n", "1.csv:1: expected x1,y1,x2,y2,x3,y3,x4,y4,text, got 5 field(s)"),
    (b"1,2,3,2,3,4,1,4,A\n1,2,x,2,3,4,1,4,B\n", "1.csv:2: the 8 corner coordinates must be numbers"),
    (b"1,2,3,2,3,4,1,nan,A\n", "1.csv:1: corner coordinates must be finite"),
    (b"1,2,3,2,3,4,1,4,\xff\xfe\n", "1.csv: not UTF-8 text"),
])
def test_garbled_box_file_is_a_typed_error(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "1.csv").write_bytes(content)
    with pytest.raises(InvalidInput, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        read_box_csv(tmp_path / "1.csv")


def test_dataset_pairing_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such images folder"):
        load_ocr_dataset(tmp_path)
    (tmp_path / "img").mkdir()
    (tmp_path / "box").mkdir()
    with pytest.raises(InvalidInput, match="no box files"):
        load_ocr_dataset(tmp_path)
    shutil.copy(REPO / "assets" / "bus.jpg", tmp_path / "img" / "a.jpg")
    (tmp_path / "box" / "b.csv").write_text("1,2,3,2,3,4,1,4,A\n")
    with pytest.raises(InvalidInput, match=r"1 image\(s\) without a box file .*a\.jpg.*1 box file\(s\) without an "
                                           r"image .*b\.csv"):
        load_ocr_dataset(tmp_path)
    (tmp_path / "box" / "b.csv").rename(tmp_path / "box" / "a.csv")
    pages = load_ocr_dataset(tmp_path)
    assert [(p.name, p.image.name, p.text) for p in pages] == [("a", "a.jpg", ("A",))]
    with pytest.raises(InvalidInput, match=r"no prediction for 1 of 1 page\(s\) \(e\.g\. a\)"):
        evaluate_ocr({}, pages)


def test_unreadable_page_is_skipped_and_listed() -> None:
    pages = [OcrPage("bad", Path("bad.jpg"), np.array([TOP]), ("X",)), OcrPage("good", Path("good.jpg"),
                                                                              np.array([TOP]), ("X",))]

    def reader(path: Path) -> TextLines:
        if path.name == "bad.jpg":
            raise CorruptImage("truncated")
        return lines((TOP, "X"))

    r = evaluate_ocr(reader, pages)
    assert [p.name for p in r.pages] == ["good"] and r.skipped == (("bad", "CorruptImage: truncated"),)
    assert r.word_f1 == 1.0 and len(r.seconds) == 1


# --------------------------------------------------------------------------- real receipts


def _independent(gt_polys: np.ndarray, gt_text: tuple, pred: TextLines) -> tuple[int, int, int, int, int, int]:
    """Straightforward re-computation: Counter words, shapely IoU, repeated arg-max pairing, a full DP matrix."""
    import shapely

    gw = Counter(w.lower() for t in gt_text for w in t.split())
    pw = Counter(w.lower() for t in pred.text for w in str(t).split())
    matched = sum(min(n, pw[w]) for w, n in gw.items())
    iou = np.zeros((len(gt_polys), len(pred)))
    for i, g in enumerate(gt_polys):
        for j, p in enumerate(pred.polygons):
            a, b = shapely.Polygon(g).convex_hull, shapely.Polygon(p).convex_hull
            iou[i, j] = a.intersection(b).area / a.union(b).area
    pairs = []
    work = np.where(iou >= 0.5, iou, -1.0)
    while len(work) and work.size and work.max() >= 0:
        i, j = np.unravel_index(np.argmax(work), work.shape)
        pairs.append((i, j))
        work[i, :] = -1
        work[:, j] = -1
    dist = chars = 0
    for i, j in pairs:
        ref, hyp = " ".join(gt_text[i].lower().split()), " ".join(str(pred.text[j]).lower().split())
        d = np.zeros((len(hyp) + 1, len(ref) + 1), int)
        d[:, 0], d[0, :] = range(len(hyp) + 1), range(len(ref) + 1)
        for x in range(1, len(hyp) + 1):
            for y in range(1, len(ref) + 1):
                d[x, y] = min(d[x - 1, y] + 1, d[x, y - 1] + 1, d[x - 1, y - 1] + (hyp[x - 1] != ref[y - 1]))
        dist += int(d[-1, -1])
        chars += len(ref)
    return sum(gw.values()), sum(pw.values()), matched, len(pairs), dist, chars


def test_three_real_receipts_match_an_independent_computation(shared_data) -> None:
    pytest.importorskip("shapely")
    from visor.features.text import TextReader

    pages = load_ocr_dataset(shared_data("sroie-dev"))[:3]
    assert [p.name for p in pages] == ["100", "101", "102"]
    reader = TextReader()
    seen: dict[str, TextLines] = {}

    def recording(path: Path) -> TextLines:
        seen[path.stem] = reader(path)
        return seen[path.stem]

    r = evaluate_ocr(recording, pages)
    for page, got in zip(pages, r.pages, strict=True):
        expected = _independent(page.polygons, page.text, seen[page.name])
        assert (got.gt_words, got.predicted_words, got.matched_words, got.matched_lines, got.edit_distance,
                got.matched_gt_chars) == expected
        assert got.gt_lines == len(page.text) and got.predicted_lines == len(seen[page.name])
        assert got.seconds is not None and got.seconds > 0
    # the ground truth as the box files hold it: 159 lines, 285 words over the three receipts
    assert (sum(p.gt_lines for p in r.pages), sum(p.gt_words for p in r.pages)) == (159, 285)
    assert r.model == seen["100"].model != "" and len(r.seconds) == 3  # the reader's model name, carried over
    print(f"\n3 receipts: {r.summary()}")


# --------------------------------------------------------------------------- CLI


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "visor", "evaluate", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_scores_predicted_box_files(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt" / "box", tmp_path / "pred"
    gt.mkdir(parents=True)
    pred.mkdir()
    (gt / "r1.csv").write_text("0,0,100,0,100,20,0,20,TOTAL 7.42\n0,30,100,30,100,50,0,50,THANK YOU\n")
    (pred / "r1.csv").write_text("0,0,100,0,100,20,0,20,Total 7.4Z\n0,60,100,60,100,80,0,80,NOISE\n")
    done = _run(str(pred), str(gt), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    # words: total, 7.4z, noise vs total, 7.42, thank, you: 1 matched; lines: 1 of 2 paired, "total 7.4z": 1 edit
    assert (doc["word_precision"], doc["word_recall"], doc["word_f1"]) == (pytest.approx(1 / 3), 0.25,
                                                                          pytest.approx(2 / 7))
    assert (doc["cer"], doc["line_precision"], doc["line_recall"], doc["median_seconds"]) == (0.1, 0.5, 0.5, None)
    text = _run(str(pred), str(gt), cwd=tmp_path)  # the table
    assert text.returncode == 0, text.stderr
    assert "word precision  0.333333  (1 of 3 predicted words)" in text.stdout
    assert "CER             0.100000  (1 edits over 10 characters of 1 paired lines)" in text.stdout
    bad = _run(str(pred), str(gt), "--engine", "x", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--engine does not apply" in bad.stderr
    (pred / "r1.csv").write_text("0,0,100,TOTAL\n")
    garbled = _run(str(pred), str(gt), cwd=tmp_path)
    assert garbled.returncode == 1 and "r1.csv:1: expected x1,y1" in garbled.stderr
    assert "Traceback" not in garbled.stderr and garbled.stderr.count("\n") == 1


def test_cli_reads_two_receipts(shared_data, tmp_path: Path) -> None:
    src = shared_data("sroie-dev")
    data = tmp_path / "two"
    for sub, ext in (("img", "jpg"), ("box", "csv")):
        (data / sub).mkdir(parents=True)
        for stem in ("100", "102"):
            shutil.copy(src / sub / f"{stem}.{ext}", data / sub / f"{stem}.{ext}")
    done = _run(str(data), "--json", "--threads", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["pages"] == 2 and [p["name"] for p in doc["per_page"]] == ["100", "102"]
    assert (doc["gt_words"], doc["gt_lines"]) == (96 + 92, 58 + 44)
    assert doc["word_precision"] == doc["matched_words"] / doc["predicted_words"]
    assert doc["word_f1"] == 2 * doc["matched_words"] / (doc["predicted_words"] + doc["gt_words"])
    assert doc["model"] and doc["median_seconds"] > 0 and doc["p90_seconds"] >= doc["median_seconds"]


def test_cli_ocr_dispatch(tmp_path: Path) -> None:
    import argparse

    from visor.cli.evaluate import ocr_evaluation

    data, pred, classes = tmp_path / "data", tmp_path / "pred", tmp_path / "classes"
    for d in (data / "img", data / "box", pred, classes / "cat"):
        d.mkdir(parents=True)
    shutil.copy(REPO / "assets" / "bus.jpg", data / "img" / "a.jpg")
    shutil.copy(REPO / "assets" / "bus.jpg", classes / "cat" / "a.jpg")
    for f in (data / "box" / "a.csv", pred / "a.csv"):
        f.write_text("1,2,3,2,3,4,1,4,A\n")

    def how(first, second):
        return ocr_evaluation(argparse.Namespace(model_positional=first, data=str(second)))

    assert how(None, data) == ("read", None)  # visor evaluate DATA (img/ + box/)
    assert how(str(data / "img"), data / "box") == ("read", str(data / "img"))  # visor evaluate IMAGES BOXES
    assert how(str(pred), data) == ("boxes", str(pred))  # visor evaluate PRED GT
    assert how(str(pred), data / "box") == ("boxes", str(pred))
    assert how(None, classes) is None and how("yolox_nano", classes) is None  # not OCR: the other evaluations
    engine = _run(str(classes), "--engine", "tesseract", cwd=tmp_path)
    assert engine.returncode == 2 and engine.stderr == ("visor: error: ConfigError: --engine applies to OCR data only "
                                                        "(a folder with img/ and box/, or IMAGES BOXES)\n")
