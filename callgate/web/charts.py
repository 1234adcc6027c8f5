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


def minute_label(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%H:%M")


def bar_chart(days: Sequence[int], values: Sequence[int] | Sequence[Sequence[int]], *, label: str,
              fmt: Callable[[int], str], chart_id: str, tick: Callable[[int], str] = _day, every: int = 5,
              parts: Sequence[str] = ()) -> Markup:
    """A bar per day (``days``: UTC midnights in epoch ms; or other instants, named by ``tick``)
    with the largest value on the axis and a <title> per bar (its date and value: shown on hover,
    read by screen readers); an x label every ``every`` bars. A stacked bar when each value is a
    tuple: one segment per part (class ``bar part-N``), ``parts`` naming them in the title."""
    stacks = [tuple(v) if isinstance(v, (tuple, list)) else (v,) for v in values]
    n = max(len(stacks), 1)
    top = max(max((sum(v) for v in stacks), default=0), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / n
    bar_w = max(step * 0.75, 1.0)
    out = [f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(label)}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
           f'<title>{escape(label)}</title>',
           f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" class="axis"/>',
           f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" class="tick">{escape(fmt(top))}</text>',
           f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" class="tick">0</text>']
    for i, (day, stack) in enumerate(zip(days, stacks)):
        x = LEFT + i * step + (step - bar_w) / 2
        if len(stack) == 1:
            title = f"{tick(day)}: {fmt(stack[0])}"
        else:
            title = f"{tick(day)}: " + ", ".join(f"{fmt(v)} {name}" for v, name in zip(stack, parts))
        base = TOP + plot_h
        for k, value in enumerate(stack):
            h = plot_h * value / top
            cls = "bar" if len(stack) == 1 else f"bar part-{k}"
            out.append(f'<rect class="{cls}" x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}">'
                       f'<title>{escape(title)}</title></rect>')
            base -= h
        if i % every == 0 or i == len(stacks) - 1:
            out.append(f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="tick">'
                       f'{escape(tick(day))}</text>')
    out.append("</svg>")
    return Markup("".join(out))
