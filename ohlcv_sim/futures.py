"""The simulator's futures markets (USD-M `/fapi`, COIN-M `/dapi`) and their price series, as data.

A `FuturesSpec` is one contract: a perpetual (`delivery` None) or a delivery contract (no candle
opens at or after `delivery`), trading from `onboard`. Each contract has four series from the same
deterministic engine: `trade` (the contract's klines), `mark`, `premium`, and `index`, which Binance
keys by pair (one index series per family and pair, from the earliest onboard of its contracts).

`default_futures(now_ms)` builds the default markets relative to `now` (see /work/sim-api.md):
quarterlies deliver the last Friday of Mar/Jun/Sep/Dec at 08:00 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

PERPETUAL_DELIVERY = 4133404800000  # Binance's deliveryDate of a perpetual
HOUR = 3_600_000
FAMILIES = ("usdm", "coinm")
PRICES = ("trade", "mark", "index", "premium")


@dataclass(frozen=True)
class Series:
    """One price series of a contract (or of a pair, for index) as the engine reads it."""

    key: str  # seed, caches
    market_id: str
    price: int  # typical price in ticks of 0.01 (premium ignores it)
    listed_at: int | None
    delivery: int | None
    kind: str  # mark | index | premium


@dataclass(frozen=True)
class FuturesSpec:
    base: str
    quote: str  # USDT (USD-M) or USD (COIN-M)
    family: str  # usdm | coinm
    price: int  # typical price in ticks of 0.01
    onboard: int  # ms: no candle opens before it
    delivery: int | None = None  # ms: None for a perpetual
    contract_type: str = "PERPETUAL"  # PERPETUAL | CURRENT_QUARTER | NEXT_QUARTER
    contract_size: int = 1  # COIN-M: USD per contract (BTC 100, others 10)

    kind = "trade"

    @property
    def listed_at(self) -> int:
        return self.onboard

    @property
    def pair(self) -> str:
        return f"{self.base}{self.quote}"

    @property
    def settle(self) -> str:
        return self.quote if self.family == "usdm" else self.base

    @property
    def expiry(self) -> str | None:
        """YYMMDD of the delivery date (UTC), None for a perpetual."""
        if self.delivery is None:
            return None
        return datetime.fromtimestamp(self.delivery / 1000, timezone.utc).strftime("%y%m%d")

    @property
    def market_id(self) -> str:
        if self.expiry:
            return f"{self.pair}_{self.expiry}"
        return f"{self.pair}_PERP" if self.family == "coinm" else self.pair

    @property
    def symbol(self) -> str:
        """ccxt's unified symbol: BTC/USDT:USDT, BTC/USDT:USDT-261225, BTC/USD:BTC, ..."""
        s = f"{self.base}/{self.quote}:{self.settle}"
        return f"{s}-{self.expiry}" if self.expiry else s

    @property
    def key(self) -> str:
        return f"{self.family}:{self.market_id}"

    def status(self, now: int) -> str:
        if now < self.onboard:
            return "PENDING_TRADING"
        if self.delivery is not None and now >= self.delivery:
            return "SETTLING"
        return "TRADING"

    def series(self, price: str):
        """The engine's view of one price series of this contract (index: see index_series)."""
        if price == "trade":
            return self
        if price not in ("mark", "premium"):
            raise ValueError(f"series {price!r}: index series are per pair (index_series)")
        return Series(f"{self.key}:{price}", self.market_id, self.price, self.onboard,
                      self.delivery, price)


def index_series(specs: list[FuturesSpec], family: str, pair: str) -> Series | None:
    """The index series of a pair in a family: from the earliest onboard of its contracts."""
    mine = [s for s in specs if s.family == family and s.pair == pair]
    if not mine:
        return None
    return Series(f"{family}:{pair}:index", pair, mine[0].price, min(s.onboard for s in mine),
                  None, "index")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def quarter_delivery(year: int, month: int) -> int:
    """The last Friday of the month at 08:00 UTC, in ms."""
    first_next = datetime(year + (month == 12), month % 12 + 1, 1, 8, tzinfo=timezone.utc)
    d = first_next - timedelta(days=1)
    while d.weekday() != 4:
        d -= timedelta(days=1)
    return _ms(d)


def deliveries_around(now: int) -> tuple[int, int, int]:
    """(the delivery before the previous one, the previous one (<= now), the current one (> now))."""
    dt = datetime.fromtimestamp(now / 1000, timezone.utc)
    found = []
    for year in (dt.year - 1, dt.year, dt.year + 1):
        for month in (3, 6, 9, 12):
            found.append(quarter_delivery(year, month))
    current = next(d for d in found if d > now)
    i = found.index(current)
    return found[i - 2], found[i - 1], current


ONBOARD = {  # Binance's onboardDate of the long-listed perpetuals
    "BTCUSDT": 1569398400000, "ETHUSDT": 1574820000000, "SOLUSDT": 1600070400000,
    "BTCUSD_PERP": 1597042800000, "ETHUSD_PERP": 1597388400000,
}


def default_futures(now_ms: int | None = None, extra: int = 0) -> list[FuturesSpec]:
    """The default futures markets, relative to now (real time when not given); `extra` adds
    USD-M perpetuals SIM000USDT ... (onboard 2020-01-01) for benchmarks."""
    import time

    now = int(time.time() * 1000) if now_ms is None else now_ms
    before, prev, cur = deliveries_around(now)
    wld_onboard = now // HOUR * HOUR - 36 * HOUR
    return [
        FuturesSpec("BTC", "USDT", "usdm", 6_500_000, ONBOARD["BTCUSDT"]),
        FuturesSpec("ETH", "USDT", "usdm", 350_000, ONBOARD["ETHUSDT"]),
        FuturesSpec("SOL", "USDT", "usdm", 15_000, ONBOARD["SOLUSDT"]),
        FuturesSpec("WLD", "USDT", "usdm", 250, wld_onboard),
        FuturesSpec("BTC", "USDT", "usdm", 6_560_000, prev, cur, "CURRENT_QUARTER"),
        FuturesSpec("BTC", "USDT", "usdm", 6_530_000, before, prev, "CURRENT_QUARTER"),
        FuturesSpec("BTC", "USD", "coinm", 6_500_000, ONBOARD["BTCUSD_PERP"], None, "PERPETUAL",
                    100),
        FuturesSpec("ETH", "USD", "coinm", 350_000, ONBOARD["ETHUSD_PERP"], None, "PERPETUAL",
                    10),
        FuturesSpec("BTC", "USD", "coinm", 6_560_000, prev, cur, "CURRENT_QUARTER", 100),
        FuturesSpec("BTC", "USD", "coinm", 6_530_000, before, prev, "CURRENT_QUARTER", 100),
    ] + [FuturesSpec(f"SIM{i:03d}", "USDT", "usdm", 10_000 + 137 * i, 1577836800000)
         for i in range(extra)]


def symbol_info(spec: FuturesSpec, now: int) -> dict:
    """The exchangeInfo entry of a contract, with the fields ccxt's parse_market reads."""
    tick = "0.10" if spec.price >= 100_000 else "0.0010" if spec.price < 1_000 else "0.010"
    info = {
        "symbol": spec.market_id,
        "pair": spec.pair,
        "contractType": spec.contract_type,
        "deliveryDate": spec.delivery if spec.delivery is not None else PERPETUAL_DELIVERY,
        "onboardDate": spec.onboard,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base,
        "quoteAsset": spec.quote,
        "marginAsset": spec.settle,
        "pricePrecision": 2 if spec.price >= 1_000 else 4,
        "quantityPrecision": 3 if spec.family == "usdm" else 0,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "4529764", "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": "0.001" if spec.family == "usdm" else "1",
             "maxQty": "1000" if spec.family == "usdm" else "1000000",
             "stepSize": "0.001" if spec.family == "usdm" else "1"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001" if spec.family == "usdm" else "1",
             "maxQty": "120" if spec.family == "usdm" else "60000",
             "stepSize": "0.001" if spec.family == "usdm" else "1"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }
    if spec.family == "usdm":
        info["status"] = spec.status(now)
        info["settlePlan"] = 0
        info["filters"].append({"filterType": "MIN_NOTIONAL", "notional": "5"})
    else:
        info["contractStatus"] = spec.status(now)
        info["contractSize"] = spec.contract_size
        info["equalQtyPrecision"] = 4
    return info
