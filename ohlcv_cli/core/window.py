"""The time window a backfill, a gap check or a repair covers: [start, end) of open times.

Speaks of times only; which flag or setting gave a bound is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass

from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.timeutil import iso

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """What the caller asked for: `days` back from the end, or from `start`; up to `end` (or
    the newest boundary allowed)."""

    days: float | None = None
    start: int | None = None
    end: int | None = None


def check_days(days: float, now_ms: int) -> None:
    """Days back from now must stay after the epoch (the exchange has nothing older; Binance
    would be sent a negative startTime)."""
    if days <= 0:
        raise ConfigError(f"days must be a positive number, got {days}")
    if days * DAY_MS >= now_ms:
        raise ConfigError(f"{days} days back from now is before 1970-01-01; "
                          f"at most {now_ms // DAY_MS - 1} days")


def window(tf: Timeframe, limit_ms: int, spec: WindowSpec) -> tuple[int, int]:
    """[start, end) on the timeframe's grid. The end is the boundary at or before `limit_ms`
    (the current boundary, or a grace end) unless an earlier end is given; without a start the
    window reaches `days` back from its end."""
    current = tf.floor(limit_ms)
    end = current if spec.end is None else min(tf.ceil(spec.end), current)
    if spec.start is not None:
        start = spec.start
    elif spec.days is not None and spec.days > 0:
        start = end - int(spec.days * DAY_MS)
    else:
        raise ConfigError("a window needs a start or a positive number of days")
    start = tf.ceil(start)
    if start < 0:
        raise ConfigError(f"the window would start before 1970-01-01 ({(end - start) // DAY_MS} "
                          "days back); the exchange has no candles that old")
    if start >= end:
        raise ConfigError(f"empty window: start {iso(start)} is not before end {iso(end)}")
    return start, end


def grace_end(tf: Timeframe, now_ms: int, delay_ms: int) -> int:
    """Exclusive end of the candles that must be stored by now: the last closed candle is given
    the settle delay plus one timeframe to arrive."""
    return tf.floor(now_ms - delay_ms - tf.ms)
