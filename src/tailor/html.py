"""Small building blocks for Tailor's self-contained HTML reports (no JavaScript, no external assets).

Reports are plain strings: :func:`page` wraps sections; :func:`table`, :func:`bar_chart` and
:func:`heatmap` render data as escaped HTML and inline SVG.
"""

from __future__ import annotations

import math
import unicodedata
from html import escape
from typing import Iterable, Sequence

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem} th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#656d76} .warn{color:#9a6700} .bad{color:#cf222e} .ok{color:#1a7f37}
svg text{font-family:inherit} .scroll{overflow-x:auto;max-width:100%}
"""


def page(title: str, sections: Iterable[str], subtitle: str = "") -> str:
    """A complete HTML document with Tailor's styles."""
    sub = f'<p class="muted">{escape(subtitle)}</p>' if subtitle else ""
    body = "\n".join(sections)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>{sub}\n{body}\n</body></html>\n"
    )


def section(heading: str, *parts: str) -> str:
    """A titled section made of already-rendered parts."""
    return f"<section><h2>{escape(heading)}</h2>{''.join(parts)}</section>"


def paragraph(text: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return f"<p{cls}>{escape(text)}</p>"


def _cell(value, tag: str) -> str:
    if isinstance(value, float):
        return f'<{tag} class="num">{value:.4f}</{tag}>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<{tag} class="num">{value}</{tag}>'
    return f"<{tag}>{escape(str(value))}</{tag}>"


def table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """An HTML table; floats are shown with four decimals, numbers right-aligned."""
    head = "".join(_cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(_cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_width(text: str, font_px: float) -> float:
    """About how wide ``text`` renders at ``font_px`` (wide East Asian characters a full em, others 0.62 em),
    so SVG labels get room for their whole text."""
    return sum(font_px * (1.0 if unicodedata.east_asian_width(c) in "WF" else 0.62) for c in text)


def bar_chart(items: Sequence[tuple[str, float]], *, max_value: float | None = None, fmt: str = "{:.3f}",
              bar_width: int = 420, color: str = "#0969da") -> str:
    """Horizontal bars, one per (label, value), as inline SVG; labels are shown whole."""
    if not items:
        return ""
    top = max_value if max_value is not None else max(v for _, v in items) or 1.0
    label_w = math.ceil(max(text_width(str(label), 12) for label, _ in items)) + 12
    bar_h, gap = 18, 4
    width, height = label_w + bar_width + 70, len(items) * (bar_h + gap)
    bars = []
    for i, (label, value) in enumerate(items):
        y = i * (bar_h + gap)
        w = max(0.0, bar_width * (value / top if top else 0.0))
        bars.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="12">{escape(str(label))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="12">{escape(fmt.format(value))}</text>'
        )
    return f'<div class="scroll"><svg width="{width}" height="{height}" role="img">{"".join(bars)}</svg></div>'


def heatmap(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """A confusion-matrix style heat map (rows = true, columns = predicted) as inline SVG.

    Every label is written whole (row labels to the left, column labels turned upright above), every
    non-zero cell shows its count, and each cell's tooltip names both labels. Cells stay at least 22 px, so
    77 labels still read; a wide map scrolls sideways instead of shrinking.
    """
    n = len(labels)
    if n == 0:
        return ""
    cell = 34 if n <= 10 else 28 if n <= 30 else 22
    font, count_font = 11, 11 if cell >= 28 else 9
    margin = math.ceil(max(text_width(str(label), font) for label in labels)) + 12
    top = max((max(row) for row in matrix), default=0) or 1
    parts = []
    for i, row in enumerate(matrix):
        parts.append(f'<text x="{margin - 6}" y="{margin + i * cell + cell / 2 + font / 3:.1f}" text-anchor="end" '
                     f'font-size="{font}">{escape(str(labels[i]))}</text>')
        for j, value in enumerate(row):
            shade = value / top
            fill = f"rgb({int(255 - 246 * shade)},{int(255 - 150 * shade)},{int(255 - 37 * shade)})"
            x, y = margin + j * cell, margin + i * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff">'
                         f"<title>true {escape(str(labels[i]))}, predicted {escape(str(labels[j]))}: {value}</title></rect>")
            if value:
                color = "#fff" if shade > 0.5 else "#1f2328"
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + count_font / 3:.1f}" text-anchor="middle" '
                             f'font-size="{count_font}" fill="{color}">{value}</text>')
    for j, label in enumerate(labels):
        x = margin + j * cell + cell / 2 + font / 3
        parts.append(f'<text x="{x:.1f}" y="{margin - 6}" font-size="{font}" '
                     f'transform="rotate(-90 {x:.1f} {margin - 6})">{escape(str(label))}</text>')
    size = margin + n * cell + 10
    return f'<div class="scroll"><svg width="{size}" height="{size}" role="img">{"".join(parts)}</svg></div>'
