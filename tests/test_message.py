"""The Kafka message codec (pure)."""

from __future__ import annotations

import json

import pytest

from ohlcv_cli.core import message
from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.errors import InvalidMessage

C = Candle("binance", "BTC/USDT", "1m", 1_700_000_040_000, "37000.01000000", "37010.00000000",
           "36990.50000000", "37005.00000000", "12.34500000", "456789.12000000", 321,
           "6.00000000", "222000.00000000", "stream")


def test_roundtrip_keeps_every_string_exactly():
    raw = message.encode(C, fetched_at=1_700_000_101_000)
    doc = json.loads(raw)
    assert doc["schema_version"] == 2 and doc["close_time"] == C.open_time + 59_999
    assert (doc["type"], doc["market"], doc["price"]) == ("candle", "spot", "trade")
    assert doc["fetched_at"] == 1_700_000_101_000 and doc["volume"] == "12.34500000"
    assert message.decode(raw) == (C, 1_700_000_101_000)
    assert message.key(C) == b"BTC/USDT"


def _doc(**change):
    doc = json.loads(message.encode(C, 1))
    for k, v in change.items():
        if v is ...:
            doc.pop(k)
        else:
            doc[k] = v
    return json.dumps(doc).encode()


@pytest.mark.parametrize("raw,reason", [
    (b"not json", "not JSON"),
    (b"[1,2]", "not a JSON object"),
    (None, "empty message"),
    (_doc(schema_version=3), "unknown schema_version 3"),
    (_doc(close=...), "close missing"),
    (_doc(close=37005.0), "close must be a decimal string, got float"),
    (_doc(close="3.7e4"), "close is not a plain decimal"),
    (_doc(open_time="1700000040000"), "open_time missing or not an integer"),
    (_doc(open_time=1_700_000_040_001), "not on a 1m boundary"),
    (_doc(high="1.0", low="2.0"), "high 1.0 < low 2.0"),
    (_doc(volume="-1"), "volume is negative"),
    (_doc(timeframe="7m"), "unknown timeframe"),
])
def test_invalid_messages_are_named(raw, reason):
    with pytest.raises(InvalidMessage, match=reason):
        message.decode(raw)
