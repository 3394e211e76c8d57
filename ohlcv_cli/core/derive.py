"""Derived timeframes: which stored timeframe a coarser one is built from, and which of its buckets
may be produced (pure logic; the aggregation itself runs in the database).

Binance's buckets: every interval up to 3d starts at a multiple of its length since the Unix
epoch; 1w starts on Monday 00:00 UTC (the epoch was a Thursday, hence the 4-day offset in
core/timeframes.py). A bucket of the target timeframe is the aggregate of the base candles whose
open time lies in it: first open, highest high, lowest low, last close, summed volumes and trades.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.timeframes import SUPPORTED, Timeframe, parse_timeframe


def divides(base: Timeframe, target: Timeframe) -> bool:
    """Whether every target bucket is a whole number of base candles, aligned."""
    return (base.ms < target.ms and target.ms % base.ms == 0
            and (target.offset - base.offset) % base.ms == 0)


def derivable_from(target: Timeframe) -> list[Timeframe]:
    """Stored timeframes a target can be built from, finest first."""
    return [parse_timeframe(n) for n in SUPPORTED if divides(parse_timeframe(n), target)]


def pick_source(target: Timeframe, stored: Iterable[str]) -> Timeframe | None:
    """The finest stored timeframe the target can be derived from (None: stored natively or
    not derivable). The finest, because it is what the exchange aggregates too."""
    stored = set(stored)
    if target.name in stored:
        return None
    for tf in derivable_from(target):
        if tf.name in stored:
            return tf
    raise ConfigError(
        f"timeframe {target.name} is neither stored nor derivable from what is stored "
        f"({', '.join(sorted(stored, key=lambda n: parse_timeframe(n).ms)) or 'nothing'}); "
        f"it can be derived from {', '.join(t.name for t in derivable_from(target)) or 'nothing'}"
    )


def bucket_window(target: Timeframe, start: int, end: int) -> tuple[int, int]:
    """The base-candle range [lo, hi) whose buckets open in [start, end)."""
    return target.ceil(start), target.ceil(end)


@dataclass
class Derivation:
    """What a derived read produced and left out."""

    target: str
    source: str
    produced: int = 0
    incomplete: list[int] = field(default_factory=list)  # bucket open times left out

    def merge(self, other: "Derivation") -> None:
        self.produced += other.produced
        self.incomplete.extend(other.incomplete)


def empty_buckets(target: Timeframe, present: Sequence[int], lo: int, hi: int,
                  gaps: Sequence[tuple[int, int]]) -> list[int]:
    """Buckets in [lo, hi) with no base candle stored at all that are not wholly inside known
    exchange gaps: left out, so reported as incomplete like partly stored ones. Only between the
    first and the last bucket that has candles (before a symbol's first candle is not a hole)."""
    if not present:
        return []
    have = set(present)
    out = []
    t = max(lo, present[0])
    last = min(hi - 1, present[-1])
    gi = 0
    while t <= last:
        if t not in have:
            b_end = t + target.ms
            while gi < len(gaps) and gaps[gi][1] <= t:
                gi += 1
            covered = t
            j = gi
            while j < len(gaps) and gaps[j][0] <= covered and covered < b_end:
                covered = max(covered, gaps[j][1])
                j += 1
            if covered < b_end:
                out.append(t)
        t += target.ms
    return out
