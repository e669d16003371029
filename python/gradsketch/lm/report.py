"""The LM suite's HTML report: sections of headings, paragraphs, tables and inline-SVG charts.

It looks like the Fashion-MNIST report (Sources/GradSketchExperiments/ExperimentSupport.swift,
``HTMLReport``: same fonts, table style and horizontal bars) so that ``gradsketch-reproduce
--suite all`` can embed :meth:`Report.fragment` into that page as its LM section. Unlike that
report, every figure here is a mean over seeds, so bars carry ±SE whiskers and scatters carry
error bars; :func:`mean_se` is the one place standard errors are computed.

No torch and no engine: only the standard library and numpy, so a report can be rebuilt from a
``report.json`` anywhere.
"""

from __future__ import annotations

import html as _html
import json
import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

__all__ = ["mean_se", "format_mean_se", "Report", "BAR_GEOMETRY", "STYLE"]

#: The page style, the Fashion-MNIST report's plus the provenance block and chart spacing.
STYLE = (
    "body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
    "svg{display:block;margin:1em 0}"
    ".provenance td,.provenance th{text-align:left;font-size:90%}"
    ".provenance{background:#f8f8f8}"
)

#: Layout of :meth:`Report.bars` in SVG user units (pixels). The plot area runs from x =
#: ``label_width`` to ``width - value_width``; row ``i`` starts at y = ``top + i * row_height``
#: and its bar (and whisker) is centred at y + ``row_height / 2``.
BAR_GEOMETRY = {"width": 640, "label_width": 220, "value_width": 110, "row_height": 22, "top": 24}

_BAR_COLOUR = "#4a7bb7"
_WHISKER_COLOUR = "#222"
_REFERENCE_COLOUR = "#c0392b"


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean of per-seed values.

    The standard error is the sample standard deviation (n − 1 in the denominator, because the
    mean is estimated from the same values) divided by √n. With fewer than two values there is
    no spread to estimate, so the standard error is NaN (and the mean is NaN for no values)
    rather than a misleading 0.
    """
    array = np.asarray(list(values), dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"mean_se expects a flat sequence of numbers, found shape {array.shape}")
    n = array.size
    if n == 0:
        return math.nan, math.nan
    mean = float(array.mean())
    if n < 2:
        return mean, math.nan
    return mean, float(array.std(ddof=1) / math.sqrt(n))


def format_mean_se(mean: float, se: float, digits: int = 3) -> str:
    """``"3.310 ± 0.040"``; just the mean when the standard error is NaN (a single seed)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if se is None or math.isnan(se):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {se:.{digits}f}"


def _escape(text: Any) -> str:
    return _html.escape(str(text), quote=True)


def _finite(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)


def _number(value: float) -> str:
    """SVG coordinate text: short but exact enough (0.01 px) for a test to parse back."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def _title_width(title: str) -> int:
    """Width in pixels that a bold 12 px sans-serif title needs (about 7 px a character), so a
    long title widens its chart instead of being cut off at the SVG's edge."""
    return 7 * len(title) + 10


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (1, 2, 5 × 10^k steps)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(0.0 if abs(value) < 1e-12 * step else value)
        value += step
    return ticks


class Report:
    """Accumulates report sections; :meth:`fragment` or :meth:`html` renders them.

    Each experiment's ``report(outcome, rep)`` calls these methods in order. Text is escaped;
    charts are inline SVG so the page is one standalone file.
    """

    def __init__(self) -> None:
        self._body: list[str] = []

    # -- text -------------------------------------------------------------------------------

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading (``<h2>`` by default; the page title is the only ``<h1>``)."""
        if not 1 <= level <= 6:
            raise ValueError(f"heading level must be 1…6, found {level}")
        self._body.append(f"<h{level}>{_escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        """A paragraph of plain text (escaped: no markup)."""
        self._body.append(f"<p>{_escape(text)}</p>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table; every row must have as many cells as the header."""
        for index, row in enumerate(rows):
            if len(row) != len(header):
                raise ValueError(f"table row {index} has {len(row)} cells, the header has {len(header)}")
        html = "<table><tr>" + "".join(f"<th>{_escape(cell)}</th>" for cell in header) + "</tr>"
        for row in rows:
            html += "<tr>" + "".join(f"<td>{_escape(cell)}</td>" for cell in row) + "</tr>"
        self._body.append(html + "</table>")

    def raw(self, html: str) -> None:
        """Pre-rendered HTML (the driver's failure notes and provenance use it); not escaped."""
        self._body.append(html)

    # -- charts -----------------------------------------------------------------------------

    def bars(self, title: str, items: Sequence[tuple[str, float, Optional[float]]], *,
             fmt: str = "{:.3f}", reference: Optional[tuple[str, float]] = None) -> None:
        """Horizontal bars, one per ``(label, mean, se)``, with a ±SE whisker when se is finite.

        The axis spans 0 and every ``mean ± se`` (and the reference), so negative means draw
        leftwards from the zero line. ``reference`` = (label, value) draws a dashed vertical line,
        e.g. the expert's perplexity that the selections should approach. A NaN mean draws no
        bar and reads "n/a". Whiskers are ``<g class="whisker">`` groups whose first line spans
        mean − se … mean + se at the bar's centre (tests parse them).
        """
        g = BAR_GEOMETRY
        width, label_width, value_width = g["width"], g["label_width"], g["value_width"]
        row_height, top = g["row_height"], g["top"]
        extent = [0.0]
        for label, mean, se in items:
            if _finite(mean):
                extent.append(mean)
                if _finite(se):
                    extent += [mean - se, mean + se]
        if reference is not None and _finite(reference[1]):
            extent.append(reference[1])
        low, high = min(extent), max(extent)
        if high == low:
            high = low + 1.0
        plot_width = width - label_width - value_width

        def x_of(value: float) -> float:
            return label_width + plot_width * (value - low) / (high - low)

        zero = x_of(0.0)
        footer = 20 if reference is not None else 4
        height = top + len(items) * row_height + footer
        svg = [f'<svg xmlns="http://www.w3.org/2000/svg" class="bars" width="{max(width, _title_width(title))}" '
               f'height="{height}" '
               f'font-family="sans-serif" font-size="12">',
               f'<text x="0" y="14" font-weight="bold">{_escape(title)}</text>']
        for index, (label, mean, se) in enumerate(items):
            y = top + index * row_height
            centre = y + row_height / 2
            svg.append(f'<text x="0" y="{_number(y + 15)}">{_escape(label)}</text>')
            if not _finite(mean):
                svg.append(f'<text x="{_number(zero + 4)}" y="{_number(y + 15)}">n/a</text>')
                continue
            left, right = sorted((zero, x_of(mean)))
            svg.append(f'<rect class="bar" x="{_number(left)}" y="{_number(y + 3)}" width="{_number(right - left)}" '
                       f'height="{row_height - 6}" fill="{_BAR_COLOUR}"/>')
            text = fmt.format(mean)
            end = right
            if _finite(se):
                x1, x2 = x_of(mean - se), x_of(mean + se)
                cap = 4
                svg.append(
                    f'<g class="whisker" stroke="{_WHISKER_COLOUR}" stroke-width="1.2">'
                    f'<line x1="{_number(x1)}" y1="{_number(centre)}" x2="{_number(x2)}" y2="{_number(centre)}"/>'
                    f'<line x1="{_number(x1)}" y1="{_number(centre - cap)}" x2="{_number(x1)}" y2="{_number(centre + cap)}"/>'
                    f'<line x1="{_number(x2)}" y1="{_number(centre - cap)}" x2="{_number(x2)}" y2="{_number(centre + cap)}"/>'
                    f'</g>')
                text += " ± " + fmt.format(se)
                end = max(end, x2)
            svg.append(f'<text x="{_number(end + 4)}" y="{_number(y + 15)}">{_escape(text)}</text>')
        if low < 0 < high:
            svg.append(f'<line class="zero" x1="{_number(zero)}" y1="{top}" x2="{_number(zero)}" '
                       f'y2="{top + len(items) * row_height}" stroke="#888"/>')
        if reference is not None and _finite(reference[1]):
            x = x_of(reference[1])
            bottom = top + len(items) * row_height
            svg.append(f'<line class="reference" x1="{_number(x)}" y1="{top - 4}" x2="{_number(x)}" y2="{bottom}" '
                       f'stroke="{_REFERENCE_COLOUR}" stroke-dasharray="4 3" stroke-width="1.5"/>')
            svg.append(f'<text x="{_number(min(x, width - 200))}" y="{bottom + 14}" fill="{_REFERENCE_COLOUR}">'
                       f'{_escape(reference[0])}: {_escape(fmt.format(reference[1]))}</text>')
        svg.append("</svg>")
        self._body.append("".join(svg))

    def scatter(self, title: str, points: Sequence[tuple[float, float]], *, xlabel: str, ylabel: str,
                diagonal: bool = True, errors: Optional[Sequence[tuple[float, float]]] = None) -> None:
        """A scatter of (x, y) points, e.g. estimated vs actual loss, with the y = x diagonal.

        ``errors`` gives each point's (x SE, y SE); finite ones draw as error bars (class
        ``xerr`` / ``yerr``). Both axes share one range when the diagonal is drawn, so the
        diagonal is at 45°.
        """
        if errors is not None and len(errors) != len(points):
            raise ValueError(f"scatter: {len(points)} points but {len(errors)} error pairs")
        size, margin, top = 360, 56, 28
        finite = [(x, y) for x, y in points if _finite(x) and _finite(y)]
        xs, ys = [x for x, _ in finite], [y for _, y in finite]
        if errors is not None:
            for (x, y), (ex, ey) in zip(points, errors):
                if _finite(x) and _finite(y):
                    if _finite(ex):
                        xs += [x - ex, x + ex]
                    if _finite(ey):
                        ys += [y - ey, y + ey]
        if not xs:
            xs, ys = [0.0, 1.0], [0.0, 1.0]
        xlow, xhigh, ylow, yhigh = min(xs), max(xs), min(ys), max(ys)
        if diagonal:
            xlow = ylow = min(xlow, ylow)
            xhigh = yhigh = max(xhigh, yhigh)
        pad_x = (xhigh - xlow) * 0.05 or 0.5
        pad_y = (yhigh - ylow) * 0.05 or 0.5
        xlow, xhigh, ylow, yhigh = xlow - pad_x, xhigh + pad_x, ylow - pad_y, yhigh + pad_y

        def px(x: float) -> float:
            return margin + size * (x - xlow) / (xhigh - xlow)

        def py(y: float) -> float:
            return top + size * (1 - (y - ylow) / (yhigh - ylow))

        width, height = max(margin + size + 20, _title_width(title)), top + size + 44
        svg = [f'<svg xmlns="http://www.w3.org/2000/svg" class="scatter" width="{width}" height="{height}" '
               f'font-family="sans-serif" font-size="12">',
               f'<text x="0" y="14" font-weight="bold">{_escape(title)}</text>',
               f'<rect x="{margin}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#888"/>']
        for tick in _nice_ticks(xlow, xhigh):
            svg.append(f'<text x="{_number(px(tick))}" y="{top + size + 16}" text-anchor="middle">{tick:g}</text>')
        for tick in _nice_ticks(ylow, yhigh):
            svg.append(f'<text x="{margin - 4}" y="{_number(py(tick) + 4)}" text-anchor="end">{tick:g}</text>')
        svg.append(f'<text x="{margin + size / 2}" y="{top + size + 36}" text-anchor="middle">{_escape(xlabel)}</text>')
        svg.append(f'<text x="12" y="{top + size / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {top + size / 2})">{_escape(ylabel)}</text>')
        if diagonal:
            svg.append(f'<line class="diagonal" x1="{_number(px(xlow))}" y1="{_number(py(ylow))}" '
                       f'x2="{_number(px(xhigh))}" y2="{_number(py(yhigh))}" stroke="#888" stroke-dasharray="4 3"/>')
        for index, (x, y) in enumerate(points):
            if not (_finite(x) and _finite(y)):
                continue
            if errors is not None:
                ex, ey = errors[index]
                if _finite(ex):
                    svg.append(f'<line class="xerr" x1="{_number(px(x - ex))}" y1="{_number(py(y))}" '
                               f'x2="{_number(px(x + ex))}" y2="{_number(py(y))}" stroke="{_WHISKER_COLOUR}"/>')
                if _finite(ey):
                    svg.append(f'<line class="yerr" x1="{_number(px(x))}" y1="{_number(py(y - ey))}" '
                               f'x2="{_number(px(x))}" y2="{_number(py(y + ey))}" stroke="{_WHISKER_COLOUR}"/>')
            svg.append(f'<circle class="point" cx="{_number(px(x))}" cy="{_number(py(y))}" r="3.5" fill="{_BAR_COLOUR}"/>')
        svg.append("</svg>")
        self._body.append("".join(svg))

    # -- output -----------------------------------------------------------------------------

    def fragment(self) -> str:
        """The sections' HTML without ``<html>``/``<body>``, for embedding in another report."""
        return "\n".join(self._body)

    def html(self, title: str, provenance: Mapping[str, Any]) -> str:
        """A standalone page: title, provenance block (every field of ``provenance``), sections."""
        return (
            '<!doctype html><html><head><meta charset="utf-8">'
            f"<title>{_escape(title)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>{_escape(title)}</h1>\n"
            f"{provenance_html(provenance)}\n"
            f"{self.fragment()}\n"
            "</body></html>\n"
        )


def _provenance_value(value: Any, nested: bool = False) -> str:
    """A provenance value as HTML: a mapping one "key: value" line per item, deeper levels as
    compact JSON (e.g. the size config's model shape)."""
    if isinstance(value, Mapping):
        if nested:
            return _escape(json.dumps(value, separators=(", ", ": ")))
        return "<br>".join(f"{_escape(key)}: {_provenance_value(item, True)}" for key, item in value.items())
    if isinstance(value, float):
        return _escape(f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}")
    if isinstance(value, (list, tuple)):
        return _escape(" ".join(str(item) for item in value))
    return _escape(value if isinstance(value, str) else json.dumps(value))


def provenance_html(provenance: Mapping[str, Any]) -> str:
    """The provenance block: a two-column table of field and value (nested mappings inline)."""
    rows = "".join(f"<tr><th>{_escape(key)}</th><td>{_provenance_value(value)}</td></tr>"
                   for key, value in provenance.items())
    return f'<table class="provenance"><caption>Provenance</caption>{rows}</table>'
