"""How we talk to Binance: `rest` (klines, markets and the clock through ccxt: one client per
process), `budget` (the request-weight budget it paces by), `ws` (the kline streams over
websockets), `archive` (data.binance.vision's zip files)."""
