"""The time window a backfill, a gap check or a repair covers: [start, end) of open times.

`HistoryWindow` is what the caller asked for, parsed and validated once where it is asked (the
CLI's flags or the API's arguments) and passed down as it is; below the edge only the bounds are
computed from it (`bounds`), never checked again.

A futures contract trades only inside its span: from its listing (onboard date) and, for a
delivery contract, until its delivery. `trading_window` clips a window to that span; the parts cut
off are not the store's to fill (the head before listing is recorded as empty at the exchange, as
for a spot market listed inside the window; nothing at or after delivery is expected at all).
"""

from __future__ import annotations

from dataclasses import dataclass

from datetime import datetime, timezone

from ohlcv_cli.core.errors import BadSymbol, ConfigError
from ohlcv_cli.core.markets import market_of
from ohlcv_cli.core.timeframes import DAY_MS, Timeframe
from ohlcv_cli.core.timeutil import iso, to_ms

__all__ = ["DAY_MS", "HistoryWindow", "Span", "check_days", "delivery_of", "grace_end",
           "symbol_span", "trading_window"]

# (first open time the market can have, end of trading): None where there is no bound
Span = tuple[int | None, int | None]
DELIVERY_HOUR_UTC = 8  # Binance delivers quarterly contracts at 08:00 UTC on the expiry date


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


def delivery_of(symbol: str) -> int | None:
    """The delivery time (ms) a delivery contract's symbol names (BTC/USDT:USDT-250926:
    2025-09-26 08:00 UTC); None for spot, perpetuals and a symbol that is not ours. The
    exchange's own deliveryDate (the fetcher's trading_span) is the authority where it is asked;
    this is what a check that reads only the database knows."""
    try:
        expiry = market_of(symbol).expiry
    except BadSymbol:
        return None
    if expiry is None:
        return None
    try:
        day = datetime.strptime(expiry, "%y%m%d").replace(hour=DELIVERY_HOUR_UTC,
                                                          tzinfo=timezone.utc)
    except ValueError:
        return None
    return int(day.timestamp() * 1000)


def symbol_span(symbol: str) -> Span:
    """The span the symbol itself tells: no listing date, its delivery if it has one."""
    return None, delivery_of(symbol)


def trading_window(tf: Timeframe, start: int, end: int, span: Span) -> tuple[int, int]:
    """[start, end) clipped to the market's trading span on the timeframe's grid: from the bucket
    holding its first open time (a 1d candle of a market listed at 10:30 opens at 00:00) to the
    end of the bucket holding its delivery (no candle opens at or after it). Empty (start ==
    end) when the window lies wholly outside the span."""
    first, last = span
    a = start if first is None else max(start, tf.floor(first))
    b = end if last is None else min(end, tf.ceil(last))
    a = min(a, end)
    return a, max(a, b)
