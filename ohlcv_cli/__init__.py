"""ohlcv: a complete, exact, gap-free store of Binance OHLCV candles.

`import ohlcv_cli` is cheap: the API functions (`ohlcv_cli.backfill`, `ohlcv_cli.gaps_check`, ...)
the read API (`ohlcv_cli.open_store`) and `Settings` load their modules on first use.
"""

__version__ = "0.1.0"

_API = ("upgrade", "db_current", "backfill", "gaps_check", "gaps_repair", "status", "stream",
        "consume", "run", "topic_create", "symbols")
_READ = ("open_store", "Store")
__all__ = [*_API, *_READ, "Settings", "load_settings", "OhlcvError"]


def __getattr__(name: str):
    if name in _API:
        from ohlcv_cli import api

        return getattr(api, name)
    if name in _READ:
        from ohlcv_cli.api import read as reader

        return getattr(reader, name)
    if name in ("Settings", "load_settings"):
        from ohlcv_cli.core import settings

        return getattr(settings, name)
    if name == "OhlcvError":
        from ohlcv_cli.core.errors import OhlcvError

        return OhlcvError
    raise AttributeError(f"module 'ohlcv_cli' has no attribute {name!r}")
