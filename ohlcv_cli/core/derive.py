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


def pick_bases(target: Timeframe, stored: Iterable[str]) -> tuple[bool, list[Timeframe]]:
    """(whether the target is stored itself, the stored timeframes it can be derived from,
    finest first). A read takes each bucket from the first of these that has it complete: the
    stored candle, else the finest base (what the exchange aggregates too), else a coarser one;
    so a store of 1m history and a recent stretch of 1s gives every hour."""
    stored = set(stored)
    bases = [tf for tf in derivable_from(target) if tf.name in stored]
    if target.name in stored or bases:
        return target.name in stored, bases
    raise ConfigError(
        f"timeframe {target.name} is neither stored nor derivable from what is stored "
        f"({', '.join(sorted(stored, key=lambda n: parse_timeframe(n).ms)) or 'nothing'}); "
        f"it can be derived from {', '.join(t.name for t in derivable_from(target)) or 'nothing'}"
    )


def choose(offers: Sequence[tuple[str, Iterable[int]]]) -> dict[str, set[int]]:
    """Which source gives which bucket: the first source (in order of preference) that offers a
    bucket gets it."""
    taken: set[int] = set()
    out: dict[str, set[int]] = {}
    for name, opens in offers:
        mine = set(opens) - taken
        out[name] = mine
        taken |= mine
    return out


def settled_before(target: Timeframe, bases: Sequence[Timeframe], now_ms: int,
                   delay_ms: int = 1000) -> int:
    """The open time from which a target bucket is still open (or its last base candle may still
    be on its way): such buckets are not complete yet, and not reported as incomplete either."""
    arrival = max([b.ms for b in bases] or [0]) + delay_ms
    return target.floor(now_ms - arrival)


def bucket_window(target: Timeframe, start: int, end: int) -> tuple[int, int]:
    """The base-candle range [lo, hi) whose buckets open in [start, end)."""
    return target.ceil(start), target.ceil(end)


@dataclass
class Derivation:
    """What a read with derived buckets produced (per source timeframe) and left out."""

    target: str
    produced: dict[str, int] = field(default_factory=dict)  # source timeframe -> buckets
    incomplete: list[int] = field(default_factory=list)  # bucket open times left out

    @property
    def derived_from(self) -> str:
        """The base timeframes the derived buckets came from, finest first ("1m", "1s,1m")."""
        used = [n for n, k in self.produced.items() if k and n != self.target]
        return ",".join(sorted(used, key=lambda n: parse_timeframe(n).ms))

    def merge(self, other: "Derivation") -> None:
        for name, k in other.produced.items():
            self.produced[name] = self.produced.get(name, 0) + k
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
