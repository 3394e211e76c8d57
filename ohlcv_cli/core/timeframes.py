"""Timeframe arithmetic on integer milliseconds since the epoch (UTC)."""

from __future__ import annotations

from dataclasses import dataclass

from ohlcv_cli.core.errors import BadTimeframe

_S = 1000
_M = 60 * _S
_H = 60 * _M
_D = 24 * _H

DAY_MS = _D
PAGE = 1000  # candles per klines request: Binance's largest `limit`, and the REST engine's slice

# Binance spot intervals with a fixed length. "1M" (calendar month) is left out on purpose.
_LENGTHS = {
    "1s": _S, "1m": _M, "3m": 3 * _M, "5m": 5 * _M, "15m": 15 * _M, "30m": 30 * _M,
    "1h": _H, "2h": 2 * _H, "4h": 4 * _H, "6h": 6 * _H, "8h": 8 * _H, "12h": 12 * _H,
    "1d": _D, "3d": 3 * _D, "1w": 7 * _D,
}
# Weeks open on Monday 00:00 UTC; the epoch was a Thursday.
_OFFSETS = {"1w": 4 * _D}

SUPPORTED = tuple(_LENGTHS)


@dataclass(frozen=True, slots=True)
class Timeframe:
    name: str
    ms: int
    offset: int = 0

    def floor(self, t_ms: int) -> int:
        """The open time of the candle that contains t_ms."""
        return (t_ms - self.offset) // self.ms * self.ms + self.offset

    def ceil(self, t_ms: int) -> int:
        f = self.floor(t_ms)
        return f if f == t_ms else f + self.ms

    def is_aligned(self, t_ms: int) -> bool:
        return (t_ms - self.offset) % self.ms == 0

    def count(self, start: int, end: int) -> int:
        """Number of candle open times in [start, end), both aligned."""
        return max(0, (end - start) // self.ms)

    def __str__(self) -> str:
        return self.name


_PARSED: dict[str, Timeframe] = {}


def parse_timeframe(name: str | Timeframe) -> Timeframe:
    """A Timeframe from its Binance name (a Timeframe is returned as it is)."""
    if isinstance(name, Timeframe):
        return name
    tf = _PARSED.get(name)
    if tf is not None:
        return tf
    ms = _LENGTHS.get(name)
    if ms is None:
        raise BadTimeframe(
            f"unsupported timeframe {name!r}; use one of {', '.join(SUPPORTED)}"
        )
    tf = _PARSED[name] = Timeframe(name, ms, _OFFSETS.get(name, 0))
    return tf
