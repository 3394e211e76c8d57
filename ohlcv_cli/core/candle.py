"""The candle: exactly what the exchange sent, as decimal strings, plus where it is from."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import NamedTuple, Sequence

from ohlcv_cli.core.errors import InvalidMessage
from ohlcv_cli.core.markets import PRICES
from ohlcv_cli.core.symbols import CANONICAL_SYMBOL
from ohlcv_cli.core.timeframes import parse_timeframe

DECIMAL_FIELDS = (
    "open", "high", "low", "close", "volume", "quote_volume",
    "taker_buy_base_volume", "taker_buy_quote_volume",
)
SOURCES = ("backfill", "stream", "repair", "archive")

# What the schema can hold (README "The schema"), so that a candle that passes validation is one
# the database accepts: varchar(32)/varchar(40), bigint, timestamptz read back as a Python
# datetime (years 1-9999), and numerics kept far below PostgreSQL's limits while far above any
# exchange's (Binance sends at most 8 decimals and prices and volumes well under 10^20).
MAX_EXCHANGE_LEN = 32
MAX_SYMBOL_LEN = 40
MAX_TRADES = 2**63 - 1
MAX_OPEN_TIME = 253_402_300_800_000 - 1  # the last ms before 10000-01-01T00:00:00Z
MAX_INT_DIGITS = 40
MAX_FRACTION_DIGITS = 30


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
    price: str = "trade"  # the price series: trade, or a contract's mark, index or premium

    def values(self) -> tuple:
        """The exchange's fields, the part compared when deciding whether a row changed."""
        return (
            self.open, self.high, self.low, self.close, self.volume, self.quote_volume,
            self.trades, self.taker_buy_base_volume, self.taker_buy_quote_volume,
        )

    def close_ms(self) -> int:
        """When the candle closed: its open time plus its timeframe (the exchange's closeTime
        + 1 ms)."""
        return self.open_time + parse_timeframe(self.timeframe).ms


def seconds_since_close(candles: Sequence[Candle], now_s: float) -> list[float]:
    """The close → now latency of each candle, in seconds: the one rule behind the stream's and
    the consumer's latency metric and log. Each timeframe name is parsed once per call."""
    lengths: dict[str, int] = {}
    out = []
    for c in candles:
        ms = lengths.get(c.timeframe)
        if ms is None:
            ms = lengths[c.timeframe] = parse_timeframe(c.timeframe).ms
        out.append(now_s - (c.open_time + ms) / 1000)
    return out


def from_kline(
    row: Sequence, *, exchange: str, symbol: str, timeframe: str, source: str,
    price: str = "trade",
) -> Candle:
    """Build a candle from Binance's 12-field kline array, keeping its strings untouched."""
    return Candle(
        exchange, symbol, timeframe, int(row[0]),
        row[1], row[2], row[3], row[4], row[5], row[7], int(row[8]), row[9], row[10],
        source, price,
    )


_PLAIN_DECIMAL = re.compile(r"\d+(?:\.\d+)?")
_BOUNDED = rf"\d{{1,{MAX_INT_DIGITS}}}(?:\.\d{{1,{MAX_FRACTION_DIGITS}}})?"
_BOUNDED_DECIMAL = re.compile(_BOUNDED)
_EIGHT_DECIMALS = re.compile(rf"(?:{_BOUNDED}\x00){{7}}{_BOUNDED}")
# the premium index is a signed ratio (e.g. -0.00012345): its open, high, low and close may be
# negative; its volumes are zeros like every other decimal's form
_SIGNED_DECIMAL = re.compile(rf"-?{_BOUNDED}")
_PREMIUM_DECIMALS = re.compile(rf"(?:-?{_BOUNDED}\x00){{4}}(?:{_BOUNDED}\x00){{3}}{_BOUNDED}")


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
    if _PLAIN_DECIMAL.fullmatch(raw):
        whole, _, fraction = raw.partition(".")
        return (f"{name} has {len(whole)} digits before the point and {len(fraction)} after: "
                f"at most {MAX_INT_DIGITS} and {MAX_FRACTION_DIGITS} are stored")
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
    signed = c.price == "premium"
    try:
        ok = (_PREMIUM_DECIMALS if signed else _EIGHT_DECIMALS).fullmatch(
            "\x00".join(fields)) is not None
    except TypeError:
        ok = False
    if not ok:
        for i, (name, raw) in enumerate(zip(DECIMAL_FIELDS, fields)):
            form = _SIGNED_DECIMAL if signed and i < 4 else _BOUNDED_DECIMAL
            if not (isinstance(raw, str) and form.fullmatch(raw)):
                if signed and i < 4 and isinstance(raw, str) and raw.startswith("-"):
                    raise InvalidMessage(_decimal_problem(name, raw[1:]))
                raise InvalidMessage(_decimal_problem(name, raw))
        raise InvalidMessage("a decimal field holds a NUL character")
    if type(c.trades) is not int or not 0 <= c.trades <= MAX_TRADES:  # bool is not int, on purpose
        raise InvalidMessage(f"trades must be an integer from 0 to 2^63-1, got {c.trades!r}")
    if type(c.open_time) is not int or not 0 <= c.open_time <= MAX_OPEN_TIME:
        raise InvalidMessage(f"open_time must be a time in ms from 1970 to the year 9999, "
                             f"got {c.open_time!r}")
    if len(c.exchange) > MAX_EXCHANGE_LEN or not c.exchange:
        raise InvalidMessage(f"exchange must be 1 to {MAX_EXCHANGE_LEN} characters, got "
                             f"{len(c.exchange)}")
    if len(c.symbol) > MAX_SYMBOL_LEN or CANONICAL_SYMBOL.fullmatch(c.symbol) is None:
        raise InvalidMessage(f"symbol {c.symbol[:60]!r} is not in the ccxt form BASE/QUOTE, "
                             "BASE/QUOTE:SETTLE or BASE/QUOTE:SETTLE-YYMMDD (upper case, at most "
                             f"{MAX_SYMBOL_LEN} characters)")
    fo, fh, fl, fc = float(c.open), float(c.high), float(c.low), float(c.close)
    fv, ft = float(c.volume), float(c.taker_buy_base_volume)
    # one chained comparison settles the common case; a failure or a tie takes the exact path
    if not (fl < fo < fh and fl < fc < fh and ft < fv):
        _check_order_exactly(c, fo, fh, fl, fc, fv, ft)
    if c.source not in SOURCES:
        raise InvalidMessage(f"unknown source {c.source!r}")
    if c.price != "trade":
        if c.price not in PRICES:
            raise InvalidMessage(f"unknown price series {c.price!r}: one of {', '.join(PRICES)}")
        if ":" not in c.symbol:  # BASE/QUOTE: a spot market, whose only candles are trades
            raise InvalidMessage(f"{c.symbol} is a spot market: it has only trade candles, "
                                 f"not {c.price}")
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
