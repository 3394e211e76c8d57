"""How we talk to Binance: `rest` (klines, markets and the clock through ccxt, under the weight
budget), `ws` (the kline streams over websockets), `archive` (data.binance.vision's zip files)."""
