"""OCR evaluation on scanned documents: word precision/recall/F1, character error rate, line detection and speed.

Ground truth is SROIE-style: one CSV per image, one text line per row ``x1,y1,x2,y2,x3,y3,x4,y4,transcript``
(the transcript is everything after the 8th comma, so it may hold commas). :func:`load_ocr_dataset` reads a
folder with ``img/`` and ``box/`` (SROIE's layout) or an images folder and a folder of box CSVs, pairing the
files by stem.

The metrics (all micro: summed over the pages, then divided):

- **Words.** A page's predicted words are every recognised line's text split on whitespace and lower-cased
  (punctuation kept); its ground-truth words the same over the transcripts. Matched words are the size of the
  multiset intersection (``collections.Counter`` ``&``). ``word_precision = matched / predicted``,
  ``word_recall = matched / ground truth``, ``word_f1 = 2 * matched / (predicted + ground truth)`` (the harmonic
  mean of the two, and 0 rather than undefined when nothing matched).
- **Lines.** Predicted and ground-truth lines are paired one to one by polygon IoU, greedy best first: every
  pair with ``IoU >= iou_threshold`` (0.5) in descending IoU (ties: ground-truth index, then prediction index),
  taken when neither is paired yet. A polygon is the convex hull of its four corners (any corner order works;
  text boxes are convex), and the IoU is exact for those hulls (convex clipping, shoelace areas), not that of
  their axis-aligned boxes. ``line_precision = paired / predicted lines``, ``line_recall = paired / ground-truth
  lines``.
- **CER** over the paired lines: ``sum edit distance / sum ground-truth characters``, the edit distance being
  the Levenshtein distance (unit insert, delete, substitute; a two-row dynamic programme) between the two texts
  with whitespace runs collapsed to one space and the ends stripped, lower-cased like the words
  (``case_sensitive=True`` keeps case: SROIE's transcripts are all upper case, which readers do not follow).
- **Time** per page: the wall time of ``reader(image_path)`` (decoding included, models already loaded);
  median and 90th percentile (``numpy.percentile``, linear interpolation).

A ratio whose denominator is 0 is NaN (shown as n/a; null in JSON).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from visor.errors import InvalidInput

#: The IoU a predicted line needs with a ground-truth line to pair with it.
IOU_THRESHOLD = 0.5


class TextLike(Protocol):
    """What a prediction needs: ``polygons`` ``(N, 4, 2)`` and ``text`` ``(N,)``
    (a :class:`~visor.types.text.TextLines`)."""

    polygons: Any
    text: Any


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True, eq=False)
class OcrPage:
    """One page's ground truth: ``polygons`` ``(N, 4, 2)`` float64 and ``text`` (N transcripts)."""

    name: str
    image: Path | None
    polygons: np.ndarray
    text: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.text)


def read_box_csv(path: str | Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """The quadrilaterals ``(N, 4, 2)`` and transcripts of one SROIE-style box CSV (UTF-8, a BOM and CRLF line
    ends accepted, blank lines skipped). A row with fewer than 9 fields or a non-numeric corner is an
    :class:`~visor.errors.InvalidInput` naming the file and line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read the box file ({e.strerror or e})") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path}: not UTF-8 text (byte {e.start}); a box file is x1,y1,...,x4,y4,text "
                           "per line") from None
    polygons: list[list[float]] = []
    texts: list[str] = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(",", 8)
        if len(fields) < 9:
            raise InvalidInput(f"{path}:{number}: expected x1,y1,x2,y2,x3,y3,x4,y4,text, got {len(fields)} "
                               f"field(s): {line[:80]!r}")
        try:
            corners = [float(v) for v in fields[:8]]
        except ValueError:
            raise InvalidInput(f"{path}:{number}: the 8 corner coordinates must be numbers: {line[:80]!r}") from None
        if not all(math.isfinite(v) for v in corners):
            raise InvalidInput(f"{path}:{number}: corner coordinates must be finite: {line[:80]!r}")
        polygons.append(corners)
        texts.append(fields[8])
    return np.asarray(polygons, np.float64).reshape(-1, 4, 2), tuple(texts)


def _image_files(folder: Path) -> dict[str, Path]:
    from visor.io import IMAGE_EXTENSIONS

    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}


def _box_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() == ".csv"}


def ocr_folders(path: str | Path, boxes: str | Path | None = None) -> tuple[Path, Path]:
    """The images folder and box folder of an OCR dataset: ``path/img`` (or ``path/images``) and ``path/box``
    (or ``path/boxes``) when ``boxes`` is None, else ``path`` and ``boxes``."""
    root = Path(path)
    if boxes is not None:
        images, box = root, Path(boxes)
    else:
        images = next((root / n for n in ("img", "images") if (root / n).is_dir()), root / "img")
        box = next((root / n for n in ("box", "boxes") if (root / n).is_dir()), root / "box")
    for what, folder in (("images", images), ("box", box)):
        if not folder.is_dir():
            hint = "" if boxes is not None else " (an OCR dataset is a folder with img/ and box/)"
            raise InvalidInput(f"{folder}: no such {what} folder{hint}")
    return images, box


def is_ocr_data(path: str | Path | None, boxes: str | Path | None = None) -> bool:
    """Whether ``path`` is an OCR dataset (a folder with ``img/`` and ``box/`` holding .csv files), or, with
    ``boxes``, whether ``boxes`` is a folder of .csv box files and ``path`` a folder."""
    if path is None:
        return False
    try:
        _, box = ocr_folders(path, boxes)
        return bool(_box_files(box))
    except (InvalidInput, OSError):
        return False


def is_box_folder(path: str | Path | None) -> bool:
    """Whether ``path`` is a folder of box CSVs: .csv files and no images."""
    if path is None or not Path(path).is_dir():
        return False
    try:
        return bool(_box_files(Path(path))) and not _image_files(Path(path))
    except OSError:
        return False


def load_ocr_dataset(path: str | Path, boxes: str | Path | None = None) -> list[OcrPage]:
    """The pages of an OCR dataset (see :func:`ocr_folders`), in stem order. Every image needs a box CSV of the
    same stem and every box CSV an image; otherwise (or with no pages) :class:`~visor.errors.InvalidInput`."""
    images, box = ocr_folders(path, boxes)
    found, csvs = _image_files(images), _box_files(box)
    no_box, no_image = sorted(set(found) - set(csvs)), sorted(set(csvs) - set(found))
    if no_box or no_image:
        parts = []
        if no_box:
            parts.append(f"{len(no_box)} image(s) without a box file in {box} (e.g. {found[no_box[0]].name})")
        if no_image:
            parts.append(f"{len(no_image)} box file(s) without an image in {images} (e.g. {csvs[no_image[0]].name})")
        raise InvalidInput("; ".join(parts))
    if not csvs:
        raise InvalidInput(f"{box}: no box files (.csv) to evaluate against")
    return [OcrPage(stem, found[stem], *read_box_csv(csvs[stem])) for stem in sorted(csvs)]


def load_box_predictions(folder: str | Path) -> dict[str, OcrPage]:
    """Predictions kept as box CSVs (the ground-truth format), by stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: no such folder of predicted box files")
    return {stem: OcrPage(stem, None, *read_box_csv(p)) for stem, p in _box_files(folder).items()}


# --------------------------------------------------------------------------- geometry and text


def _hull(points: np.ndarray) -> list[tuple[float, float]]:
    """The convex hull of a few points, counter-clockwise (Andrew's monotone chain); fewer than 3 distinct
    points give a degenerate (zero-area) list."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) < 3:
        return pts

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _area(poly: Sequence[tuple[float, float]]) -> float:
    n = len(poly)
    if n < 3:
        return 0.0
    s = sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n))
    return abs(s) / 2.0


def _clip(subject: list[tuple[float, float]], clipper: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sutherland-Hodgman: ``subject`` clipped by the convex counter-clockwise ``clipper``."""
    out = subject
    n = len(clipper)
    for i in range(n):
        if not out:
            break
        (ax, ay), (bx, by) = clipper[i], clipper[(i + 1) % n]

        def side(p, ax=ax, ay=ay, bx=bx, by=by) -> float:
            return (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)

        inp, out = out, []
        for j in range(len(inp)):
            cur, prev = inp[j], inp[j - 1]
            sc, sp = side(cur), side(prev)
            if sc >= 0:
                if sp < 0:
                    t = sp / (sp - sc)
                    out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
                out.append(cur)
            elif sp >= 0:
                t = sp / (sp - sc)
                out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
    return out


def polygon_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of the convex hulls of quadrilaterals ``a`` ``(N, 4, 2)`` and ``b`` ``(M, 4, 2)``
    (0 where the union has no area). Pairs whose axis-aligned boxes do not overlap are 0 without clipping."""
    a = np.asarray(a, np.float64).reshape(-1, 4, 2)
    b = np.asarray(b, np.float64).reshape(-1, 4, 2)
    iou = np.zeros((len(a), len(b)))
    if not len(a) or not len(b):
        return iou
    amin, amax, bmin, bmax = a.min(1), a.max(1), b.min(1), b.max(1)
    overlap = ((np.minimum(amax[:, None], bmax[None]) - np.maximum(amin[:, None], bmin[None])) > 0).all(-1)
    hulls_a = [_hull(p) for p in a]
    hulls_b = [_hull(p) for p in b]
    areas_a = [_area(h) for h in hulls_a]
    areas_b = [_area(h) for h in hulls_b]
    for i, j in zip(*np.nonzero(overlap), strict=True):
        if len(hulls_a[i]) < 3 or len(hulls_b[j]) < 3:
            continue
        inter = _area(_clip(hulls_a[i], hulls_b[j]))
        union = areas_a[i] + areas_b[j] - inter
        iou[i, j] = inter / union if union > 0 else 0.0
    return iou


def greedy_pairs(iou: np.ndarray, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """One-to-one ``(row, column)`` pairs of an IoU matrix, best first: every pair with ``iou >= threshold`` in
    descending IoU (ties by row, then column), kept when neither side is taken yet."""
    rows, cols = np.nonzero(iou >= threshold)
    order = sorted(range(len(rows)), key=lambda k: (-iou[rows[k], cols[k]], rows[k], cols[k]))
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


def edit_distance(a: str, b: str) -> int:
    """The Levenshtein distance (unit insertions, deletions and substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize_line(text: str, *, case_sensitive: bool = False) -> str:
    """Whitespace runs as one space, ends stripped, lower-cased unless ``case_sensitive`` (what CER compares)."""
    text = " ".join(str(text).split())
    return text if case_sensitive else text.lower()


def words(texts: Iterable[str]) -> Counter[str]:
    """The multiset of lower-cased whitespace-separated words of some lines."""
    return Counter(w.lower() for t in texts for w in str(t).split())


# --------------------------------------------------------------------------- results


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


@dataclass(frozen=True)
class OcrPageResult:
    """One page's counts (see the module for what they mean)."""

    name: str
    gt_words: int
    predicted_words: int
    matched_words: int
    gt_lines: int
    predicted_lines: int
    matched_lines: int
    edit_distance: int
    matched_gt_chars: int
    seconds: float | None = None

    @property
    def word_precision(self) -> float:
        return _ratio(self.matched_words, self.predicted_words)

    @property
    def word_recall(self) -> float:
        return _ratio(self.matched_words, self.gt_words)

    @property
    def word_f1(self) -> float:
        return _ratio(2 * self.matched_words, self.predicted_words + self.gt_words)

    @property
    def cer(self) -> float:
        return _ratio(self.edit_distance, self.matched_gt_chars)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(word_precision=self.word_precision, word_recall=self.word_recall, word_f1=self.word_f1,
                 cer=self.cer)
        return {k: _json_number(v) for k, v in d.items()}


def score_page(gt: OcrPage, predicted: TextLike, *, iou_threshold: float = IOU_THRESHOLD,
               seconds: float | None = None, case_sensitive: bool = False) -> OcrPageResult:
    """One page's counts: ``predicted`` (anything with ``polygons`` and ``text``) against ``gt``."""
    p_text = [str(t) for t in np.asarray(predicted.text, dtype=object).reshape(-1)]
    p_poly = np.asarray(predicted.polygons, np.float64).reshape(-1, 4, 2)
    if len(p_poly) != len(p_text):
        raise InvalidInput(f"{gt.name}: the prediction has {len(p_poly)} polygons but {len(p_text)} texts")
    gw, pw = words(gt.text), words(p_text)
    pairs = greedy_pairs(polygon_iou_matrix(gt.polygons, p_poly), iou_threshold)
    dist = chars = 0
    for g, p in pairs:
        ref = normalize_line(gt.text[g], case_sensitive=case_sensitive)
        dist += edit_distance(normalize_line(p_text[p], case_sensitive=case_sensitive), ref)
        chars += len(ref)
    return OcrPageResult(gt.name, sum(gw.values()), sum(pw.values()), sum((gw & pw).values()), len(gt.text),
                         len(p_text), len(pairs), dist, chars, seconds)


@dataclass(frozen=True)
class OcrReport:
    """OCR metrics over a dataset (see the module): per-page counts in ``pages``, pages left out in ``skipped``
    (name, reason), the predictions' ``model`` name when they carry one."""

    pages: tuple[OcrPageResult, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    iou_threshold: float = IOU_THRESHOLD
    model: str = ""
    case_sensitive: bool = False

    def _sum(self, name: str) -> int:
        return sum(getattr(p, name) for p in self.pages)

    @property
    def word_precision(self) -> float:
        return _ratio(self._sum("matched_words"), self._sum("predicted_words"))

    @property
    def word_recall(self) -> float:
        return _ratio(self._sum("matched_words"), self._sum("gt_words"))

    @property
    def word_f1(self) -> float:
        return _ratio(2 * self._sum("matched_words"), self._sum("predicted_words") + self._sum("gt_words"))

    @property
    def cer(self) -> float:
        return _ratio(self._sum("edit_distance"), self._sum("matched_gt_chars"))

    @property
    def line_precision(self) -> float:
        return _ratio(self._sum("matched_lines"), self._sum("predicted_lines"))

    @property
    def line_recall(self) -> float:
        return _ratio(self._sum("matched_lines"), self._sum("gt_lines"))

    @property
    def seconds(self) -> np.ndarray:
        """The timed pages' seconds."""
        return np.array([p.seconds for p in self.pages if p.seconds is not None], np.float64)

    @property
    def median_seconds(self) -> float:
        s = self.seconds
        return float(np.median(s)) if len(s) else float("nan")

    @property
    def p90_seconds(self) -> float:
        s = self.seconds
        return float(np.percentile(s, 90)) if len(s) else float("nan")

    def worst(self, n: int = 5) -> list[OcrPageResult]:
        """The ``n`` pages with the lowest word F1 (pages with no words at all last), then by name."""
        def key(p: OcrPageResult) -> tuple[float, str]:
            f1 = p.word_f1
            return (math.inf if math.isnan(f1) else f1, p.name)

        return sorted(self.pages, key=key)[:n]

    def summary(self) -> dict[str, Any]:
        """The headline figures (JSON-safe)."""
        d = {"pages": len(self.pages), "skipped": len(self.skipped), "model": self.model,
             "word_precision": self.word_precision, "word_recall": self.word_recall, "word_f1": self.word_f1,
             "cer": self.cer, "line_precision": self.line_precision, "line_recall": self.line_recall,
             "median_seconds": self.median_seconds, "p90_seconds": self.p90_seconds,
             "gt_words": self._sum("gt_words"), "predicted_words": self._sum("predicted_words"),
             "matched_words": self._sum("matched_words"), "gt_lines": self._sum("gt_lines"),
             "predicted_lines": self._sum("predicted_lines"), "matched_lines": self._sum("matched_lines"),
             "edit_distance": self._sum("edit_distance"), "matched_gt_chars": self._sum("matched_gt_chars"),
             "iou_threshold": self.iou_threshold, "case_sensitive_cer": self.case_sensitive}
        return {k: _json_number(v) for k, v in d.items()}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "per_page": [p.to_dict() for p in self.pages],
                "skipped_pages": [list(s) for s in self.skipped]}

    def format_table(self, worst: int = 5) -> str:
        """The figures as aligned text, then the ``worst`` pages by word F1."""
        s = self.summary()
        rows = [
            ("pages", f"{len(self.pages)}" + (f" ({len(self.skipped)} skipped)" if self.skipped else "")),
            ("word precision", f"{_fmt(self.word_precision)}  ({s['matched_words']} of {s['predicted_words']} "
                               "predicted words)"),
            ("word recall", f"{_fmt(self.word_recall)}  ({s['matched_words']} of {s['gt_words']} "
                            "ground-truth words)"),
            ("word F1", _fmt(self.word_f1)),
            ("CER", f"{_fmt(self.cer)}  ({s['edit_distance']} edits over {s['matched_gt_chars']} characters of "
                    f"{s['matched_lines']} paired lines"
                    f"{', case-sensitive' if self.case_sensitive else ''})"),
            ("line precision", f"{_fmt(self.line_precision)}  ({s['matched_lines']} of {s['predicted_lines']} "
                               f"predicted lines at IoU >= {self.iou_threshold:g})"),
            ("line recall", f"{_fmt(self.line_recall)}  ({s['matched_lines']} of {s['gt_lines']} "
                            "ground-truth lines)"),
        ]
        if len(self.seconds):
            rows.append(("seconds per page", f"median {self.median_seconds:.3f}, p90 {self.p90_seconds:.3f} "
                                             f"({len(self.seconds)} pages)"))
        if self.model:
            rows.append(("model", self.model))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        if worst and self.pages:
            lines.append("")
            lines.append(f"worst {min(worst, len(self.pages))} pages by word F1:")
            lines.append("page                      word P    word R   word F1       CER  lines P/R        seconds")
            for p in self.worst(worst):
                sec = "" if p.seconds is None else f"{p.seconds:.3f}"
                lines.append(f"{p.name[:24]:<24}  {_fmt(p.word_precision, 4):>7}  {_fmt(p.word_recall, 4):>7}  "
                             f"{_fmt(p.word_f1, 4):>7}  {_fmt(p.cer, 4):>8}  {p.matched_lines}/{p.predicted_lines}/"
                             f"{p.gt_lines:<9}  {sec:>7}")
        return "\n".join(lines)


def _fmt(x: float, decimals: int = 6) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{decimals}f}"


def _json_number(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


# --------------------------------------------------------------------------- evaluation


Reader = Callable[[Path], TextLike]


def evaluate_ocr(
    reader_or_predictions: Reader | Mapping[str, TextLike],
    dataset: str | Path | Sequence[OcrPage],
    *,
    iou_threshold: float = IOU_THRESHOLD,
    case_sensitive: bool = False,
    warmup: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> OcrReport:
    """Score OCR on ``dataset`` (a path for :func:`load_ocr_dataset`, or its pages).

    ``reader_or_predictions`` is a reader called on each page's image path (a
    :class:`~visor.features.text.TextReader`; each call is timed) or predictions by page name (anything with
    ``polygons`` and ``text``; a page without one is an :class:`~visor.errors.InvalidInput`). A page the reader
    cannot read (a :class:`~visor.errors.VisorError`) is left out and listed in ``skipped``. ``warmup`` reads
    the first page once, untimed, before timing. ``case_sensitive`` keeps case in the CER (words are always
    lower-cased). ``progress(done, total)`` is called after each page.
    """
    from visor.errors import VisorError

    if not 0.0 < iou_threshold <= 1.0:
        from visor.errors import ConfigError

        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    pages = load_ocr_dataset(dataset) if isinstance(dataset, str | Path) else list(dataset)
    results: list[OcrPageResult] = []
    skipped: list[tuple[str, str]] = []
    model = ""
    if isinstance(reader_or_predictions, Mapping):
        missing = [p.name for p in pages if p.name not in reader_or_predictions]
        if missing:
            raise InvalidInput(f"no prediction for {len(missing)} of {len(pages)} page(s) (e.g. {missing[0]})")
        for k, page in enumerate(pages, 1):
            predicted = reader_or_predictions[page.name]
            results.append(score_page(page, predicted, iou_threshold=iou_threshold, case_sensitive=case_sensitive))
            model = model or str(getattr(predicted, "model", "") or "")
            if progress:
                progress(k, len(pages))
        return OcrReport(tuple(results), (), iou_threshold, model, case_sensitive)
    if not callable(reader_or_predictions):
        raise InvalidInput("evaluate_ocr needs a reader (called on each image path) or predictions by page name")
    reader = reader_or_predictions
    if warmup and pages and pages[0].image is not None:
        with contextlib.suppress(VisorError):
            reader(pages[0].image)
    for k, page in enumerate(pages, 1):
        if page.image is None:
            raise InvalidInput(f"{page.name}: no image to read")
        start = time.perf_counter()
        try:
            predicted = reader(page.image)
        except VisorError as e:
            skipped.append((page.name, f"{type(e).__name__}: {e}"))
        else:
            seconds = time.perf_counter() - start
            results.append(score_page(page, predicted, iou_threshold=iou_threshold, seconds=seconds,
                                          case_sensitive=case_sensitive))
            model = model or str(getattr(predicted, "model", "") or "")
        if progress:
            progress(k, len(pages))
    return OcrReport(tuple(results), tuple(skipped), iou_threshold, model, case_sensitive)
