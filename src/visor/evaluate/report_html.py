"""The evaluation report as one self-contained HTML page.

Everything the page shows is in the file: styles are inline, charts are inline SVG drawn
here (no JavaScript, no chart library), thumbnails are base64 JPEG data URIs, and nothing
is fetched from anywhere. The input is the report dict that ``visor evaluate --json`` prints
(``report.json``); every optional part (subgroups, corruptions, mistakes, reliability bins,
confidence intervals) may be missing, and the page then says so.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visor.errors import InvalidInput, VisorError
from visor.retrieval.curate_html import thumbnail_data_uri

#: Classes shown in the per-class chart and table (the ones with the most support).
MAX_CHART_CLASSES = 40
#: Classes given their own row and column in the confusion heat-map; the rest become "other".
MAX_CONFUSION_CLASSES = 30
#: Skipped files listed by name.
MAX_SKIPPED_LISTED = 50
OTHER = "other"

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1120px;
padding:0 1rem;color:#222;background:#fafafa}
h1{font-size:1.4rem;margin-bottom:.3rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;
padding-bottom:.3rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.7rem 1rem;margin:.6rem 0;overflow-x:auto}
table{border-collapse:collapse;font-size:.85rem}
table.data th,table.data td{padding:.2rem .7rem;border-bottom:1px solid #eee;text-align:right}
table.data th{background:#f3f3f3;font-weight:600}
table.data td:first-child,table.data th:first-child{text-align:left}
table.summary td{padding:.15rem .9rem .15rem 0}
td,th{font-variant-numeric:tabular-nums}
svg.chart{display:block;max-width:100%;height:auto;margin:.3rem 0}
svg text{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
.row{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-start}
figure{margin:0;font-size:.75rem;word-break:break-word}
figure img,.missing{object-fit:contain;background:#eee;border-radius:4px;display:block}
.fname{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.missing{display:flex;align-items:center;justify-content:center;color:#a00;font-size:.7rem;text-align:center}
.bad{color:#b71c1c}.good{color:#1b5e20}.muted{color:#777}.small{font-size:.85rem}
.status-worse{color:#b71c1c;font-weight:600}.status-best{color:#1b5e20;font-weight:600}
.status-too_small{color:#888}
caption{caption-side:bottom;text-align:left;font-size:.8rem;color:#666;padding-top:.3rem}
"""

# Chart colours.
_BAR = "#4c78a8"
_BAR_LOW = "#e45756"
_BEST = "#2e7d32"
_WORSE = "#c62828"
_SMALL = "#c8c8c8"
_GRID = "#e6e6e6"
_INK = "#333333"
_FONT = 11
_CHAR_W = 0.6  # rough width of a character, in font sizes


# --------------------------------------------------------------------------- small helpers


def _e(value: object) -> str:
    return html.escape(str(value))


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def as_interval(value: Any) -> tuple[float, float] | None:
    """A ``[lo, hi]`` pair of finite floats, or None."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        return None
    lo, hi = as_float(value[0]), as_float(value[1])
    return None if lo is None or hi is None else (lo, hi)


def format_percent(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage (``0.9612`` -> ``96.1%``); ``n/a`` when it is not a number."""
    f = as_float(value)
    return "n/a" if f is None else f"{100 * f:.{digits}f}%"


def format_percent_ci(ci: Any) -> str:
    """A ``[lo, hi]`` fraction interval as ``94.0–98.0%``; ``—`` when there is none."""
    iv = as_interval(ci)
    return "—" if iv is None else f"{100 * iv[0]:.1f}–{100 * iv[1]:.1f}%"


def format_decimal(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` decimals; ``n/a`` when it is not a number."""
    f = as_float(value)
    return "n/a" if f is None else f"{f:.{digits}f}"


def format_decimal_ci(ci: Any, digits: int = 4) -> str:
    """A ``[lo, hi]`` interval as ``0.0210–0.0450``; ``—`` when there is none."""
    iv = as_interval(ci)
    return "—" if iv is None else f"{iv[0]:.{digits}f}–{iv[1]:.{digits}f}"


def format_points(value: Any) -> str:
    """A score difference in percentage points, signed (``-33.0 pts``)."""
    f = as_float(value)
    if f is None:
        return "—"
    p = 100 * f
    return "0.0 pts" if abs(p) < 0.05 else f"{'+' if p > 0 else '-'}{abs(p):.1f} pts"


def as_int(value: Any) -> int:
    """A number as an int (0 when missing or not a number)."""
    f = as_float(value)
    return 0 if f is None else int(f)


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` as a list if it is a non-string sequence, else an empty list."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def _fit(text: str, width: float, size: float = _FONT) -> str:
    """``text`` cut (with an ellipsis) to about ``width`` pixels at font ``size``."""
    room = max(3, int(width / (size * _CHAR_W)))
    return text if len(text) <= room else text[: room - 1].rstrip() + "…"


def _text_width(text: str, size: float = _FONT) -> float:
    return len(text) * size * _CHAR_W


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{max(0, min(255, round(c))):02x}" for c in rgb)


def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _mix(a: str, b: str, t: float) -> str:
    """The colour ``t`` of the way from ``a`` to ``b``."""
    t = min(1.0, max(0.0, t))
    ra, rb = _rgb(a), _rgb(b)
    return _hex([x + (y - x) * t for x, y in zip(ra, rb, strict=True)])


def _ink_on(colour: str) -> str:
    """Black or white, whichever reads better on ``colour``."""
    r, g, b = _rgb(colour)
    return "#111" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


def _accuracy_colour(value: float) -> str:
    """Red (0) through yellow (0.5) to green (1)."""
    v = min(1.0, max(0.0, value))
    return _mix("#d73027", "#fee08b", v / 0.5) if v < 0.5 else _mix("#fee08b", "#1a9850", (v - 0.5) / 0.5)


def _svg(width: float, height: float, title: str, body: Sequence[str], cls: str = "chart") -> str:
    w, h = round(width), round(height)
    return (f'<svg class="{cls}" viewBox="0 0 {w} {h}" width="{w}" '
            f'height="{h}" role="img"><title>{_e(title)}</title>' + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: float = _FONT, fill: str = _INK,
          weight: str = "normal", extra: str = "") -> str:
    weight_attr = f' font-weight="{weight}"' if weight != "normal" else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"'
            f"{weight_attr}{extra}>{_e(text)}</text>")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "") -> str:
    """An HTML table; ``headers`` are escaped here, the cells must be escaped already."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f'<table class="data">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _note(text: str) -> str:
    return f'<p class="muted small">{_e(text)}</p>'


def _section(title: str, body: Sequence[str], anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>' + "\n".join(body) + "</section>"


# --------------------------------------------------------------------------- classes present


def _confusion(report: Mapping[str, Any]) -> np.ndarray | None:
    """The confusion matrix as a square int64 array matching ``labels``, or None."""
    raw = report.get("confusion")
    if raw is None:
        return None
    try:
        cm = np.asarray(raw, dtype=np.int64)
    except (TypeError, ValueError):
        return None
    labels = as_list(report.get("labels"))
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0 or (labels and len(labels) != cm.shape[0]):
        return None
    return cm


def _label_names(report: Mapping[str, Any], n: int) -> list[str]:
    labels = [str(x) for x in as_list(report.get("labels"))]
    return labels if len(labels) == n else [f"class {i}" for i in range(n)]


def _predicted_counts(report: Mapping[str, Any]) -> dict[str, int] | None:
    """How often each label was predicted (confusion column sums), or None without a confusion matrix."""
    cm = _confusion(report)
    if cm is None:
        return None
    return dict(zip(_label_names(report, len(cm)), cm.sum(axis=0).tolist(), strict=True))


def present_classes(report: Mapping[str, Any]) -> list[str]:
    """Names in ``report["per_class"]`` of the classes with support > 0 or that were predicted
    (read off the confusion matrix when there is one), most support first, then by name."""
    per_class = as_mapping(report.get("per_class"))
    predicted = _predicted_counts(report)
    names = [str(name) for name, m in per_class.items()
             if predicted is None or as_int(as_mapping(m).get("support")) > 0 or predicted.get(str(name), 0) > 0]
    return sorted(names, key=lambda n: (-as_int(as_mapping(per_class.get(n)).get("support")), n))


# --------------------------------------------------------------------------- bar charts


@dataclass(frozen=True)
class _Bar:
    label: str
    value: float | None
    ci: tuple[float, float] | None
    colour: str
    note: str = ""
    tooltip: str = ""
    grey: bool = False
    """Write the value and note in grey (a group or class that cannot be judged)."""


def _bar_chart(bars: Sequence[_Bar], *, title: str, axis: str, reference: float | None = None,
               reference_label: str = "") -> str:
    """Horizontal bars on a 0..1 scale, one row per bar, with CI error bars and an optional
    dashed reference line."""
    row_h, top, axis_h, plot_w = 22, 22 if reference is not None else 8, 36, 440
    label_w = min(240.0, max(60.0, max(_text_width(b.label) for b in bars) + 12))
    right_w = max(60.0, max(_text_width(f"100.0% {b.note}") for b in bars) + 14)
    width = label_w + plot_w + right_w
    height = top + row_h * len(bars) + axis_h

    def x(v: float) -> float:
        return label_w + plot_w * min(1.0, max(0.0, v))

    parts = []
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{top + row_h * len(bars)}" '
                     f'stroke="{_GRID}"/>')
        parts.append(_text(x(t), top + row_h * len(bars) + 14, f"{100 * t:.0f}%", anchor="middle", size=10,
                           fill="#666"))
    parts.append(_text(label_w + plot_w / 2, height - 6, axis, anchor="middle", size=10, fill="#666"))
    for i, b in enumerate(bars):
        y0 = top + i * row_h
        cy = y0 + row_h / 2
        tip = f"<title>{_e(b.tooltip or b.label)}</title>"
        parts.append(f"<g>{tip}")
        parts.append(_text(label_w - 8, cy + 4, _fit(b.label, label_w - 12), anchor="end"))
        if b.value is not None:
            parts.append(f'<rect x="{label_w:.1f}" y="{y0 + 4:.1f}" width="{x(b.value) - label_w:.1f}" '
                         f'height="{row_h - 8}" fill="{b.colour}" rx="2"/>')
        if b.ci is not None:
            lo, hi = x(b.ci[0]), x(b.ci[1])
            parts.append(f'<path d="M{lo:.1f},{cy:.1f}H{hi:.1f}M{lo:.1f},{cy - 5:.1f}V{cy + 5:.1f}'
                         f'M{hi:.1f},{cy - 5:.1f}V{cy + 5:.1f}" stroke="{_INK}" stroke-width="1.3" fill="none"/>')
        value = "" if b.value is None else f"{100 * b.value:.1f}%"
        parts.append(_text(label_w + plot_w + 8, cy + 4, f"{value} {b.note}".strip(), size=10,
                           fill="#888" if b.grey else _INK))
        parts.append("</g>")
    if reference is not None:
        rx = x(reference)
        parts.append(f'<line x1="{rx:.1f}" y1="{top - 6}" x2="{rx:.1f}" y2="{top + row_h * len(bars)}" '
                     f'stroke="{_BEST}" stroke-width="1.2" stroke-dasharray="4 3"/>')
        parts.append(_text(rx, top - 9, reference_label, anchor="middle", size=10, fill=_BEST))
    return _svg(width, height, title, parts)


# --------------------------------------------------------------------------- sections


def _classes_line(report: Mapping[str, Any], total: int) -> str:
    if report.get("task") == "detection":
        boxes = [as_int(k) for k in as_mapping(report.get("support")).values()]
        return f"{sum(k > 0 for k in boxes)} of {total} labels, {sum(boxes)} boxes"
    if report.get("task") == "segmentation":
        pixels = [as_int(as_mapping(m).get("support")) for m in as_mapping(report.get("per_class")).values()]
        return f"{sum(k > 0 for k in pixels)} of {total} classes in the ground truth, {sum(pixels):,} pixels counted"
    per_class = as_mapping(report.get("per_class"))
    present = present_classes(report)
    with_images = sum(as_int(as_mapping(per_class.get(n)).get("support")) > 0 for n in present)
    extra = len(present) - with_images
    return f"{with_images} of {total} labels" + (f" ({extra} more predicted)" if extra else "")


def _header(report: Mapping[str, Any], title: str) -> list[str]:
    skipped = as_list(report.get("skipped_files"))
    per_class = as_mapping(report.get("per_class"))
    labels = as_list(report.get("labels"))
    rows = [
        ("model", _e(report.get("model") or "unknown")),
        ("split", _e(report.get("split") or "all")),
        ("images evaluated", _e(as_int(report.get("num_samples", report.get("num_images"))))),
        ("classes" if report.get("task") == "segmentation" else "classes with images",
         _e(_classes_line(report, len(labels) or len(per_class)))),
        ("skipped files" if report.get("task") != "segmentation" else "items left out",
         f'<span class="{"bad" if skipped else "good"}">{len(skipped)}</span>'),
    ]
    out = [f"<h1>{_e(title)}</h1>",
           '<div class="panel"><table class="summary">'
           + "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"]
    if skipped:
        items = []
        for entry in skipped[:MAX_SKIPPED_LISTED]:
            e = as_list(entry)
            path, reason = (str(e[0]), str(e[1]) if len(e) > 1 else "") if e else (str(entry), "")
            items.append(f"<li><code>{_e(path)}</code>{': ' + _e(reason) if reason else ''}</li>")
        more = len(skipped) - MAX_SKIPPED_LISTED
        if more > 0:
            items.append(f"<li>… and {more} more</li>")
        out.append(f'<details><summary class="small">files that could not be used (not counted)</summary>'
                   f'<ul class="small">{"".join(items)}</ul></details>')
    out.append("</div>")
    return out


def _summary(report: Mapping[str, Any]) -> str:
    cis = as_mapping(report.get("confidence_intervals"))
    k = as_int(report.get("top_k")) or 5
    bins = as_int(report.get("ece_bins")) or 15
    t = as_float(report.get("temperature"))
    after = report.get("ece_after_scaling", report.get("ece"))
    rows = [
        ("accuracy (top-1)", format_percent(report.get("accuracy")), format_percent_ci(cis.get("accuracy"))),
        (f"top-{k} accuracy", format_percent(report.get("top5_accuracy")), format_percent_ci(cis.get("top5_accuracy"))),
        ("macro precision", format_percent(report.get("macro_precision")), "—"),
        ("macro recall", format_percent(report.get("macro_recall")), "—"),
        ("macro F1", format_percent(report.get("macro_f1")), format_percent_ci(cis.get("macro_f1"))),
        (f"ECE ({bins} bins), before temperature scaling", format_decimal(report.get("ece_before_scaling")), "—"),
        (f"ECE ({bins} bins), after temperature scaling", format_decimal(after), format_decimal_ci(cis.get("ece"))),
        ("negative log-likelihood", format_decimal(report.get("nll")), "—"),
        ("temperature T", "n/a" if t is None else f"{t:.3f}", "—"),
    ]
    level = as_float(cis.get("level"))
    if cis and as_mapping(cis.get("methods")):
        caption = (f"{format_percent(level if level is not None else 0.95, 0)} confidence intervals: Wilson score "
                   f"for accuracy and top-{k} accuracy; percentile bootstrap, {as_int(cis.get('resamples'))} "
                   f"resamples, seed {_e(cis.get('seed', 'n/a'))}, for macro F1 and ECE.")
        if cis.get("too_small"):
            caption += (f" Only {as_int(report.get('num_samples'))} images: too few to judge; the intervals show how "
                        "little they say.")
    elif cis:
        caption = (f"{format_percent(level if level is not None else 0.95, 0)} confidence intervals: "
                   f"percentile bootstrap, {as_int(cis.get('resamples'))} resamples, "
                   f"seed {_e(cis.get('seed', 'n/a'))}.")
    else:
        caption = "No confidence intervals were recorded."
    ci_head = f"{format_percent(level, 0)} CI" if level is not None else "95% CI"
    table = _table(["metric", "value", ci_head], [(_e(a), _e(b), _e(c)) for a, b, c in rows], caption)
    return _section("Summary metrics", [f'<div class="panel">{table}</div>'], "summary")


def detection_metric_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, interval) for AP, AP50 (with its bootstrap interval), AP75 and AR@100."""
    cis = as_mapping(report.get("confidence_intervals"))
    return [
        ("AP @[IoU .50:.95]", format_decimal(report.get("ap"), 3), "—"),
        ("AP50", format_decimal(report.get("ap50"), 3), format_decimal_ci(cis.get("ap50"), 3)),
        ("AP75", format_decimal(report.get("ap75"), 3), "—"),
        ("AR@100", format_decimal(report.get("ar100"), 3), "—"),
    ]


def _detection_summary(report: Mapping[str, Any]) -> str:
    cis = as_mapping(report.get("confidence_intervals"))
    f1 = as_mapping(report.get("best_f1"))
    base = detection_metric_rows(report)
    rows = [
        *base[:3],
        ("AP small / medium / large", " / ".join(format_decimal(report.get(k), 3)
                                                 for k in ("ap_small", "ap_medium", "ap_large")), "—"),
        base[3],
        ("best F1 at IoU .50", format_decimal(f1.get("f1"), 3),
         f"threshold {format_decimal(f1.get('threshold'), 3)}"),
        ("images / predictions", f"{as_int(report.get('num_images'))} / {as_int(report.get('num_predictions'))}",
         "—"),
    ]
    caption = (f"COCO evaluation (pycocotools-exact; -1 means undefined). AP50 interval: percentile bootstrap over "
               f"images, {as_int(cis.get('resamples'))} resamples, seed {_e(cis.get('seed', 'n/a'))}."
               if cis else "COCO evaluation (pycocotools-exact; -1 means undefined).")
    table = _table(["metric", "value", "95% CI / note"], [(_e(a), _e(b), _e(c)) for a, b, c in rows], caption)
    return _section("Summary metrics", [f'<div class="panel">{table}</div>'], "summary")


def _detection_per_class(report: Mapping[str, Any]) -> str:
    support = as_mapping(report.get("support"))
    ap50, ap = as_mapping(report.get("per_class_ap50")), as_mapping(report.get("per_class_ap"))
    names = sorted((n for n, k in support.items() if as_int(k) > 0), key=lambda n: (as_float(ap50.get(n)) or 0.0, n))
    if not names:
        return _section("Per-class results", [_note("No class has ground-truth boxes.")], "per-class")
    shown = names[:MAX_CHART_CLASSES]
    bars = [_Bar(n, as_float(ap50.get(n)), None, _BAR_LOW if (as_float(ap50.get(n)) or 0) < 0.5 else _BAR,
                 note=f"{as_int(support.get(n))} boxes", tooltip=f"{n}: AP50 {format_decimal(ap50.get(n), 3)}")
            for n in shown]
    chart = _bar_chart(bars, title="AP50 per class", axis="AP50")
    table = _table(["class", "boxes", "AP50", "AP @[.50:.95]"],
                   [(_e(n), _e(as_int(support.get(n))), _e(format_decimal(ap50.get(n), 3)),
                     _e(format_decimal(ap.get(n), 3))) for n in shown])
    note = _note(f"{len(shown)} of {len(names)} classes with boxes, lowest AP50 first; bars below 0.5 are red.")
    return _section("Per-class results", [note, f'<div class="panel">{chart}</div>',
                                          f'<div class="panel">{table}</div>'], "per-class")


def _per_class(report: Mapping[str, Any]) -> str:
    per_class = as_mapping(report.get("per_class"))
    present = present_classes(report)
    if not present:
        return _section("Per-class results", [_note("No per-class results were recorded.")], "per-class")
    predicted = _predicted_counts(report) or {}
    with_images = [n for n in present if as_int(as_mapping(per_class[n]).get("support")) > 0]
    predicted_only = sorted((n for n in present if n not in set(with_images)), key=lambda n: (-predicted.get(n, 0), n))
    # classes without images get one line, not a bar each (an ImageNet model on a 10-class set
    # predicts dozens of them once or twice)
    shown = (with_images or present)[:MAX_CHART_CLASSES]

    def order(name: str) -> tuple[bool, float, int, str]:
        m = as_mapping(per_class[name])
        support = as_int(m.get("support"))
        return support == 0, as_float(m.get("recall")) or 0.0, -support, name

    shown.sort(key=order)
    bars, rows = [], []
    for name in shown:
        m = as_mapping(per_class[name])
        r, ci, support = as_float(m.get("recall")), as_interval(m.get("recall_ci")), as_int(m.get("support"))
        if support == 0:  # predicted only: recall is undefined
            times = predicted.get(name)
            note = f"n=0, predicted {times}×" if times else "n=0"
            bars.append(_Bar(name, None, None, _SMALL, note=note, tooltip=f"{name}: no images, {note}", grey=True))
            rows.append((_e(name), _e(format_percent(m.get("precision"))), "—", "—", _e(format_percent(m.get("f1"))),
                         _e(format_percent_ci(m.get("f1_ci"))), "0"))
            continue
        ci_text = "" if ci is None else f", 95% CI {format_percent_ci(ci)}"
        bars.append(_Bar(name, r, ci, _BAR_LOW if r is not None and r < 0.5 else _BAR, note=f"n={support}",
                         tooltip=f"{name}: recall {format_percent(r)}{ci_text}, {support} images"))
        rows.append((_e(name), _e(format_percent(m.get("precision"))), _e(format_percent(r)),
                     _e(format_percent_ci(ci)), _e(format_percent(m.get("f1"))),
                     _e(format_percent_ci(m.get("f1_ci"))), _e(support)))
    note = (f"Showing the {len(shown)} classes with the most images, of {len(with_images)} classes with images. "
            if len(with_images) > len(shown) else f"All {len(shown)} classes with images. ")
    note += "Sorted by recall, lowest first; bars below 50% are red; whiskers are 95% confidence intervals."
    if with_images and predicted_only:
        listed = ", ".join(f"{n} ({predicted.get(n, 0)}×)" for n in predicted_only[:20])
        more = f" and {len(predicted_only) - 20} more" if len(predicted_only) > 20 else ""
        note += (f" Also predicted, though no evaluation image has the label ({len(predicted_only)} classes, "
                 f"precision 0): {listed}{more}.")
    chart = _bar_chart(bars, title="Recall per class with 95% confidence intervals", axis="recall")
    table = _table(["class", "precision", "recall", "recall 95% CI", "F1", "F1 95% CI", "support"], rows)
    return _section("Per-class results", [_note(note), f'<div class="panel">{chart}</div>',
                                          f'<div class="panel">{table}</div>'], "per-class")


def _confusion_section(report: Mapping[str, Any]) -> str:
    pixels = report.get("task") == "segmentation"
    cm = _confusion(report)
    if cm is None or cm.sum() == 0:
        return _section("Confusion matrix", [_note("No confusion matrix was recorded.")], "confusion")
    names = _label_names(report, len(cm))
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = [i for i in range(len(cm)) if support[i] > 0 or predicted[i] > 0]
    present.sort(key=lambda i: (-int(support[i]), -int(predicted[i]), i))
    # rows and columns for the classes with images; classes only predicted fold into "other"
    true_classes = [i for i in present if support[i] > 0] or present
    keep = true_classes[:MAX_CONFUSION_CLASSES]
    rest = [i for i in present if i not in set(keep)]
    m = cm[np.ix_(keep, keep)]
    labels = [names[i] for i in keep]
    if rest:
        rows_other = cm[np.ix_(rest, keep)].sum(axis=0)
        cols_other = cm[np.ix_(keep, rest)].sum(axis=1)
        corner = int(cm[np.ix_(rest, rest)].sum())
        m = np.block([[m, cols_other[:, None]], [rows_other[None, :], np.array([[corner]])]])
        labels.append(OTHER)
    svg = _confusion_svg(m, labels, has_other=bool(rest), percent=pixels)
    note = ("Rows are the true class, columns the predicted class; each cell holds a count, shaded by its "
            "share of the row (blue: correct, red: mistakes).")
    if pixels:
        note = ("Pixels: rows are the true class, columns the predicted class; each cell holds its share of the "
                "row's pixels in percent (blank: none, “·”: under 0.5%; the pixel count is in the tooltip), shaded "
                "by that share (blue: correct, red: mistakes). Ignored pixels are not counted.")
    if rest:
        note += (f" The {len(keep)} classes with the most images get their own row and column; the other "
                 f"{len(rest)} classes present (with images or only predicted) are folded into “{OTHER}”.")
    return _section("Confusion matrix", [_note(note), f'<div class="panel">{svg}</div>'], "confusion")


def _confusion_svg(m: np.ndarray, labels: Sequence[str], *, has_other: bool, percent: bool = False) -> str:
    n = len(labels)
    cell = 22 if n <= 20 else 20
    size = 9 if n > 12 else 10
    longest = max(_text_width(s) for s in labels)
    label_w = min(180.0, longest + 10)
    top_h = min(180.0, longest + 10) * 0.72 + 24
    left = label_w + 22
    width = left + n * cell + min(180.0, longest) * 0.72 + 12
    height = top_h + n * cell + 12
    row_sums = m.sum(axis=1)
    parts = [
        _text(left + n * cell / 2, 12, "predicted class", anchor="middle", size=11, weight="600"),
        _text(12, top_h + n * cell / 2, "true class", anchor="middle", size=11, weight="600",
              extra=f' transform="rotate(-90 12 {top_h + n * cell / 2:.1f})"'),
    ]
    for j, name in enumerate(labels):
        cx = left + j * cell + cell / 2 + 3
        style = ' font-style="italic"' if has_other and j == n - 1 else ""
        parts.append(f"<g><title>{_e(name)}</title>"
                     + _text(cx, top_h - 6, _fit(name, 180), size=10, extra=f'{style} transform="rotate(-45 '
                             f'{cx:.1f} {top_h - 6:.1f})"') + "</g>")
    for i, name in enumerate(labels):
        y = top_h + i * cell
        style = ' font-style="italic"' if has_other and i == n - 1 else ""
        parts.append(f"<g><title>{_e(name)}</title>"
                     + _text(left - 6, y + cell / 2 + 4, _fit(name, label_w - 6), anchor="end", size=10,
                             extra=style) + "</g>")
        for j in range(n):
            count = int(m[i, j])
            share = count / row_sums[i] if row_sums[i] else 0.0
            # "other" against "other" mixes right answers and confusions among the folded classes: grey.
            hue = "#757575" if has_other and i == j == n - 1 else "#2b6cb0" if i == j else "#d64541"
            shade = _mix("#ffffff", hue, 0.15 + 0.85 * share)
            fill = shade if count else "#ffffff"
            x = left + j * cell
            tip = f"true {labels[i]}, predicted {labels[j]}: {count} ({100 * share:.0f}% of the row)"
            parts.append(f'<g><title>{_e(tip)}</title><rect x="{x:.1f}" y="{y:.1f}" width="{cell}" '
                         f'height="{cell}" fill="{fill}" stroke="{_GRID}"/>')
            if count:
                label = (str(round(100 * share)) if round(100 * share) else "·") if percent else str(count)
                parts.append(_text(x + cell / 2, y + cell / 2 + size / 2 - 1, label, anchor="middle",
                                   size=size, fill=_ink_on(fill)))
            parts.append("</g>")
    return _svg(width, height, "Confusion matrix: true class (rows) against predicted class (columns)", parts)


def _reliability(report: Mapping[str, Any]) -> str:
    bins = [as_mapping(b) for b in as_list(report.get("reliability"))]
    bins = [b for b in bins if as_float(b.get("lo")) is not None and as_float(b.get("hi")) is not None]
    if not bins:
        return _section("Calibration", [_note("No reliability bins were recorded.")], "calibration")
    size, left, top, gap, hist_h = 320, 48, 12, 34, 70
    width, height = left + size + 20, top + size + gap + hist_h + 34

    def x(v: float) -> float:
        return left + size * min(1.0, max(0.0, v))

    def y(v: float) -> float:
        return top + size * (1 - min(1.0, max(0.0, v)))

    parts = []
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + size}" y2="{y(t):.1f}" stroke="{_GRID}"/>')
        parts.append(_text(left - 6, y(t) + 4, f"{t:.1f}", anchor="end", size=10, fill="#666"))
        parts.append(_text(x(t), top + size + 14, f"{t:.1f}", anchor="middle", size=10, fill="#666"))
    for b in bins:
        n = as_int(b.get("count"))
        if n <= 0:
            continue
        lo, hi = as_float(b["lo"]) or 0.0, as_float(b["hi"]) or 0.0
        acc, conf = as_float(b.get("accuracy")) or 0.0, as_float(b.get("confidence")) or 0.0
        tip = (f"confidence {lo:.2f}–{hi:.2f}: {n} images, accuracy {100 * acc:.1f}%, "
               f"mean confidence {100 * conf:.1f}%")
        parts.append(f'<g><title>{_e(tip)}</title><rect x="{x(lo) + 1:.1f}" y="{y(acc):.1f}" '
                     f'width="{max(1.0, x(hi) - x(lo) - 2):.1f}" height="{y(0) - y(acc):.1f}" fill="{_BAR}" '
                     f'fill-opacity="0.85"/>'
                     f'<line x1="{x(lo) + 1:.1f}" y1="{y(conf):.1f}" x2="{x(hi) - 1:.1f}" y2="{y(conf):.1f}" '
                     f'stroke="#f58518" stroke-width="2.5"/></g>')
    parts.append(f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" stroke="#555" '
                 f'stroke-dasharray="5 4"/>')
    parts.append(f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#999"/>')
    parts.append(_text(left + size / 2, top + size + 28, "confidence (top-1 probability)", anchor="middle",
                       size=10, fill="#666"))
    parts.append(_text(14, top + size / 2, "accuracy", anchor="middle", size=10, fill="#666",
                       extra=f' transform="rotate(-90 14 {top + size / 2:.1f})"'))
    parts.append(_text(left + 8, top + 16, "— perfect calibration", size=10, fill="#555"))
    parts.append(f'<rect x="{left + 8}" y="{top + 24}" width="10" height="10" fill="{_BAR}"/>')
    parts.append(_text(left + 22, top + 33, "accuracy per bin", size=10, fill="#555"))
    parts.append(f'<line x1="{left + 8}" y1="{top + 46}" x2="{left + 18}" y2="{top + 46}" stroke="#f58518" '
                 f'stroke-width="2.5"/>')
    parts.append(_text(left + 22, top + 50, "mean confidence", size=10, fill="#555"))
    # Bin counts, as a small histogram under the diagram.
    h0 = top + size + gap
    counts = [as_int(b.get("count")) for b in bins]
    peak = max(counts) or 1
    for b, n in zip(bins, counts, strict=True):
        lo, hi = as_float(b["lo"]) or 0.0, as_float(b["hi"]) or 0.0
        bar_h = (hist_h - 14) * n / peak
        parts.append(f'<g><title>{_e(f"{lo:.2f}–{hi:.2f}: {n} images")}</title><rect x="{x(lo) + 1:.1f}" '
                     f'y="{h0 + hist_h - bar_h:.1f}" width="{max(1.0, x(hi) - x(lo) - 2):.1f}" '
                     f'height="{bar_h:.1f}" fill="#9e9e9e"/></g>')
        if n:
            parts.append(_text((x(lo) + x(hi)) / 2, h0 + hist_h - bar_h - 3, str(n), anchor="middle", size=9,
                               fill="#555"))
    parts.append(f'<line x1="{left}" y1="{h0 + hist_h}" x2="{left + size}" y2="{h0 + hist_h}" stroke="#999"/>')
    parts.append(_text(left - 6, h0 + hist_h / 2 + 4, "images", anchor="end", size=10, fill="#666"))
    parts.append(_text(left + size / 2, h0 + hist_h + 16, "images per confidence bin", anchor="middle", size=10,
                       fill="#666"))
    svg = _svg(width, height, "Reliability diagram: accuracy against confidence per bin, with bin counts", parts)
    cis = as_mapping(report.get("confidence_intervals"))
    ece = report.get("ece_after_scaling", report.get("ece"))
    ci = as_interval(cis.get("ece"))
    t = as_float(report.get("temperature"))
    caption = (f"ECE {format_decimal(ece)}" + (f" (95% CI {format_decimal_ci(ci)})" if ci else "")
               + f" over {len(bins)} bins with temperature T = {'n/a' if t is None else f'{t:.3f}'}; "
               f"ECE before temperature scaling {format_decimal(report.get('ece_before_scaling'))}. "
               "Bars under the dashed diagonal mean over-confidence, bars above it under-confidence.")
    return _section("Calibration", [f'<div class="panel"><figure style="width:auto">{svg}'
                                    f'<figcaption class="small">{_e(caption)}</figcaption></figure></div>'],
                    "calibration")


_STATUS_TEXT = {"best": "best", "ok": "ok", "worse": "worse", "too_small": "too small to judge"}


def _subgroups(report: Mapping[str, Any]) -> str:
    reports = [as_mapping(s) for s in as_list(report.get("subgroups"))]
    if not reports:
        return _section("Subgroups", [_note("No subgroup analysis was run (no metadata columns were given).")],
                        "subgroups")
    body = [_note("Each metadata column splits the images into groups. A group is “worse” when its whole 95% "
                  "confidence interval lies below the best group’s; groups smaller than the minimum size are "
                  "too small to judge.")]
    for s in reports:
        column, metric = str(s.get("column", "?")), str(s.get("metric", "accuracy"))
        groups = [as_mapping(g) for g in as_list(s.get("groups"))]
        best = s.get("best")
        best_score = next((as_float(g.get("score")) for g in groups if g.get("group") == best), None)
        head = f"<h3>{_e(column)} <span class='muted small'>({_e(metric)}, minimum group size " \
               f"{_e(s.get('min_size', 'n/a'))})</span></h3>"
        if not groups:
            body.append(head + _note("No groups."))
            continue
        bars, rows = [], []
        for g in groups:
            name, status = str(g.get("group", "")), str(g.get("status", "ok"))
            score, ci, n = as_float(g.get("score")), as_interval(g.get("ci")), as_int(g.get("n"))
            colour = {"best": _BEST, "worse": _WORSE, "too_small": _SMALL}.get(status, _BAR)
            note = f"n={n}" + (" · too small to judge" if status == "too_small" else "")
            bars.append(_Bar(name or "(empty)", score, ci, colour, note=note, grey=status == "too_small",
                             tooltip=f"{name}: {metric} {format_percent(score)}, 95% CI {format_percent_ci(ci)}, "
                                     f"n={n}, {status}"))
            rows.append((_e(name or "(empty)"), _e(n), _e(format_percent(score)), _e(format_percent_ci(ci)),
                         _e(format_points(g.get("gap"))),
                         f'<span class="status-{_e(status)}">{_e(_STATUS_TEXT.get(status, status))}</span>'))
        chart = _bar_chart(bars, title=f"{metric} per {column} group with 95% confidence intervals", axis=metric,
                           reference=best_score, reference_label=f"best: {best}" if best is not None else "")
        worse = [str(g.get("group")) for g in groups if g.get("status") == "worse"]
        verdict = (f'<p class="bad small">Worse than the best group ({_e(best)}): {_e(", ".join(worse))}.</p>'
                   if worse else '<p class="good small">No group is measurably worse than the best.</p>')
        table = _table(["group", "n", metric, "95% CI", "gap to best", "status"], rows)
        body.append(f'{head}<div class="panel">{chart}{verdict}{table}</div>')
    return _section("Subgroups", body, "subgroups")


def _corruptions(report: Mapping[str, Any]) -> str:
    c = report.get("corruptions")
    acc = as_mapping(as_mapping(c).get("accuracy"))
    if not acc:
        return _section("Robustness to corruptions", [_note("No corruption benchmark was run.")], "corruptions")
    c = as_mapping(c)
    severities = [str(s) for s in as_list(c.get("severities"))] or [str(i + 1) for i in range(5)]
    clean = as_float(c.get("clean_accuracy"))
    worst = as_mapping(c.get("worst"))
    columns = ["clean", *severities, "mean"]
    names = list(acc)
    cell_w, cell_h = 62, 26
    label_w = min(200.0, max(_text_width(n) for n in names) + 14)
    top = 40
    width, height = label_w + cell_w * len(columns) + 10, top + cell_h * len(names) + 10
    parts = [_text(label_w + cell_w * (1 + len(severities) / 2), 12, "severity", anchor="middle", size=11,
                   weight="600")]
    for j, col in enumerate(columns):
        parts.append(_text(label_w + cell_w * j + cell_w / 2, top - 8, col, anchor="middle", size=10,
                           weight="600" if col in ("clean", "mean") else "normal"))
    worst_cell = None
    for i, name in enumerate(names):
        values = [as_float(v) for v in as_list(acc[name])]
        finite = [v for v in values if v is not None]
        row = [clean, *values[: len(severities)], sum(finite) / len(finite) if finite else None]
        y = top + i * cell_h
        parts.append(_text(label_w - 8, y + cell_h / 2 + 4, _fit(name, label_w - 10), anchor="end"))
        for j, v in enumerate(row):
            x = label_w + cell_w * j
            fill = "#f0f0f0" if v is None else _accuracy_colour(v)
            col = columns[j]
            tip = f"{name}, {col if col in ('clean', 'mean') else 'severity ' + col}: {format_percent(v)}"
            parts.append(f'<g><title>{_e(tip)}</title><rect x="{x:.1f}" y="{y:.1f}" width="{cell_w}" '
                         f'height="{cell_h}" fill="{fill}" stroke="#fff" stroke-width="2"/>'
                         + _text(x + cell_w / 2, y + cell_h / 2 + 4, format_percent(v), anchor="middle", size=10,
                                 fill=_ink_on(fill)) + "</g>")
            if (name == worst.get("corruption") and col not in ("clean", "mean")
                    and str(worst.get("severity")) == col):
                worst_cell = (x, y)
    if worst_cell is not None:
        parts.append(f'<rect x="{worst_cell[0] + 1:.1f}" y="{worst_cell[1] + 1:.1f}" width="{cell_w - 2}" '
                     f'height="{cell_h - 2}" fill="none" stroke="#111" stroke-width="2.5"/>')
    svg = _svg(width, height, "Accuracy under each corruption and severity", parts)
    worst_text = (f"{worst.get('corruption')} at severity {worst.get('severity')}: "
                  f"{format_percent(worst.get('accuracy'))}" if worst else "n/a")
    summary = [
        ("clean accuracy", format_percent(clean)),
        ("mean accuracy under corruption", format_percent(c.get("mean_accuracy"))),
        ("relative accuracy (mean / clean)", format_percent(c.get("relative_accuracy"))),
        ("worst case", worst_text),
        ("images, seed", f"{as_int(c.get('num_samples'))}, {c.get('seed', 'n/a')}"),
    ]
    table = '<table class="summary small">' + "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in summary) + "</table>"
    note = _note("Accuracy of the model on copies of the evaluation images with each synthetic corruption applied "
                 "at severities 1 (mild) to 5 (strong); the worst cell is outlined.")
    return _section("Robustness to corruptions", [note, f'<div class="panel">{svg}{table}</div>'], "corruptions")


def _thumbnail(path: str, size: int) -> str | None:
    try:
        return thumbnail_data_uri(path, size)
    except (VisorError, OSError, ValueError):
        return None


def _mistakes(report: Mapping[str, Any], thumb_size: int) -> str:
    mistakes = [as_mapping(m) for m in as_list(report.get("mistakes"))]
    if not mistakes:
        return _section("Example mistakes", [_note("No mistakes to show.")], "mistakes")
    figs = []
    cache: dict[str, str | None] = {}
    box = f"width:{thumb_size}px;height:{thumb_size}px"
    for m in mistakes:
        path = str(m.get("path", ""))
        if path not in cache:
            cache[path] = _thumbnail(path, thumb_size) if path else None
        uri = cache[path]
        name = path.replace("\\", "/").rsplit("/", 1)[-1] or "(no path)"
        img = (f'<img src="{uri}" alt="{_e(name)}" style="{box}">' if uri is not None
               else f'<div class="missing" style="{box}">image not available</div>')
        caption = (f'<span class="muted fname" title="{_e(path)}">{_e(name)}</span>'
                   f'true: <span class="good">{_e(m.get("label", "?"))}</span><br>'
                   f'predicted: <span class="bad">{_e(m.get("predicted", "?"))}</span> '
                   f'({_e(format_percent(m.get("confidence")))})')
        figs.append(f'<figure style="width:{thumb_size + 8}px">{img}<figcaption>{caption}</figcaption></figure>')
    note = _note(f"{len(mistakes)} wrongly classified images, most confident first.")
    return _section("Example mistakes", [note, f'<div class="panel"><div class="row">{"".join(figs)}</div></div>'],
                    "mistakes")


# --------------------------------------------------------------------------- segmentation


def _segmentation_summary(report: Mapping[str, Any]) -> str:
    cis = as_mapping(report.get("confidence_intervals"))
    rows = [
        ("mIoU (mean IoU over the classes in ground truth or prediction)", format_decimal(report.get("miou")),
         format_decimal_ci(cis.get("miou"))),
        ("mean Dice", format_decimal(report.get("mean_dice")), format_decimal_ci(cis.get("mean_dice"))),
        ("pixel accuracy", format_percent(report.get("pixel_accuracy")), format_percent_ci(cis.get("pixel_accuracy"))),
        ("mean class accuracy", format_percent(report.get("mean_accuracy")), "—"),
        ("images / pixels counted", f"{as_int(report.get('num_images'))} / {as_int(report.get('num_pixels')):,}", "—"),
    ]
    level = as_float(cis.get("level"))
    caption = ("IoU and Dice are computed over all pixels of the set (not averaged per image); classes absent from "
               "both ground truth and prediction are left out of the means; pixels whose ground truth is the ignore "
               "index are not counted.")
    if cis:
        caption += (f" {format_percent(level if level is not None else 0.95, 0)} confidence intervals: percentile "
                    f"bootstrap over images (the images' pixel confusion matrices resampled and summed), "
                    f"{as_int(cis.get('resamples'))} resamples, seed {cis.get('seed', 'n/a')}.")
        if cis.get("too_small"):
            caption += (f" Only {as_int(report.get('num_images'))} images: too few to judge; the intervals show how "
                        "little they say.")
    background = [str(x) for x in as_list(report.get("model_labels_as_background"))]
    if background:
        caption += (f" The model's labels that the data does not have ({', '.join(background[:12])}"
                    f"{' …' if len(background) > 12 else ''}) count as background.")
    head = f"{format_percent(level, 0)} CI" if level is not None else "95% CI"
    table = _table(["metric", "value", head], [(_e(a), _e(b), _e(c)) for a, b, c in rows], caption)
    return _section("Summary metrics", [f'<div class="panel">{table}</div>'], "summary")


def _segmentation_per_class(report: Mapping[str, Any]) -> str:
    per_class = as_mapping(report.get("per_class"))
    scored = [str(n) for n, m in per_class.items() if as_float(as_mapping(m).get("iou")) is not None]
    absent = [str(n) for n in per_class if str(n) not in set(scored)]
    if not scored:
        return _section("Per-class IoU", [_note("No class is in the ground truth or the prediction.")], "per-class")

    def iou(name: str) -> float:
        return as_float(as_mapping(per_class[name]).get("iou")) or 0.0

    shown = sorted(scored, key=lambda n: (iou(n), n))[:MAX_CHART_CLASSES]
    bars, rows = [], []
    for name in shown:
        m = as_mapping(per_class[name])
        value, ci, support = as_float(m.get("iou")), as_interval(m.get("iou_ci")), as_int(m.get("support"))
        note = "not in ground truth" if support == 0 else f"{support:,} px"
        bars.append(_Bar(name, value, ci, _BAR_LOW if (value or 0) < 0.5 else _BAR, note=note, grey=support == 0,
                         tooltip=f"{name}: IoU {format_decimal(value)}"
                                 + (f", 95% CI {format_decimal_ci(ci)}" if ci else "") + f", {support:,} true pixels, "
                                 f"{as_int(m.get('predicted')):,} predicted"))
        rows.append((_e(name), _e(format_decimal(value)), _e(format_decimal_ci(ci)), _e(format_decimal(m.get("dice"))),
                     _e(format_percent(m.get("accuracy"))), _e(f"{support:,}"), _e(f"{as_int(m.get('predicted')):,}")))
    note = (f"{len(shown)} of {len(scored)} classes in the ground truth or the prediction, lowest IoU first; bars "
            "below 0.5 are red; whiskers are 95% bootstrap intervals over images. A class only predicted scores 0.")
    if len(scored) > len(shown):
        note += f" {len(scored) - len(shown)} more classes are in the JSON report."
    if absent:
        note += (f" Absent from both ground truth and prediction (no IoU, left out of the means): "
                 f"{', '.join(absent[:20])}{' …' if len(absent) > 20 else ''}.")
    chart = _bar_chart(bars, title="IoU per class with 95% confidence intervals", axis="IoU")
    table = _table(["class", "IoU", "IoU 95% CI", "Dice", "accuracy (recall)", "true pixels", "predicted pixels"],
                   rows)
    return _section("Per-class IoU", [_note(note), f'<div class="panel">{chart}</div>',
                                      f'<div class="panel">{table}</div>'], "per-class")


def _class_legend(report: Mapping[str, Any]) -> str:
    """Colour swatches (the VOC palette the overlays use) of the classes in the worst images."""
    from visor.types.segmentation import palette

    names = [str(n) for n in as_list(report.get("labels"))]
    used = {str(c) for w in as_list(report.get("worst_images")) for key in ("classes", "predicted")
            for c in as_list(as_mapping(w).get(key))}
    colours = palette(max(1, len(names)))
    items = []
    for i, name in enumerate(names):
        if name not in used:
            continue
        rgb = colours[3 * i: 3 * i + 3]
        swatch = "transparent; border:1px solid #999" if i == 0 else _hex(rgb)
        items.append(f'<span style="white-space:nowrap;margin-right:.8rem"><span style="display:inline-block;'
                     f'width:.8rem;height:.8rem;vertical-align:middle;background:{swatch}"></span> {_e(name)}</span>')
    return f'<p class="small">{"".join(items)}</p>' if items else ""


def _worst_images(report: Mapping[str, Any], overlays: Mapping[str, str], thumb_size: int) -> str:
    worst = [as_mapping(w) for w in as_list(report.get("worst_images"))]
    if not worst:
        return _section("Worst images", [_note("No per-image results were recorded.")], "worst")
    figs = []
    for w in worst:
        path = str(w.get("path", ""))
        name = path.replace("\\", "/").rsplit("/", 1)[-1] or "(no path)"
        uri = overlays.get(path)
        if uri is not None and uri.startswith("data:image/"):
            img = (f'<img src="{_e(uri)}" alt="{_e(name)}: image, ground truth, prediction, errors" '
                   'style="max-width:100%">')
        else:
            thumb = _thumbnail(path, thumb_size) if path else None
            box = f"width:{thumb_size}px;height:{thumb_size}px"
            img = (f'<img src="{thumb}" alt="{_e(name)}" style="{box}">' if thumb is not None
                   else f'<div class="missing" style="{box}">image not available</div>')
        caption = (f'<span class="muted fname" title="{_e(path)}">{_e(name)}</span>'
                   f'mIoU <span class="bad">{_e(format_decimal(w.get("miou")))}</span>, pixel accuracy '
                   f'{_e(format_percent(w.get("pixel_accuracy")))}<br>'
                   f'true: {_e(", ".join(str(c) for c in as_list(w.get("classes"))) or "—")}<br>'
                   f'predicted: {_e(", ".join(str(c) for c in as_list(w.get("predicted"))) or "—")}')
        figs.append(f'<figure style="max-width:100%">{img}<figcaption>{caption}</figcaption></figure>')
    note = _note(f"The {len(worst)} images with the lowest mIoU of their own (over the classes in that image's ground "
                 "truth or prediction), worst first. Each strip: the image, the ground truth over it, the prediction "
                 "over it (the first class is not tinted; hatched grey: ignored pixels) and the errors (magenta: wrong "
                 "pixels, grey: ignored).")
    legend = _class_legend(report) if overlays else ""
    return _section("Worst images", [note, f'<div class="panel">{legend}<div class="row">{"".join(figs)}</div></div>'],
                    "worst")


# --------------------------------------------------------------------------- page


def render_report_html(report: Mapping[str, Any], *, thumb_size: int = 112, title: str | None = None,
                       overlays: Mapping[str, str] | None = None) -> str:
    """The evaluation report ``report`` (the dict of ``visor evaluate --json``) as one
    self-contained HTML page: header, summary metrics with confidence intervals, per-class
    recall, confusion matrix, reliability diagram, subgroups, corruptions and example mistakes.
    A segmentation report (``task`` ``"segmentation"``) gets mIoU / Dice / pixel accuracy, the per-class
    IoU chart, the pixel confusion matrix, subgroups and its worst images: ``overlays`` maps their paths to
    ``data:image/...`` strips (:attr:`visor.evaluate.segmenter.SegmenterEvaluation.overlays`); without one,
    a plain thumbnail.

    Raises :class:`~visor.errors.InvalidInput` when ``report`` is not a mapping or
    ``thumb_size`` is not positive.
    """
    if not isinstance(report, Mapping):
        raise InvalidInput(f"report must be a mapping (the evaluation report dict), got {type(report).__name__}")
    if int(thumb_size) <= 0:
        raise InvalidInput(f"thumb_size must be positive, got {thumb_size}")
    page_title = title or f"visor evaluation report: {report.get('model') or 'unknown model'}"
    if report.get("task") == "detection":
        sections = [("summary", "summary"), ("per-class", "per class"), ("subgroups", "subgroups")]
        body = [_detection_summary(report), _detection_per_class(report), _subgroups(report)]
    elif report.get("task") == "segmentation":
        sections = [("summary", "summary"), ("per-class", "per-class IoU"), ("confusion", "confusion"),
                    ("subgroups", "subgroups"), ("worst", "worst images")]
        body = [_segmentation_summary(report), _segmentation_per_class(report), _confusion_section(report),
                _subgroups(report), _worst_images(report, as_mapping(overlays), int(thumb_size))]
    else:
        sections = [("summary", "summary"), ("per-class", "per class"), ("confusion", "confusion"),
                    ("calibration", "calibration"), ("subgroups", "subgroups"), ("corruptions", "corruptions"),
                    ("mistakes", "mistakes")]
        body = [_summary(report), _per_class(report), _confusion_section(report), _reliability(report),
                _subgroups(report), _corruptions(report), _mistakes(report, int(thumb_size))]
    nav = " · ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in sections)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(page_title)}</title>", f"<style>{_STYLE}</style></head><body>",
        *_header(report, page_title),
        f'<p class="small">{nav}</p>',
        *body,
        '<p class="muted small">Generated by visor. All numbers are measured on the evaluation data above only.</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report_html(report: Mapping[str, Any], path: str | os.PathLike, *, thumb_size: int = 112,
                      title: str | None = None, overlays: Mapping[str, str] | None = None) -> Path:
    """Render the report page and write it to ``path`` atomically (a temporary file in the
    same folder, then ``os.replace``); parent folders are created. Returns the path."""
    text = render_report_html(report, thumb_size=thumb_size, title=title, overlays=overlays)
    return write_text_atomic(Path(path), text)


def write_text_atomic(out: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``out`` through a temporary file in the same folder and
    ``os.replace``, so readers never see a half-written file; parent folders are created."""
    from visor.io.files import atomic_write

    return atomic_write(out, text)


__all__ = [
    "MAX_CHART_CLASSES",
    "MAX_CONFUSION_CLASSES",
    "as_float",
    "as_int",
    "as_interval",
    "as_list",
    "as_mapping",
    "detection_metric_rows",
    "format_decimal",
    "format_decimal_ci",
    "format_percent",
    "format_percent_ci",
    "format_points",
    "present_classes",
    "render_report_html",
    "write_report_html",
    "write_text_atomic",
]
