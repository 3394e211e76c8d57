"""The Binance-compatible simulator: a program of its own beside the product (it imports nothing
of `ohlcv_cli`). It serves spot REST (ping, time, exchangeInfo, klines, with Binance's errors,
weight limits and faults), the kline websocket streams and the data.binance.vision archive,
all from one deterministic candle model.

`serve(ServeOptions(...))` runs it as `ohlcv sim` does; `SimServer(SimConfig(...)).start()`
runs it in a thread for tests and benchmarks. It ships in the wheel so that `ohlcv sim`, the
demo and the Compose test work from an installed package.
"""

from ohlcv_sim.engine import SimConfig, SymbolSpec, default_symbols
from ohlcv_sim.serve import ServeOptions, SimStartError, build, serve
from ohlcv_sim.server import SimServer
from ohlcv_sim.ws import WsFaults

__all__ = ["SimConfig", "SimServer", "SymbolSpec", "default_symbols", "WsFaults", "ServeOptions",
           "SimStartError", "build", "serve"]
