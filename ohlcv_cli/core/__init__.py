"""Core: the candle model, timeframe arithmetic, settings and errors. Imports nothing of ours."""
