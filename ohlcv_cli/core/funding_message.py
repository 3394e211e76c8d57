"""The Kafka message of a funding settlement (issue 19, live): a v2 message of type "funding" on
the candles' topic, keyed by the symbol (so one symbol's candles and settlements stay in order):

    {"schema_version": 2, "type": "funding", "exchange": "binance", "symbol": "BTC/USDT:USDT",
     "market": "usdm", "funding_time": 1700000000011, "rate": "0.00010000",
     "mark_price": "37000.10000000", "source": "stream", "fetched_at": 1700000001012}

`mark_price` is null where Binance gives none (COIN-M). Importing this module registers the type
with core.message, so that `decode` hands such messages to the consumer's funding handler.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ohlcv_cli.core import message
from ohlcv_cli.core.errors import BadSymbol, InvalidMessage
from ohlcv_cli.core.funding import Settlement
from ohlcv_cli.core.markets import market_of

FUNDING = "funding"


def encode(s: Settlement, fetched_at: int) -> bytes:
    return message.encode_other(FUNDING, {
        "exchange": s.exchange, "symbol": s.symbol, "market": market_of(s.symbol).family.name,
        "funding_time": s.funding_time, "rate": s.rate, "mark_price": s.mark_price,
        "source": s.source}, fetched_at)


def key(s: Settlement) -> bytes:
    return s.symbol.encode()


def _decimal(doc: dict, name: str, optional: bool = False) -> str | None:
    v = doc.get(name)
    if v is None and optional:
        return None
    if type(v) is not str:
        raise InvalidMessage(f"funding {name} must be a decimal string")
    try:
        if not Decimal(v).is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise InvalidMessage(f"funding {name} {v[:40]!r} is not a decimal") from None
    return v


def parse(doc: dict) -> Settlement:
    """The Settlement a funding message carries; InvalidMessage names what is wrong."""
    exchange, symbol, t, source = (doc.get(k) for k in ("exchange", "symbol", "funding_time",
                                                        "source"))
    if type(exchange) is not str or not exchange or type(symbol) is not str:
        raise InvalidMessage("funding exchange and symbol must be strings")
    try:
        market = market_of(symbol)
    except BadSymbol:
        raise InvalidMessage(f"funding for {symbol[:40]!r}, not a symbol") from None
    if not market.is_perpetual:
        raise InvalidMessage(f"funding for {symbol}, not a perpetual contract")
    if doc.get("market") != market.family.name:
        raise InvalidMessage(f"funding market {doc.get('market')!r} does not fit {symbol}")
    if type(t) is not int or not 0 <= t < 253_402_300_800_000:
        raise InvalidMessage("funding_time must be an integer of epoch milliseconds")
    if source not in ("stream", "rest", "repair", "archive"):
        raise InvalidMessage(f"funding source {source!r} unknown")
    return Settlement(exchange, symbol, t, _decimal(doc, "rate"),
                      _decimal(doc, "mark_price", optional=True), None, source)


message.register_type(FUNDING, parse)
