"""What the exchange lists: the symbols a pattern selects, per market family."""

from __future__ import annotations

from ohlcv_cli.api import wiring
from ohlcv_cli.api.wiring import settings_for
from ohlcv_cli.core.errors import BadSymbol, ConfigError
from ohlcv_cli.core.markets import FAMILIES, market_of
from ohlcv_cli.core.settings import Settings
from ohlcv_cli.core.symbols import is_symbol, parse_symbols

MARKETS = tuple(FAMILIES)  # spot, usdm, coinm


def _family(symbol: str) -> str | None:
    try:
        return market_of(symbol).family.name
    except BadSymbol:  # a market of a kind we do not store (ccxt's options, odd names)
        return None


def check_market(market: str | None) -> list[str] | None:
    """A comma list of market families (spot, usdm, coinm), or None."""
    if market is None:
        return None
    names = [m.strip().lower() for m in market.split(",") if m.strip()]
    bad = [m for m in names if m not in FAMILIES]
    if bad or not names:
        raise ConfigError(f"unknown market {(bad or [market])[0]!r}: use one of "
                          f"{', '.join(MARKETS)} (or a comma list of them)")
    return names


def symbols(pattern: str = ".*", settings: Settings | None = None, *,
            market: str | None = None, **overrides) -> list[str]:
    """The exchange's symbols (ccxt form, sorted) that `pattern` selects: a comma list of
    regular expressions matched in full and case-insensitively (`'.*/USDT'`), ccxt symbols in
    any case or the exchange's ids (`BTCUSDT`), as SYMBOLS takes them. `market`: the families
    to list, `spot`, `usdm` (USD-M futures: BTC/USDT:USDT, BTC/USDT:USDT-261225), `coinm`
    (COIN-M: BTC/USD:BTC) or a comma list; by default those the pattern's symbols name (spot
    for a plain pattern). A pattern selecting nothing, or a symbol the exchange does not list,
    is a BadSymbol."""
    s = settings_for("symbols", settings, **overrides)
    tokens = parse_symbols(pattern)
    families = check_market(market) or sorted(wiring.families_of(tokens))
    listed = wiring.markets_of(wiring.fetcher(s, families=families))
    markets = {sym: mid for sym, mid in listed.items() if _family(sym) in families}
    where = wiring.where_of(s.exchange, families)
    for t in tokens:
        if is_symbol(t) and t not in markets:
            raise BadSymbol(f"unknown symbol {t!r}: {where} does not list it")
    return wiring.resolve_in(tokens, markets, where=where)
