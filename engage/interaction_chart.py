"""The small chart of an email's opens and clicks over time (SPEC S34), as plain values.

People's opens and clicks (machine ones are left out, as in every count engage shows) are
counted per hour when they span two days or less, else per day, or per several days so that
the chart keeps at most :data:`MAX_BARS` bars. The web layer draws the bars as inline SVG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

#: The most bars the chart draws.
MAX_BARS = 48


@dataclass(frozen=True, slots=True)
class Bar:
    """Opens and clicks from ``start`` to ``start + width``."""

    start: datetime
    opens: int
    clicks: int


@dataclass(frozen=True, slots=True)
class Chart:
    """The bars, their common width, and the highest count (the chart's scale)."""

    bars: tuple[Bar, ...]
    width: timedelta
    peak: int

    @property
    def opens(self) -> int:
        """Every open counted."""
        return sum(bar.opens for bar in self.bars)

    @property
    def clicks(self) -> int:
        """Every click counted."""
        return sum(bar.clicks for bar in self.bars)

    @property
    def hourly(self) -> bool:
        """Whether a bar is an hour (else one or more days)."""
        return self.width < timedelta(days=1)


def opens_and_clicks(moments: Iterable[tuple[datetime, str]]) -> Chart | None:
    """The chart of ``(when, kind)`` pairs, ``kind`` being ``"open"`` or ``"click"``.

    Other kinds are ignored; ``None`` when there is nothing to draw.
    """
    points = sorted((when, kind) for when, kind in moments if kind in ("open", "click"))
    if not points:
        return None
    first, last = points[0][0], points[-1][0]
    span = last - first
    if span <= timedelta(days=2):
        width = timedelta(hours=1)
        start = first.replace(minute=0, second=0, microsecond=0)
    else:
        days = max(1, math.ceil((span.days + 1) / MAX_BARS))
        width = timedelta(days=days)
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    count = int((last - start) / width) + 1
    opens = [0] * count
    clicks = [0] * count
    for when, kind in points:
        index = int((when - start) / width)
        (opens if kind == "open" else clicks)[index] += 1
    bars = tuple(Bar(start + i * width, opens[i], clicks[i]) for i in range(count))
    return Chart(bars, width, max(max(opens), max(clicks)))
