"""Server-side SVG line/bar charts for the dashboard: no JavaScript library, no CDN.

A chart is a few polylines (or bars) over a shared x axis of time buckets, with a light
grid, the y maximum labelled and the first/last time under the axis. Missing values (None)
break a line rather than being drawn as zero, so "no data" never looks like "fast".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 480, 165
PAD_L, PAD_R, PAD_T, PAD_B = 44, 8, 26, 22


@dataclass(frozen=True)
class Line:
    label: str
    values: Sequence[float | None]
    color: str
    bars: bool = False


def _nice_max(value: float) -> float:
    """Round the top of the y axis up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    while power > value:
        power /= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return fmt(value * 1000, "ms") if value < 1 else f"{value:.1f}s"
    if unit == "ms":
        if 0 < value < 10:
            return f"{value:.1f}ms"
        return f"{value:.0f}ms" if value < 1000 else f"{value / 1000:.1f}s"
    if unit == "%":
        return f"{value * 100:.0f}%"
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def chart(
    title: str, lines: Sequence[Line], x_labels: tuple[str, str], unit: str = "", chart_id: str = ""
) -> str:
    """An inline SVG (a string of markup; every text is escaped)."""
    n = max((len(line.values) for line in lines), default=0)
    peak = max((v for line in lines for v in line.values if v is not None), default=0.0)
    top = _nice_max(peak) if unit != "%" else max(_nice_max(peak), 0.05)
    inner_w, inner_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(i: int) -> float:
        return PAD_L + (inner_w * (i + 0.5) / n if n else 0)

    def y(v: float) -> float:
        return PAD_T + inner_h * (1 - min(v / top, 1.0))

    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for frac in (0.0, 0.5, 1.0):
        gy = PAD_T + inner_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{PAD_L - 6}" y="{gy + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(top * frac, unit))}</text>"
        )
    bar_w = max(inner_w / max(n, 1) - 1.5, 1.0)
    bar_lines = [line for line in lines if line.bars]
    for k, line in enumerate(bar_lines):
        w = bar_w / len(bar_lines)
        for i, v in enumerate(line.values):
            if v:
                bx, by = x(i) - bar_w / 2 + k * w, y(v)
                tip = f"{escape(line.label)}: {escape(fmt(v, unit))}"
                parts.append(
                    f'<rect x="{bx:.1f}" y="{by:.1f}" width="{w:.1f}" height="{PAD_T + inner_h - by:.1f}" '
                    f'fill="{line.color}" rx="1"><title>{tip}</title></rect>'
                )
    for line in lines:
        if line.bars:
            continue
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, v in enumerate(line.values):
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
            else:
                segment.append(f"{x(i):.1f},{y(v):.1f}")
        if segment:
            segments.append(segment)
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{line.color}"/>')
            else:
                parts.append(
                    f'<polyline fill="none" stroke="{line.color}" stroke-width="2" '
                    f'stroke-linejoin="round" points="{" ".join(seg)}"/>'
                )
    parts.append(f'<text class="axis" x="{PAD_L}" y="{HEIGHT - 6}">{escape(x_labels[0])}</text>')
    right = escape(x_labels[1])
    parts.append(f'<text class="axis" x="{WIDTH - PAD_R}" y="{HEIGHT - 6}" text-anchor="end">{right}</text>')
    lx = PAD_L + 8
    for line in lines:
        parts.append(f'<rect x="{lx}" y="3" width="9" height="9" rx="2" fill="{line.color}"/>')
        parts.append(f'<text class="legend" x="{lx + 13}" y="11">{escape(line.label)}</text>')
        lx += 22 + 7 * len(line.label)
    parts.append("</svg>")
    return "".join(parts)
