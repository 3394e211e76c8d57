"""The time window a backfill, a gap check or a repair covers: [start, end) of open times.

`HistoryWindow` is what the caller asked for, parsed and validated once where it is asked (the
CLI's flags or the API's arguments) and passed down as it is; below the edge only the bounds are
computed from it (`bounds`), never checked again.
"""

from __future__ import annotations

from dataclasses import dataclass

from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.timeframes import DAY_MS, Timeframe
from ohlcv_cli.core.timeutil import iso, to_ms

__all__ = ["DAY_MS", "HistoryWindow", "check_days", "grace_end"]


def check_days(days: float, now_ms: int, name: str = "days") -> None:
    """Days back from now must stay after the epoch (the exchange has nothing older; Binance
    would be sent a negative startTime)."""
    if days <= 0:
        kind = "whole number" if name.startswith("--") else "number"
        raise ConfigError(f"{name} must be a positive {kind}, got {days}")
    if days * DAY_MS >= now_ms:
        raise ConfigError(f"{days} days back from now is before 1970-01-01; "
                          f"at most {now_ms // DAY_MS - 1} days")


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """`days` back from the end, or from `start`; up to `end` (or the newest boundary allowed).
    Neither days nor start: the caller's default days (`or_days`)."""

    days: float | None = None
    start: int | None = None
    end: int | None = None

    @classmethod
    def parse(cls, days=None, start=None, end=None, *, now_ms: int, flags: bool = False
              ) -> "HistoryWindow":
        """The window from what a caller typed: epoch ms, ISO strings or datetimes. `flags`:
        errors name the CLI's flags (--days, --start, --end) instead of the arguments."""
        n_days, n_start, n_end = ("--days", "--start", "--end") if flags else ("days", "start", "end")
        if days is not None and start is not None:
            raise ConfigError("use either --days or --start/--end, not both" if flags else
                              "use either days or a start (and an end), not both")
        if end is not None and start is None:
            raise ConfigError("--end needs --start" if flags else "an end needs a start")
        if days is not None:
            check_days(days, now_ms, n_days)
        start_ms, end_ms = to_ms(start, n_start), to_ms(end, n_end)
        if start_ms is not None and end_ms is not None and start_ms >= end_ms:
            raise ConfigError(f"{n_start} {start} is not before {n_end} {end}")
        return cls(days, start_ms, end_ms)

    def or_days(self, days: float, now_ms: int) -> "HistoryWindow":
        """This window, or `days` back (BACKFILL_DAYS) when it names neither days nor a start."""
        if self.days is not None or self.start is not None:
            return self
        check_days(days, now_ms)
        return HistoryWindow(days, None, self.end)

    def bounds(self, tf: Timeframe, now_ms: int, end_limit: int | None = None
               ) -> tuple[int, int]:
        """[start, end) on the timeframe's grid. The end is the current boundary (or the earlier
        `end_limit`, e.g. a check's grace end) unless an earlier end is given; without a start
        the window reaches `days` back from the current boundary, so that a backfill and a check
        of the same days cover the same candles."""
        current = tf.floor(now_ms)
        limit = current if end_limit is None else min(current, tf.floor(end_limit))
        end = limit if self.end is None else min(tf.ceil(self.end), limit)
        if self.start is not None:
            start = self.start
        elif self.days is not None and self.days > 0:
            start = current - int(self.days * DAY_MS)
        else:
            raise ConfigError("a window needs a start or a positive number of days")
        start = tf.ceil(start)
        if start < 0:
            raise ConfigError(f"the window would start before 1970-01-01 ({(end - start) // DAY_MS}"
                              " days back); the exchange has no candles that old")
        if start >= end:
            raise ConfigError(f"empty window: start {iso(start)} is not before end {iso(end)}")
        return start, end


def grace_end(tf: Timeframe, now_ms: int, delay_ms: int) -> int:
    """Exclusive end of the candles that must be stored by now: the last closed candle is given
    the settle delay plus one timeframe to arrive."""
    return tf.floor(now_ms - delay_ms - tf.ms)
