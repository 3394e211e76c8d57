"""Arithmetic on [start, end) ranges of open times (ms). Pure."""

from __future__ import annotations

from typing import Iterable

from ohlcv_cli.core.timeframes import Timeframe

Range = tuple[int, int]


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted ranges with overlapping and adjacent ones joined; empty ones dropped."""
    out: list[Range] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(ranges: Iterable[Range], holes: Iterable[Range]) -> list[Range]:
    """The parts of `ranges` outside every hole."""
    holes = merge(holes)
    out: list[Range] = []
    for a, b in merge(ranges):
        for h0, h1 in holes:
            if h1 <= a or h0 >= b:
                continue
            if h0 > a:
                out.append((a, h0))
            a = max(a, h1)
            if a >= b:
                break
        if a < b:
            out.append((a, b))
    return out


def clip(ranges: Iterable[Range], start: int, end: int) -> list[Range]:
    return merge((max(a, start), min(b, end)) for a, b in ranges)


def uncovered(tf: Timeframe, start: int, end: int, open_times: Iterable[int]) -> list[Range]:
    """The ranges of [start, end) where no open time of the (ascending) list falls."""
    out: list[Range] = []
    t = start
    for ot in open_times:
        if ot > t:
            out.append((t, ot))
        t = max(t, ot + tf.ms)
    if t < end:
        out.append((t, end))
    return out




def count(tf: Timeframe, ranges: Iterable[Range]) -> int:
    return sum(tf.count(a, b) for a, b in ranges)
