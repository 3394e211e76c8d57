"""The candle: exactly what the exchange sent, as decimal strings, plus where it is from."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import NamedTuple, Sequence

from ohlcv_cli.core.errors import InvalidMessage

DECIMAL_FIELDS = (
    "open", "high", "low", "close", "volume", "quote_volume",
    "taker_buy_base_volume", "taker_buy_quote_volume",
)
SOURCES = ("backfill", "stream", "repair", "archive")


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


_PLAIN_DECIMAL = re.compile(r"\d+(?:\.\d+)?")
_EIGHT_DECIMALS = re.compile(r"(?:\d+(?:\.\d+)?\x00){7}\d+(?:\.\d+)?")


def _decimal_problem(name: str, raw: object) -> str:
    """Why a value is not a plain non-negative decimal string (the slow path, bad input only)."""
    if raw is None:
        return f"{name} missing"
    if not isinstance(raw, str):
        return f"{name} must be a decimal string, got {type(raw).__name__}"
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return f"{name} is not a decimal: {raw!r}"
    if not value.is_finite():
        return f"{name} is not finite: {raw!r}"
    if value < 0:
        return f"{name} is negative: {raw}"
    return f"{name} is not a plain decimal: {raw!r}"


def _lt(a: str, fa: float, b: str, fb: float) -> bool:
    """a < b for plain decimal strings: floats order them exactly unless they tie; a tie between
    different strings is settled by Decimal."""
    return fa < fb or (fa == fb and a != b and Decimal(a) < Decimal(b))


def validate(c: Candle) -> Candle:
    """Check a candle's invariants; raise InvalidMessage naming the first one broken.

    Hot in the consumer (one call per message), so the common case avoids Decimal: one regex for
    the form of all eight decimals, floats for the order (exact for plain decimals except on ties,
    which fall back to Decimal)."""
    fields = (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.taker_buy_base_volume,
              c.taker_buy_quote_volume)
    try:
        ok = _EIGHT_DECIMALS.fullmatch("\x00".join(fields)) is not None
    except TypeError:
        ok = False
    if not ok:
        for name, raw in zip(DECIMAL_FIELDS, fields):
            if not (isinstance(raw, str) and _PLAIN_DECIMAL.fullmatch(raw)):
                raise InvalidMessage(_decimal_problem(name, raw))
        raise InvalidMessage("a decimal field holds a NUL character")
    if type(c.trades) is not int or c.trades < 0:  # bool is not int here, on purpose
        raise InvalidMessage(f"trades must be a non-negative integer, got {c.trades!r}")
    if type(c.open_time) is not int or c.open_time < 0:
        raise InvalidMessage(f"open_time must be a non-negative integer, got {c.open_time!r}")
    fo, fh, fl, fc = float(c.open), float(c.high), float(c.low), float(c.close)
    fv, ft = float(c.volume), float(c.taker_buy_base_volume)
    # one chained comparison settles the common case; a failure or a tie takes the exact path
    if not (fl < fo < fh and fl < fc < fh and ft < fv):
        _check_order_exactly(c, fo, fh, fl, fc, fv, ft)
    if c.source not in SOURCES:
        raise InvalidMessage(f"unknown source {c.source!r}")
    return c


def _check_order_exactly(c: Candle, fo: float, fh: float, fl: float, fc: float, fv: float,
                         ft: float) -> None:
    if _lt(c.high, fh, c.low, fl):
        raise InvalidMessage(f"high {c.high} < low {c.low}")
    for name, v, fx in (("open", c.open, fo), ("close", c.close, fc)):
        if _lt(v, fx, c.low, fl) or _lt(c.high, fh, v, fx):
            raise InvalidMessage(f"{name} {v} outside low..high")
    if _lt(c.volume, fv, c.taker_buy_base_volume, ft):
        raise InvalidMessage("taker_buy_base_volume exceeds volume")
