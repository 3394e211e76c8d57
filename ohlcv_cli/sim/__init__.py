"""A Binance-compatible REST simulator: deterministic candles, Binance's errors, limits and faults."""

from ohlcv_cli.sim.engine import SimConfig, SymbolSpec, default_symbols
from ohlcv_cli.sim.server import SimServer
from ohlcv_cli.sim.ws import WsFaults

__all__ = ["SimConfig", "SimServer", "SymbolSpec", "default_symbols", "WsFaults"]
