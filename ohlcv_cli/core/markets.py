"""Binance's market families and price series, as data (pure: no I/O).

A symbol in ccxt's unified form names its market and so its family:

    BTC/USDT              spot                      id BTCUSDT
    BTC/USDT:USDT         USD-M perpetual           id BTCUSDT
    BTC/USDT:USDT-261225  USD-M delivery            id BTCUSDT_261225
    BTC/USD:BTC           COIN-M perpetual          id BTCUSD_PERP
    BTC/USD:BTC-261225    COIN-M delivery           id BTCUSD_261225

A contract settled in its quote asset is linear (USD-M, `/fapi`); one settled in its base asset is
inverse (COIN-M, `/dapi`). Each family's REST prefix, page size, request window, archive root and
price series are held here once; the adapters read them, nothing else spells them out.

Price series: `trade` (the market's own klines) on every market; on futures also `mark`, `index`
(Binance keys it by pair) and `premium` (the premium index). Each is stored as its own series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ohlcv_cli.core.errors import BadSymbol, ConfigError

PRICES = ("trade", "mark", "index", "premium")
DEFAULT_PRICE = "trade"


class BadPrice(ConfigError):
    """A price series that is not one of PRICES, or that the market does not have."""


@dataclass(frozen=True)
class Family:
    """One of Binance's API families: where its REST and archive live and how to page it."""

    name: str  # "spot" | "usdm" | "coinm"
    title: str  # for messages
    rest_prefix: str  # REST path prefix of its public market endpoints
    max_limit: int  # most rows one klines request may ask for
    page: int  # the limit we send: the most candles per request weight
    max_window_ms: int | None  # most time between startTime and endTime (None: no limit)
    archive_root: str  # under the archive host
    prices: tuple[str, ...]  # the price series its markets have

    def page_for(self, tf_ms: int) -> int:
        """Candles per request for this timeframe: `page`, fewer where the family's window
        (COIN-M: 200 days between startTime and endTime) would not hold them."""
        if self.max_window_ms is None:
            return self.page
        return max(1, min(self.page, self.max_window_ms // tf_ms))


DAY_MS = 86_400_000
SPOT = Family("spot", "spot", "/api/v3", 1000, 1000, None, "data/spot", ("trade",))
# Futures klines weigh by limit: [1,100) 1, [100,500) 2, [500,1000] 5, above 10; 499 rows for a
# weight of 2 is the most candles per weight (README "Futures").
USDM = Family("usdm", "USD-M futures", "/fapi/v1", 1500, 499, None, "data/futures/um", PRICES)
COINM = Family("coinm", "COIN-M futures", "/dapi/v1", 1500, 499, 200 * DAY_MS,
               "data/futures/cm", PRICES)
FAMILIES = {f.name: f for f in (SPOT, USDM, COINM)}

_UNIFIED = re.compile(
    r"^(?P<base>[A-Z0-9]{1,20})/(?P<quote>[A-Z0-9]{1,20})"
    r"(?::(?P<settle>[A-Z0-9]{1,20})(?:-(?P<expiry>[0-9]{6}))?)?$")


@dataclass(frozen=True)
class Market:
    """What a unified symbol says about its market, without asking the exchange."""

    symbol: str
    base: str
    quote: str
    settle: str | None  # None on spot
    expiry: str | None  # YYMMDD of a delivery contract; None on spot and perpetuals
    family: Family

    @property
    def is_spot(self) -> bool:
        return self.family is SPOT

    @property
    def is_perpetual(self) -> bool:
        return not self.is_spot and self.expiry is None

    @property
    def is_delivery(self) -> bool:
        return self.expiry is not None

    @property
    def pair(self) -> str:
        """Binance's pair (BTCUSDT, BTCUSD): what index-price klines are keyed by."""
        return f"{self.base}{self.quote}"

    @property
    def id(self) -> str:
        """Binance's id as its conventions build it (the exchange's markets are the authority
        once loaded; this is what the simulator and the archive paths agree on)."""
        if self.expiry:
            return f"{self.pair}_{self.expiry}"
        if self.family is COINM:
            return f"{self.pair}_PERP"
        return self.pair

    def archive_id(self, price: str) -> str:
        """The id the archive files of this series are filed under (index: the pair)."""
        return self.pair if price == "index" else self.id


def market_of(symbol: str) -> Market:
    """The market a normalized unified symbol names; BadSymbol when it names none of ours."""
    m = _UNIFIED.match(symbol)
    if m is None:
        raise BadSymbol(f"malformed symbol {symbol!r}: use the ccxt form BASE/QUOTE, "
                        "BASE/QUOTE:SETTLE or BASE/QUOTE:SETTLE-YYMMDD")
    base, quote, settle, expiry = m["base"], m["quote"], m["settle"], m["expiry"]
    if settle is None:
        family = SPOT
    elif settle == quote:
        family = USDM
    elif settle == base:
        family = COINM
    else:
        raise BadSymbol(f"unknown symbol {symbol!r}: a Binance contract settles in its quote "
                        f"(USD-M, {base}/{quote}:{quote}) or its base (COIN-M, "
                        f"{base}/{quote}:{base})")
    return Market(symbol, base, quote, settle, expiry, family)


def family_of(symbol: str) -> Family:
    return market_of(symbol).family


def check_price(price: str) -> str:
    """A price series name, lower-cased; BadPrice for anything else."""
    p = (price or "").strip().lower()
    if p not in PRICES:
        raise BadPrice(f"unknown price series {price!r}: use one of {', '.join(PRICES)}")
    return p


def check_market_price(symbols, price: str) -> str:
    """The price series, checked against every symbol's market: spot has only `trade`."""
    p = check_price(price)
    for s in symbols:
        fam = family_of(s)
        if p not in fam.prices:
            raise BadPrice(f"{s} is a {fam.title} market: it has only "
                           f"{', '.join(fam.prices)} candles, not {p}")
    return p
