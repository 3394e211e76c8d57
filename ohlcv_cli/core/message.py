"""The Kafka message: one candle as JSON, with a schema version and metadata.

    {"schema_version": 1, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m",
     "open_time": 1700000000000, "close_time": 1700000059999,
     "open": "37000.01000000", "high": "...", "low": "...", "close": "...", "volume": "...",
     "quote_volume": "...", "trades": 1234, "taker_buy_base_volume": "...",
     "taker_buy_quote_volume": "...", "source": "stream", "fetched_at": 1700000061012}

Key: the symbol (UTF-8), so one symbol's candles stay ordered in one partition.
"""

from __future__ import annotations

import json

import orjson

from ohlcv_cli.core.candle import DECIMAL_FIELDS, Candle, validate
from ohlcv_cli.core.errors import BadTimeframe, InvalidMessage
from ohlcv_cli.core.timeframes import parse_timeframe

SCHEMA_VERSION = 1
_STRINGS = ("exchange", "symbol", "timeframe", "source")  # decimals: validate() checks them
_INTS = ("open_time", "trades")


def encode(c: Candle, fetched_at: int) -> bytes:
    close_time = c.open_time + parse_timeframe(c.timeframe).ms - 1
    return (
        f'{{"schema_version":{SCHEMA_VERSION},"exchange":"{c.exchange}","symbol":"{c.symbol}",'
        f'"timeframe":"{c.timeframe}","open_time":{c.open_time},"close_time":{close_time},'
        f'"open":"{c.open}","high":"{c.high}","low":"{c.low}","close":"{c.close}",'
        f'"volume":"{c.volume}","quote_volume":"{c.quote_volume}","trades":{c.trades},'
        f'"taker_buy_base_volume":"{c.taker_buy_base_volume}",'
        f'"taker_buy_quote_volume":"{c.taker_buy_quote_volume}","source":"{c.source}",'
        f'"fetched_at":{fetched_at}}}'
    ).encode() if _plain(c) else json.dumps({
        "schema_version": SCHEMA_VERSION, **c._asdict(), "close_time": close_time,
        "fetched_at": fetched_at,
    }).encode()


def _plain(c: Candle) -> bool:
    """True when no string needs JSON escaping (always, for exchange data): the fast path."""
    return not any('"' in v or "\\" in v or not v.isprintable() for v in
                   (c.exchange, c.symbol, c.timeframe, c.source, *(getattr(c, f) for f in DECIMAL_FIELDS)))


def key(c: Candle) -> bytes:
    return c.symbol.encode()


def decode(value: bytes | None) -> tuple[Candle, int | None]:
    """(candle, fetched_at) from a message value; InvalidMessage names what is wrong."""
    if value is None:
        raise InvalidMessage("empty message (tombstone)")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidMessage("not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidMessage("not a JSON object")
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise InvalidMessage(f"unknown schema_version {version!r}")
    get = doc.get
    if not (type(get("exchange")) is str and type(get("symbol")) is str
            and type(get("timeframe")) is str and type(get("source")) is str):
        name = next(n for n in _STRINGS if not isinstance(get(n), str))
        raise InvalidMessage(f"{name} missing or not a string")
    for name in _INTS:
        if type(get(name)) is not int:  # bool is not int here, on purpose
            raise InvalidMessage(f"{name} missing or not an integer")
    try:
        tf = parse_timeframe(doc["timeframe"])
    except BadTimeframe:
        raise InvalidMessage(f"unknown timeframe {doc['timeframe']!r}") from None
    if not tf.is_aligned(doc["open_time"]):
        raise InvalidMessage(f"open_time {doc['open_time']} is not on a {tf.name} boundary")
    c = Candle(
        doc["exchange"], doc["symbol"], doc["timeframe"], doc["open_time"], get("open"),
        get("high"), get("low"), get("close"), get("volume"), get("quote_volume"), doc["trades"],
        get("taker_buy_base_volume"), get("taker_buy_quote_volume"), doc["source"],
    )
    validate(c)
    fetched = doc.get("fetched_at")
    return c, fetched if isinstance(fetched, int) else None
