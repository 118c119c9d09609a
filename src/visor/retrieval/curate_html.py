"""The curation report as one self-contained HTML page: thumbnails are inline base64 JPEGs,
styles are inline, and nothing is fetched from anywhere.

The page is drawn from the report's JSON document (:meth:`visor.retrieval.curate.CurationReport.to_dict`,
what ``curation.json`` holds), so a saved ``curation.json`` can be drawn again, and this module needs
nothing from :mod:`visor.retrieval.curate`."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

from visor.errors import VisorError
from visor.io import open_image

#: Longest side of a thumbnail, in pixels.
THUMB_SIZE = 128
_QUALITY = 70

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table.summary td{padding:.15rem .8rem .15rem 0}
.row{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-start}
.group{display:flex;flex-wrap:wrap;gap:.4rem;background:#fff;border:1px solid #ddd;border-radius:6px;
padding:.5rem;margin:.5rem 0}
.group .meta{flex-basis:100%;font-size:.85rem;color:#555}
figure{margin:0;width:136px;font-size:.75rem;word-break:break-all}
figure img,.missing{width:128px;height:128px;object-fit:contain;background:#eee;border-radius:4px;display:block}
.missing{display:flex;align-items:center;justify-content:center;color:#a00;font-size:.7rem;text-align:center}
.bad{color:#a00}.good{color:#070}.muted{color:#777}
"""


def thumbnail_data_uri(path: str, size: int = THUMB_SIZE) -> str | None:
    """``data:image/jpeg;base64,...`` of a small copy of the image, or None if it cannot be decoded."""
    try:
        img = open_image(path, draft_size=(size, size))
    except VisorError:
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class _Thumbs:
    def __init__(self, size: int) -> None:
        self.size = size
        self.cache: dict[str, str | None] = {}

    def figure(self, path: str, *lines: str) -> str:
        if path not in self.cache:
            self.cache[path] = thumbnail_data_uri(path, self.size)
        uri = self.cache[path]
        name = html.escape(path.replace("\\", "/").rsplit("/", 1)[-1])
        img = (f'<img src="{uri}" alt="{name}" loading="lazy">' if uri is not None
               else '<div class="missing">cannot decode</div>')
        caption = "<br>".join([f'<span title="{html.escape(path)}">{name}</span>', *lines])
        return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def _e(value: object) -> str:
    return html.escape(str(value))


def _section(title: str, count: int, body: list[str], note: str = "") -> str:
    head = f"<h2>{_e(title)} ({count})</h2>"
    note_html = f'<p class="muted">{_e(note)}</p>' if note else ""
    return head + note_html + ("\n".join(body) if body else '<p class="muted">none found</p>')


def render_html(report: Mapping[str, Any], *, thumb_size: int = THUMB_SIZE) -> str:
    """The whole page as a string, from the report's JSON document (``CurationReport.to_dict()``)."""
    t = _Thumbs(thumb_size)
    summary = report["summary"]
    acc = "n/a" if summary["oof_accuracy"] is None else f"{summary['oof_accuracy']:.1%}"
    near, leakage = report["near_duplicates"], report["leakage"]
    mistakes, outliers, hard = report["label_mistakes"], report["outliers"], report["hard_examples"]
    unreadable = report["unreadable"]
    summary_rows = [
        ("images", summary["samples"]), ("classes", summary["classes"]),
        ("splits", ", ".join(f"{k}: {v}" for k, v in report["splits"].items()) or "none"),
        ("model", report["model"]), ("near-duplicate threshold", f"{report['threshold']:g}"),
        ("unreadable", summary["unreadable"]), ("exact duplicate groups", summary["exact_duplicate_groups"]),
        ("near-duplicate clusters", summary["near_duplicate_clusters"]), ("leakage pairs", summary["leakage_pairs"]),
        ("label disagreements", f"{summary['disagreements']} (out-of-fold accuracy {acc}, {report['folds']} folds)"),
    ]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>visor curation report</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>visor curation report</h1>",
        '<table class="summary">' + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in summary_rows)
        + "</table>",
    ]

    groups = []
    for c in near:
        flags = [f"{len(c['paths'])} images",
                 "identical bytes" if c["exact"] else f"weakest link {c['similarity']:.3f}"]
        if c["leaks"]:
            flags.append('<span class="bad">spans splits</span>')
        if c["label_conflict"]:
            flags.append('<span class="bad">different labels</span>')
        figs = [t.figure(p, _e(lab) + (f" · {_e(s)}" if s else "")) for p, lab, s in
                zip(c["paths"], c["labels"], c["splits"], strict=True)]
        groups.append(f'<div class="group"><div class="meta">{" · ".join(flags)}</div>{"".join(figs)}</div>')
    parts.append(_section("Near-duplicate clusters", len(near), groups,
                          f"images whose embeddings have cosine similarity >= {report['threshold']:g}, exact copies "
                          "included"))

    pairs = []
    for p in leakage:
        kind = "identical bytes" if p["exact"] else f"similarity {p['similarity']:.3f}"
        a, b = (t.figure(p[f"path_{s}"], f"{_e(p[f'split_{s}'])} · {_e(p[f'label_{s}'])}") for s in "ab")
        pairs.append(f'<div class="group"><div class="meta">{kind}</div>{a}{b}</div>')
    parts.append(_section("Leakage across splits", len(leakage), pairs))

    figs = [t.figure(m["path"], f'given <span class="bad">{_e(m["given"])}</span> ({m["given_probability"]:.2f})',
                     f'suggested <span class="good">{_e(m["suggested"])}</span> ({m["confidence"]:.2f})')
            for m in mistakes]
    parts.append(_section("Suspected label mistakes", len(mistakes),
                          [f'<div class="row">{"".join(figs)}</div>'] if figs else [],
                          "out-of-fold predictions that disagree with the label, most confident first"))

    figs = [t.figure(o["path"], _e(o["label"]), f"distance {o['score']:.3f}") for o in outliers]
    parts.append(_section("Outliers", len(outliers), [f'<div class="row">{"".join(figs)}</div>'] if figs else [],
                          "largest mean distance to their nearest neighbours"))

    figs = [t.figure(h["path"], f"{_e(h['label'])} ({h['probability']:.2f})",
                     f"vs {_e(h['runner_up'])}, margin {h['margin']:.3f}") for h in hard]
    parts.append(_section("Hard examples", len(hard), [f'<div class="row">{"".join(figs)}</div>'] if figs else [],
                          "correctly predicted, with the smallest margin over the runner-up class"))

    bad = [f"<li><code>{_e(u['path'])}</code>: {_e(u['error'])}</li>" for u in unreadable]
    parts.append(_section("Unreadable images", len(unreadable), [f"<ul>{''.join(bad)}</ul>"] if bad else []))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


__all__ = ["THUMB_SIZE", "render_html", "thumbnail_data_uri"]
