"""What the exchange lists: the symbols a pattern selects."""

from __future__ import annotations

from ohlcv_cli.api import wiring
from ohlcv_cli.api.wiring import settings_for
from ohlcv_cli.core.errors import BadSymbol
from ohlcv_cli.core.settings import Settings
from ohlcv_cli.core.symbols import is_symbol, parse_symbols, resolve_symbols


def symbols(pattern: str = ".*", settings: Settings | None = None, **overrides) -> list[str]:
    """The exchange's spot symbols (ccxt form, sorted) that `pattern` selects: a comma list of
    regular expressions matched in full and case-insensitively (`'.*/USDT'`), ccxt symbols in
    any case or the exchange's ids (`BTCUSDT`), as SYMBOLS takes them. A pattern selecting
    nothing, or a symbol the exchange does not list, is a BadSymbol."""
    s = settings_for("symbols", settings, **overrides)
    tokens = parse_symbols(pattern)
    markets = wiring.fetcher(s).spot_markets()
    ids = {mid.upper(): sym for sym, mid in markets.items()}
    where = f"{s.exchange} spot"
    for t in tokens:
        if is_symbol(t) and t not in markets:
            raise BadSymbol(f"unknown symbol {t!r}: {where} does not list it")
    return resolve_symbols(tokens, markets, ids, where=where)
