"""Server-rendered SVG bar charts: no JavaScript, no library, styled by console.css classes.

Markup is built from numbers and escaped labels only (`markupsafe.escape`), so a category or
origin name cannot inject markup. Presentation attributes (not `style=`) keep it within the
strict CSP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape

BAR_H = 18
GAP = 6
LABEL_W = 150
WIDTH = 520


def hbar(data: Mapping[str, int], title: str, *, limit: int = 12) -> Markup:
    """A horizontal bar chart of `label -> count`, largest first, at most `limit` bars."""
    items = sorted(data.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    if not items:
        return Markup('<p class="muted">{}: nothing yet.</p>').format(title)
    top = max(n for _, n in items) or 1
    height = len(items) * (BAR_H + GAP) + GAP
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    span = WIDTH - LABEL_W - 60
    for i, (label, n) in enumerate(items):
        y = GAP + i * (BAR_H + GAP)
        w = max(1, round(span * n / top))
        parts.append(
            f'<text class="label" x="{LABEL_W - 6}" y="{y + 13}" text-anchor="end">'
            f"{escape(label[:24])}</text>"
            f'<rect class="bar" x="{LABEL_W}" y="{y}" width="{w}" height="{BAR_H}"/>'
            f'<text class="value" x="{LABEL_W + w + 6}" y="{y + 13}">{n}</text>'
        )
    parts.append("</svg>")
    # Safe: built from integers and escape()d labels only (see the module docstring).
    return Markup("".join(parts))  # noqa: S704


def days(end: date, n: int) -> list[str]:
    return [(end - timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def timeline(
    series: Mapping[str, Mapping[str, int]], day_list: Sequence[str], title: str
) -> Markup:
    """Stacked daily columns: one colour class per series (`s0`, `s1`, ...), with a legend."""
    height, base, left = 160, 130, 36
    col_w = max(4, (WIDTH - left - 10) // max(1, len(day_list)))
    totals = [sum(s.get(d, 0) for s in series.values()) for d in day_list]
    top = max(totals, default=0) or 1
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height + 20}" width="{WIDTH}" '
        f'height="{height + 20}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="value" x="0" y="14">{top}</text>',
        f'<line class="axis" x1="{left}" y1="{base}" x2="{WIDTH}" y2="{base}"/>',
    ]
    for i, d in enumerate(day_list):
        x = left + i * col_w
        y = base
        for k, (_, s) in enumerate(series.items()):
            n = s.get(d, 0)
            if n:
                h = max(1, round((base - 20) * n / top))
                y -= h
                parts.append(
                    f'<rect class="s{k % 6}" x="{x}" y="{y}" width="{col_w - 2}" height="{h}">'
                    f"<title>{escape(d)}: {n}</title></rect>"
                )
    parts.append(f'<text class="label" x="{left}" y="{base + 16}">{escape(day_list[0])}</text>')
    parts.append(
        f'<text class="label" x="{WIDTH}" y="{base + 16}" text-anchor="end">'
        f"{escape(day_list[-1])}</text>"
    )
    lx = left
    for k, name in enumerate(series):
        parts.append(
            f'<rect class="s{k % 6}" x="{lx}" y="{height + 6}" width="10" height="10"/>'
            f'<text class="label" x="{lx + 14}" y="{height + 15}">{escape(name)}</text>'
        )
        lx += 24 + 8 * len(name)
    parts.append("</svg>")
    # Safe: built from integers and escape()d labels only (see the module docstring).
    return Markup("".join(parts))  # noqa: S704
