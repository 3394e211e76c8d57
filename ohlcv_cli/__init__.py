"""ohlcv: a complete, exact, gap-free store of Binance OHLCV candles."""

__version__ = "0.1.0"
