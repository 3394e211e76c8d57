"""The candle: exactly what the exchange sent, as decimal strings, plus where it is from."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NamedTuple, Sequence

from ohlcv_cli.core.errors import InvalidMessage

DECIMAL_FIELDS = (
    "open", "high", "low", "close", "volume", "quote_volume",
    "taker_buy_base_volume", "taker_buy_quote_volume",
)
SOURCES = ("backfill", "stream", "repair")


class Candle(NamedTuple):
    """Immutable; a NamedTuple because a backfill builds hundreds of thousands per second."""

    exchange: str
    symbol: str
    timeframe: str
    open_time: int  # ms since the epoch, UTC
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str
    trades: int
    taker_buy_base_volume: str
    taker_buy_quote_volume: str
    source: str = "backfill"

    def values(self) -> tuple:
        """The exchange's fields, the part compared when deciding whether a row changed."""
        return (
            self.open, self.high, self.low, self.close, self.volume, self.quote_volume,
            self.trades, self.taker_buy_base_volume, self.taker_buy_quote_volume,
        )


def from_kline(
    row: Sequence, *, exchange: str, symbol: str, timeframe: str, source: str
) -> Candle:
    """Build a candle from Binance's 12-field kline array, keeping its strings untouched."""
    return Candle(
        exchange, symbol, timeframe, int(row[0]),
        row[1], row[2], row[3], row[4], row[5], row[7], int(row[8]), row[9], row[10],
        source,
    )


def validate(c: Candle) -> Candle:
    """Check a candle's invariants; raise InvalidMessage naming the first one broken."""
    dec = {}
    for name in DECIMAL_FIELDS:
        raw = getattr(c, name)
        if not isinstance(raw, str):
            raise InvalidMessage(f"{name} must be a decimal string, got {type(raw).__name__}")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise InvalidMessage(f"{name} is not a decimal: {raw!r}") from None
        if not value.is_finite():
            raise InvalidMessage(f"{name} is not finite: {raw!r}")
        if value < 0:
            raise InvalidMessage(f"{name} is negative: {raw}")
        dec[name] = value
    if isinstance(c.trades, bool) or not isinstance(c.trades, int) or c.trades < 0:
        raise InvalidMessage(f"trades must be a non-negative integer, got {c.trades!r}")
    if isinstance(c.open_time, bool) or not isinstance(c.open_time, int) or c.open_time < 0:
        raise InvalidMessage(f"open_time must be a non-negative integer, got {c.open_time!r}")
    if dec["high"] < dec["low"]:
        raise InvalidMessage(f"high {c.high} < low {c.low}")
    for name in ("open", "close"):
        if not dec["low"] <= dec[name] <= dec["high"]:
            raise InvalidMessage(f"{name} {getattr(c, name)} outside low..high")
    if dec["taker_buy_base_volume"] > dec["volume"]:
        raise InvalidMessage("taker_buy_base_volume exceeds volume")
    if c.source not in SOURCES:
        raise InvalidMessage(f"unknown source {c.source!r}")
    return c
