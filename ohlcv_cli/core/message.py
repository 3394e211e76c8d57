"""The Kafka message: one candle as JSON, with a schema version and metadata.

Schema version 2 (what `encode` writes):

    {"schema_version": 2, "type": "candle", "exchange": "binance", "symbol": "BTC/USDT:USDT",
     "market": "usdm", "price": "mark", "timeframe": "1m",
     "open_time": 1700000000000, "close_time": 1700000059999,
     "open": "37000.01000000", "high": "...", "low": "...", "close": "...", "volume": "...",
     "quote_volume": "...", "trades": 1234, "taker_buy_base_volume": "...",
     "taker_buy_quote_volume": "...", "source": "stream", "fetched_at": 1700000061012}

`market` is the symbol's family (spot, usdm, coinm: core.markets) and must agree with the symbol;
`price` is the price series (trade, mark, index, premium), one the market has (spot: trade).
Version 1 (the same fields without type, market and price) is still read: a spot trade candle.

Other message types share the topic (issue 19: "funding"): a v2 message whose type was
registered with `register_type` makes `decode` raise `OtherMessageType` carrying what the type's
parser made of it; the consumer hands those to the store function given for the type. A type
nobody registered is an InvalidMessage.

Key: the symbol (UTF-8), so one symbol's messages stay ordered in one partition.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson

from ohlcv_cli.core.candle import DECIMAL_FIELDS, Candle, validate
from ohlcv_cli.core.errors import BadSymbol, BadTimeframe, InvalidMessage
from ohlcv_cli.core.markets import market_of
from ohlcv_cli.core.timeframes import parse_timeframe

SCHEMA_VERSION = 2
CANDLE = "candle"
_STRINGS = ("exchange", "symbol", "timeframe", "source")  # decimals: validate() checks them
_INTS = ("open_time", "trades")


class OtherMessageType(Exception):
    """A well-formed v2 message of a registered type other than candle (not an error: the
    consumer routes it by `type`). `item` is what the type's parser returned."""

    def __init__(self, type: str, item: Any, doc: dict, fetched_at: int | None) -> None:
        super().__init__(f"a {type} message")
        self.type, self.item, self.doc, self.fetched_at = type, item, doc, fetched_at


# type name -> parser of the decoded JSON object (raises InvalidMessage for a malformed one)
_PARSERS: dict[str, Callable[[dict], Any]] = {}


def register_type(name: str, parse: Callable[[dict], Any]) -> None:
    """Make `name` a known message type on the topic (e.g. "funding"). `parse(doc)` gets the
    JSON object (schema_version 2, its "type" checked) and returns the item to store or raises
    InvalidMessage naming what is wrong."""
    if name == CANDLE:
        raise ValueError("the candle type is built in")
    _PARSERS[name] = parse


def registered_types() -> tuple[str, ...]:
    return (CANDLE, *sorted(_PARSERS))


def encode_other(type: str, fields: dict, fetched_at: int) -> bytes:
    """A v2 message of another type: {"schema_version": 2, "type": type, **fields,
    "fetched_at": ...}. Its key should be its symbol, as for candles."""
    return orjson.dumps({"schema_version": SCHEMA_VERSION, "type": type, **fields,
                         "fetched_at": fetched_at})


# symbol -> its family's name (None: not a symbol of ours); market_of per message is a regex
_MARKETS: dict[str, str | None] = {}


def market_name(symbol: str) -> str | None:
    """The family a symbol names ("spot", "usdm", "coinm"), None when it names none."""
    name = _MARKETS.get(symbol, "")
    if name == "":
        try:
            name = market_of(symbol).family.name
        except BadSymbol:
            name = None
        if len(_MARKETS) > 100_000:
            _MARKETS.clear()
        _MARKETS[symbol] = name
    return name


def encode(c: Candle, fetched_at: int) -> bytes:
    close_time = c.open_time + parse_timeframe(c.timeframe).ms - 1
    market = market_name(c.symbol)
    return (
        f'{{"schema_version":{SCHEMA_VERSION},"type":"candle","exchange":"{c.exchange}",'
        f'"symbol":"{c.symbol}","market":"{market}","price":"{c.price}",'
        f'"timeframe":"{c.timeframe}","open_time":{c.open_time},"close_time":{close_time},'
        f'"open":"{c.open}","high":"{c.high}","low":"{c.low}","close":"{c.close}",'
        f'"volume":"{c.volume}","quote_volume":"{c.quote_volume}","trades":{c.trades},'
        f'"taker_buy_base_volume":"{c.taker_buy_base_volume}",'
        f'"taker_buy_quote_volume":"{c.taker_buy_quote_volume}","source":"{c.source}",'
        f'"fetched_at":{fetched_at}}}'
    ).encode() if market is not None and _plain(c) else json.dumps({
        "schema_version": SCHEMA_VERSION, "type": CANDLE, **c._asdict(), "market": market,
        "close_time": close_time, "fetched_at": fetched_at,
    }).encode()


def _plain(c: Candle) -> bool:
    """True when no string needs JSON escaping (always, for exchange data): the fast path."""
    return not any('"' in v or "\\" in v or not v.isprintable() for v in
                   (c.exchange, c.symbol, c.timeframe, c.source, c.price,
                    *(getattr(c, f) for f in DECIMAL_FIELDS)))


def key(c: Candle) -> bytes:
    return c.symbol.encode()


def decode(value: bytes | None) -> tuple[Candle, int | None]:
    """(candle, fetched_at) from a message value; InvalidMessage names what is wrong.
    A registered other type (e.g. funding) raises OtherMessageType instead."""
    if value is None:
        raise InvalidMessage("empty message (tombstone)")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidMessage("not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidMessage("not a JSON object")
    version = doc.get("schema_version")
    get = doc.get
    if version == SCHEMA_VERSION and type(version) is int:
        kind = get("type")
        if kind != CANDLE:
            parse = _PARSERS.get(kind) if type(kind) is str else None
            if parse is None:
                raise InvalidMessage(f"unknown message type {kind!r}: one of "
                                     f"{', '.join(registered_types())}")
            fetched = get("fetched_at")
            raise OtherMessageType(kind, parse(doc), doc,
                                   fetched if type(fetched) is int else None)
        price = get("price")
        if type(price) is not str:
            raise InvalidMessage("price missing or not a string")
    elif version == 1 and type(version) is int:
        price = "trade"
    else:
        raise InvalidMessage(f"unknown schema_version {version!r}")
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
    symbol = doc["symbol"]
    market = market_name(symbol)
    if version == 1:
        if market != "spot":
            raise InvalidMessage(f"schema_version 1 holds spot candles only, not {symbol[:60]!r}")
    elif get("market") != market:
        if market is None:
            raise InvalidMessage(f"symbol {symbol[:60]!r} names no market (ccxt forms: "
                                 "BASE/QUOTE, BASE/QUOTE:SETTLE, BASE/QUOTE:SETTLE-YYMMDD)")
        raise InvalidMessage(f"market {get('market')!r} does not agree with the symbol "
                             f"{symbol}: a {market} market")
    c = Candle(
        doc["exchange"], symbol, doc["timeframe"], doc["open_time"], get("open"),
        get("high"), get("low"), get("close"), get("volume"), get("quote_volume"), doc["trades"],
        get("taker_buy_base_volume"), get("taker_buy_quote_volume"), doc["source"], price,
    )
    validate(c)  # the price series is one of PRICES, and trade only on spot
    fetched = doc.get("fetched_at")
    return c, fetched if isinstance(fetched, int) else None
