"""core.window's trading span: a contract's window clipped to its listing and delivery (pure)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import parse_iso
from ohlcv_cli.core.window import delivery_of, symbol_span, trading_window

M, H = 60_000, 3_600_000
M1, H1, D1 = parse_timeframe("1m"), parse_timeframe("1h"), parse_timeframe("1d")
T0 = parse_iso("2025-09-25")


def test_delivery_from_the_symbol_is_its_date_at_0800_utc():
    assert delivery_of("BTC/USDT:USDT-250926") == parse_iso("2025-09-26T08:00")
    assert delivery_of("BTC/USD:BTC-251226") == parse_iso("2025-12-26T08:00")
    for s in ("BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC", "not a symbol"):
        assert delivery_of(s) is None
    assert symbol_span("BTC/USDT:USDT-250926") == (None, parse_iso("2025-09-26T08:00"))
    assert symbol_span("ETH/USDT") == (None, None)


def test_no_span_leaves_the_window_as_it_is():
    assert trading_window(M1, T0, T0 + 2 * H, (None, None)) == (T0, T0 + 2 * H)


def test_the_window_ends_at_delivery():
    delivery = T0 + 32 * H  # 2025-09-26 08:00
    assert trading_window(M1, T0, T0 + 48 * H, (None, delivery)) == (T0, delivery)
    assert trading_window(H1, T0, T0 + 48 * H, (None, delivery)) == (T0, delivery)
    # a daily candle opened before delivery is the last one: its bucket is kept
    assert trading_window(D1, T0, T0 + 72 * H, (None, delivery)) == (T0, T0 + 48 * H)
    # a window wholly after delivery is empty
    a, b = trading_window(M1, delivery + H, delivery + 2 * H, (None, delivery))
    assert a == b


def test_the_window_starts_at_the_listing_bucket():
    listed = T0 + 10 * H + 30 * M  # 10:30
    assert trading_window(M1, T0, T0 + 24 * H, (listed, None)) == (listed, T0 + 24 * H)
    assert trading_window(H1, T0, T0 + 24 * H, (listed, None)) == (T0 + 10 * H, T0 + 24 * H)
    assert trading_window(D1, T0, T0 + 48 * H, (listed, None)) == (T0, T0 + 48 * H)
    # a window wholly before the listing is empty, at its end
    assert trading_window(M1, T0, T0 + H, (listed, None)) == (T0 + H, T0 + H)


@given(st.integers(0, 10_000), st.integers(1, 10_000), st.integers(0, 20_000),
       st.integers(0, 20_000))
def test_the_clipped_window_lies_inside_the_window_and_on_the_grid(a, n, first, last):
    start, end = T0 + a * M, T0 + (a + n) * M
    span = (T0 + first * M + 17, T0 + last * M + 5)  # off the grid on purpose
    x, y = trading_window(M1, start, end, span)
    assert start <= x <= y <= end
    assert x % M == 0 and y % M == 0
    if x < y:  # every kept open time is in the span's buckets
        assert x >= M1.floor(span[0]) and y <= M1.ceil(span[1])
