"""Shared test helpers."""

from __future__ import annotations

from ohlcv_cli.core.timeframes import parse_timeframe


def kline_rows(candles) -> list[list]:
    """Stored candles as Binance's 12-field kline arrays, to compare with `SimServer.final_rows`
    field by field (decimal strings exactly; the close time from the candle's timeframe)."""
    return [[c.open_time, c.open, c.high, c.low, c.close, c.volume,
             c.open_time + parse_timeframe(c.timeframe).ms - 1, c.quote_volume, c.trades,
             c.taker_buy_base_volume, c.taker_buy_quote_volume, "0"] for c in candles]
