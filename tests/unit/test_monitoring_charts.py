"""Server-side charts and bucket filling: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aijobs.monitoring.charts import Line, chart, fmt
from aijobs.monitoring.stats import SeriesPoint, fill_buckets


def test_chart_escapes_text_and_breaks_lines_at_missing_values() -> None:
    svg = chart("t<itle", [Line("a<b", [1.0, 2.0, None, 3.0, 4.0], "#000")], ("12:00", "now"), chart_id="c")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "a&lt;b" in svg and "t&lt;itle" in svg and "a<b" not in svg
    assert svg.count("<polyline") == 2  # the None splits the line in two


def test_bars_and_units() -> None:
    svg = chart("x", [Line("done", [0, 5, 12], "#0f0", bars=True)], ("a", "b"))
    assert svg.count("<rect") >= 2 + 1  # two non-zero bars plus the legend swatch
    assert ">20<" in svg  # the axis top is rounded up to a nice number
    assert fmt(0.0004, "s") == "0.4ms" and fmt(0.3, "s") == "300ms" and fmt(0.25, "%") == "25%"


def test_fill_buckets_aligns_like_date_bin_and_fills_gaps() -> None:
    now = datetime(2026, 1, 1, 12, 30, 40, tzinfo=UTC)
    at = datetime(2026, 1, 1, 12, 29, tzinfo=UTC)
    points = fill_buckets({at: SeriesPoint(at=at, completed=7)}, 5, 60, now=now)
    assert len(points) == 5
    assert points[-1].at == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert points[-2].completed == 7 and points[-1].completed == 0
    assert all(b.at - a.at == timedelta(minutes=1) for a, b in zip(points, points[1:], strict=False))
