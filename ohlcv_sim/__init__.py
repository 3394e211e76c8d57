"""The Binance-compatible simulator: a program of its own beside the product (it imports nothing
of `ohlcv_cli`). It serves spot REST (ping, time, exchangeInfo, klines, with Binance's errors,
weight limits and faults), USD-M (`/fapi`) and COIN-M (`/dapi`) futures REST (klines, mark,
index and premium-index klines, funding; sim/fapi.py), the kline, mark-price and price-kline
websocket streams and the data.binance.vision archive (spot and futures), all from one
deterministic candle model (sim/engine.py, markets in sim/futures.py, funding in sim/funding.py).

`serve(ServeOptions(...))` runs it as `ohlcv sim` does; `SimServer(SimConfig(...)).start()`
runs it in a thread for tests and benchmarks. It ships in the wheel so that `ohlcv sim`, the
demo and the Compose test work from an installed package.
"""

from ohlcv_sim.engine import SimConfig, SymbolSpec, default_symbols
from ohlcv_sim.futures import FuturesSpec, default_futures
from ohlcv_sim.serve import ServeOptions, SimStartError, build, serve
from ohlcv_sim.server import SimServer
from ohlcv_sim.ws import WsFaults

__all__ = ["SimConfig", "SimServer", "SymbolSpec", "default_symbols", "FuturesSpec",
           "default_futures", "WsFaults", "ServeOptions", "SimStartError", "build", "serve"]
