"""Charts rendered on the server as inline SVG: no scripts, no CDN, nothing leaves the machine,
and they print and read without JavaScript (the client area's CSP allows no scripts at all)."""
from __future__ import annotations

import datetime as dt
from typing import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 28


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%m-%d")


def bar_chart(days: Sequence[int], values: Sequence[int], *, label: str, fmt: Callable[[int], str],
              chart_id: str) -> Markup:
    """A bar per day (``days``: UTC midnights in epoch ms) with the largest value on the axis and a
    <title> per bar (its date and value: shown on hover, read by screen readers)."""
    n = max(len(values), 1)
    top = max(max(values, default=0), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / n
    bar_w = max(step * 0.75, 1.0)
    parts = [f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(label)}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
             f'<title>{escape(label)}</title>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" class="axis"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" class="tick">{escape(fmt(top))}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" class="tick">0</text>']
    for i, (day, value) in enumerate(zip(days, values)):
        h = plot_h * value / top
        x = LEFT + i * step + (step - bar_w) / 2
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
                     f'<title>{escape(_day(day))}: {escape(fmt(value))}</title></rect>')
        if i % 5 == 0 or i == len(values) - 1:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="tick">'
                         f'{escape(_day(day))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
