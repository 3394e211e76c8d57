"""The fetcher: Binance's raw klines through ccxt's implicit API.

ccxt still does market lookup, its own request throttling and error mapping; this module adds what
ccxt leaves out: Retry-After on 429/418, backoff on network faults and 5xx, a request-weight budget
shared by all threads (read from X-MBX-USED-WEIGHT-*), and the exchange's clock deciding which
candles are final.
"""

from __future__ import annotations

import copy
import logging
import random
import re
import threading
import time
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

import ccxt

from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.markets import FAMILIES, SPOT, Family, check_market_price, market_of
from ohlcv_cli.core.errors import (
    BadSymbol, ConfigError, ExchangeRejected, ExchangeUnavailable, RateLimited,
)
from ohlcv_cli.adapters.binance.budget import WeightBudget
from ohlcv_cli.core.outage import OutageLog
from ohlcv_cli.core.timeframes import DAY_MS, PAGE, Timeframe

log = logging.getLogger(__name__)

KLINES_WEIGHT = 2  # spot klines, whatever the limit
# futures klines and price klines weigh by limit (README "Futures"): up to 99 rows 1, up to 499
# 2, up to 1000 5, above 10
_FUTURES_WEIGHTS = ((99, 1), (499, 2), (1000, 5))
TIME_WEIGHT = 1
EXCHANGE_INFO_WEIGHT = 20
_WEIGHT_HEADER = re.compile(r"^x-mbx-used-weight-(\d+)([smhd])$", re.I)
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
_INTERVAL_MS = {"SECOND": 1000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": DAY_MS}
MAX_BACKOFF_S = 10.0
LISTING_FRESH_S = 60.0  # the markets loaded at start answer "which symbols are listed" this long
_UNSET = object()
PERPETUAL_DELIVERY_MS = 4133404800000  # Binance's deliveryDate of a perpetual (2100-12-25)
# ccxt's fetchMarkets type, implicit-API key and method prefix of each family
_CCXT = {"spot": ("spot", "public", "public_get_"),
         "usdm": ("linear", "fapiPublic", "fapipublic_get_"),
         "coinm": ("inverse", "dapiPublic", "dapipublic_get_")}
# the endpoint of each price series on the futures families
_PRICE_ENDPOINT = {"trade": "klines", "mark": "markpriceklines", "index": "indexpriceklines",
                   "premium": "premiumindexklines"}


def futures_weight(limit: int) -> int:
    """The request weight of a futures klines call asking for `limit` rows."""
    for top, weight in _FUTURES_WEIGHTS:
        if limit <= top:
            return weight
    return 10


def _family_of_market(market: dict) -> str:
    return "spot" if market.get("spot") else "usdm" if market.get("linear") else "coinm"


class _BadAnswer(Exception):
    """A 200 answer that is not what the endpoint returns (an HTML page from a proxy or CDN, a
    truncated body, JSON of another shape): a transient fault, retried like a 5xx."""


def _klines_rows(rows):
    """The answer of /klines if it has the documented shape, else _BadAnswer."""
    if type(rows) is not list:
        raise _BadAnswer(f"klines answer is not a JSON array: {str(rows)[:80]!r}")
    for row in rows:
        if not (type(row) is list and len(row) >= 11 and type(row[0]) is int
                and type(row[8]) is int and type(row[1]) is str and type(row[2]) is str
                and type(row[3]) is str and type(row[4]) is str and type(row[5]) is str
                and type(row[7]) is str and type(row[9]) is str and type(row[10]) is str):
            raise _BadAnswer(f"klines answer holds a malformed row: {str(row)[:80]!r}")
    return rows


def _load_markets(ex) -> dict:
    """ccxt's load_markets, with an unusable exchangeInfo answer (which makes ccxt's parsing
    trip over a string or a missing key) counted as a transient fault."""
    try:
        return ex.load_markets(reload=True)
    except ccxt.BaseError:
        raise
    except (TypeError, KeyError, AttributeError, IndexError, ValueError) as exc:
        raise _BadAnswer(f"exchangeInfo answer could not be read: {type(exc).__name__}") from exc


def _server_time(answer) -> int:
    if not (isinstance(answer, dict) and isinstance(answer.get("serverTime"), int)):
        raise _BadAnswer(f"time answer is not {{\"serverTime\": ms}}: {str(answer)[:80]!r}")
    return answer["serverTime"]


def _rebase(url: str, base: str) -> str:
    b = urlsplit(base)
    u = urlsplit(url)
    return urlunsplit((b.scheme, b.netloc, u.path, u.query, u.fragment))


def _rebase_all(urls, base: str):
    if isinstance(urls, dict):
        return {k: _rebase_all(v, base) for k, v in urls.items()}
    if isinstance(urls, str) and urls.startswith("http"):
        return _rebase(urls, base)
    return urls


class _Shared:
    """What every view of one client shares: one markets load, one clock offset, one weight
    budget, one lock, the thread-local ccxt instances and the request counts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.markets: dict | None = None
        self.currencies = None
        self.loaded_at = float("-inf")  # monotonic time of the markets load
        self.offset_ms = 0
        self.budgets: dict[str, WeightBudget] = {}  # one per API family: separate limits
        self.families: list[str] = []  # the families whose markets are loaded
        self.generation = 0  # bumped when a family's markets are added
        self.stats = {"requests": 0, "retries": 0, "rate_limited": 0}


class CcxtFetcher:
    """Thread-safe: each thread gets its own ccxt instance; markets and the budget are shared.

    One client per process: `with_retry` gives a view with its own outage policy (the stream
    rides out outages, a backfill gives up) over the same markets load and weight budget."""

    def __init__(
        self,
        exchange_id: str = "binance",
        *,
        exchange_url: str | None = None,
        api_key: str | None = None,
        secret: str | None = None,
        settle_ms: int = 1000,
        timeout_ms: int = 10_000,
        max_retries: int = 5,
        retry_s: float | None = 300.0,
        weight_limit: int | None = None,
        max_rate_limit_wait_s: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        families: Iterable[str] | None = None,
    ) -> None:
        if exchange_id != "binance":
            raise ConfigError(f"unsupported exchange {exchange_id!r}: only binance is supported")
        self.exchange_id = exchange_id
        self._url = exchange_url
        self._key, self._secret = api_key, secret
        self.settle_ms = settle_ms
        self._timeout = timeout_ms
        self._max_retries = max_retries  # at the first contact only: a wrong URL fails fast
        self._retry_s = retry_s  # afterwards, an outage is ridden out this long (None: for ever)
        self._outage = OutageLog(log, f"{exchange_id} at {exchange_url or 'the default endpoint'}")
        self._weight_override = weight_limit
        self._max_rl_wait = max_rate_limit_wait_s
        self._sleep = sleep
        wanted = sorted(set(families or ("spot",)))
        unknown = [f for f in wanted if f not in FAMILIES]
        if unknown:
            raise ConfigError(f"unknown market family {unknown[0]!r}: use spot, usdm or coinm")
        self._wanted = wanted
        self._shared = _Shared()
        self._local = self._shared.local
        self._lock = self._shared.lock
        self.stats = self._shared.stats

    def with_retry(self, retry_s: float | None) -> "CcxtFetcher":
        """This client with another outage policy: ride out an outage for `retry_s` seconds
        (None: for ever). Markets, clock, weight budget and counts stay shared."""
        view = copy.copy(self)
        view._retry_s = retry_s
        return view

    @property
    def budget(self) -> WeightBudget | None:
        """The first loaded family's weight budget (spot's when spot is loaded)."""
        b = self._shared.budgets
        return b.get("spot") or next(iter(b.values()), None)

    def budget_of(self, family: str) -> WeightBudget | None:
        """The weight budget of one API family (spot, usdm, coinm): each has its own limit."""
        return self._shared.budgets.get(family)

    @property
    def _markets(self) -> dict | None:
        return self._shared.markets

    # --- ccxt instances -----------------------------------------------------------------------
    def _new_exchange(self, families: Iterable[str] = ("spot",)) -> ccxt.Exchange:
        config = {
            "enableRateLimit": True,
            "timeout": self._timeout,
            "options": {
                "fetchMarkets": {"types": [_CCXT[f][0] for f in families]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
        if self._key and self._secret:
            config["apiKey"], config["secret"] = self._key, self._secret
        ex = ccxt.binance(config)
        if self._url:
            ex.urls["api"] = _rebase_all(ex.urls["api"], self._url)
        return ex

    def _ex(self) -> ccxt.Exchange:
        ex = getattr(self._local, "ex", None)
        if ex is None:
            self.load()
            ex = self._new_exchange()
            ex.set_markets(self._markets, self._shared.currencies)
            self._local.ex, self._local.generation = ex, self._shared.generation
        elif getattr(self._local, "generation", 0) != self._shared.generation:
            ex.set_markets(self._markets, self._shared.currencies)  # a family loaded since
            self._local.generation = self._shared.generation
        return ex

    def now_ms(self) -> int:
        """The exchange's clock, estimated from ours and the measured offset."""
        return int(time.time() * 1000) + self._shared.offset_ms

    def load(self, families: Iterable[str] | None = None) -> None:
        """Load the markets of the families in use (one exchangeInfo each: spot at /api/v3,
        USD-M at /fapi/v1, COIN-M at /dapi/v1), each family's own weight budget from its
        exchangeInfo, and the exchange's clock offset (once; a family asked for later is loaded
        when first needed)."""
        with self._lock:
            todo = [f for f in (families or self._wanted) if f not in self._shared.families]
            if self._markets is not None and not todo:
                return
            if self._markets is None:
                todo = sorted(set(todo) | set(self._wanted))
            markets = dict(self._markets or {})
            ex = None
            for fam in todo:
                ex = self._new_exchange([fam])
                ex.enableLastJsonResponse = True
                self._call(lambda: _load_markets(ex), ex, weight=0, first_contact=True)
                info = ex.last_json_response if isinstance(ex.last_json_response, dict) else {}
                ex.enableLastJsonResponse = False
                self._shared.budgets[fam] = self._budget_from(info)
                markets.update(ex.markets)
                if self._shared.currencies is None:
                    self._shared.currencies = ex.currencies
            if not self._shared.families:
                self._sync_clock(ex, "spot" if "spot" in todo else todo[0])
            shared = self._shared
            shared.families = sorted(set(shared.families) | set(todo))
            shared.markets = markets
            shared.generation += 1
            shared.loaded_at = time.monotonic()
            ex = self._new_exchange()
            ex.set_markets(markets, shared.currencies)
            self._local.ex, self._local.generation = ex, shared.generation

    def _budget_from(self, info: dict) -> WeightBudget:
        limit, window = 6000, 60_000
        for rl in info.get("rateLimits", []) if isinstance(info, dict) else []:
            if isinstance(rl, dict) and rl.get("rateLimitType") == "REQUEST_WEIGHT":
                limit = int(rl["limit"])
                window = _INTERVAL_MS.get(rl.get("interval"), 60_000) * int(rl.get("intervalNum", 1))
                break
        if self._weight_override:
            limit = self._weight_override
        return WeightBudget(limit, window, self.now_ms, self._sleep)

    def _sync_clock(self, ex: ccxt.Exchange, family: str) -> None:
        before = time.time() * 1000
        get_time = getattr(ex, _CCXT[family][2] + "time")
        server = self._call(lambda: _server_time(get_time()), ex, weight=TIME_WEIGHT,
                            first_contact=True, family=family)
        after = time.time() * 1000
        self._shared.offset_ms = int(server - (before + after) / 2)

    # --- requests -----------------------------------------------------------------------------
    def _call(self, fn: Callable, ex: ccxt.Exchange, weight: int, *, first_contact: bool = False,
              retry_s=_UNSET, family: str = "spot"):
        """One request with the retry policy: rate-limit answers wait as Retry-After asks; a
        transient fault (timeout, refused, 5xx, an unusable 200) is retried with capped
        exponential backoff and jitter for `retry_s` seconds (EXCHANGE_RETRY_SECONDS; None: for
        ever), or, at the first contact, `max_retries` times. Any other ccxt error is final."""
        retry = _Retry(self._retry_s if retry_s is _UNSET else retry_s, first_contact,
                       self._max_retries)
        budget = self._shared.budgets.get(family)
        while True:
            if weight and budget is not None:
                budget.acquire(weight)
            self.stats["requests"] += 1
            sent, sent_ms = time.monotonic(), self.now_ms()
            try:
                result = fn()
            except _RATE_LIMITED as exc:  # 429, 418, -1003: before NetworkError, their base
                self._observe(ex, sent_ms, budget)
                self._wait_rate_limit(ex, retry, exc)
            except _TRANSIENT as exc:
                self._wait_fault(retry, exc)
            except ccxt.BaseError as exc:
                raise _final_error(self.exchange_id, exc) from exc
            else:
                self._observe(ex, sent_ms, budget)
                self._outage.ok(sent)
                return result

    def _wait_rate_limit(self, ex: ccxt.Exchange, retry: "_Retry", exc: Exception) -> None:
        self.stats["rate_limited"] += 1
        wait = self._retry_after(ex, default=1.0 + retry.attempt)
        retry.rl_waited += wait
        if retry.rl_waited > self._max_rl_wait:
            raise RateLimited(f"{self.exchange_id} kept refusing requests for rate limits "
                              f"({retry.rl_waited:.0f}s waited)") from exc
        log.warning("%s rate limit answer; waiting %.1fs as Retry-After asks",
                    self.exchange_id, wait)
        self._sleep(wait)

    def _wait_fault(self, retry: "_Retry", exc: Exception) -> None:
        elapsed = retry.failed(time.monotonic())
        what = f"unusable answer ({exc})" if isinstance(exc, _BadAnswer) else type(exc).__name__
        if retry.exhausted(elapsed):
            raise ExchangeUnavailable(f"{self.exchange_id} unreachable at {self._where()}: "
                                      f"{what} {retry.tried(elapsed)}") from exc
        self.stats["retries"] += 1
        self._outage.failed(what, retry.plan())
        self._sleep(retry.backoff(elapsed))

    def _where(self) -> str:
        return self._url or "the default endpoint"

    def _observe(self, ex: ccxt.Exchange, sent_ms: int, budget: WeightBudget | None) -> None:
        """The answer's X-MBX-USED-WEIGHT header into the budget of the family it came from."""
        headers = ex.last_response_headers or {}
        if budget is None:
            return
        for name, value in headers.items():
            if _WEIGHT_HEADER.match(name):
                try:
                    budget.observe(int(value), sent_ms, self.now_ms())
                except ValueError:
                    pass
                return

    @staticmethod
    def _retry_after(ex: ccxt.Exchange, default: float) -> float:
        headers = ex.last_response_headers or {}
        value = headers.get("Retry-After") if hasattr(headers, "get") else None
        try:
            return max(0.0, float(value)) if value is not None else default
        except ValueError:
            return default

    # --- any endpoint ---------------------------------------------------------------------------
    def request(self, family: str, path: str, params: dict, *, weight: int,
                budget: WeightBudget | None = None):
        """One public GET of an endpoint of a family (`path` in full, e.g. /fapi/v1/fundingRate)
        with the retry policy of every call; the JSON answer (ccxt's `request` takes the API
        key in a list). `weight` is charged to `budget`
        (an endpoint's own limit, such as fundingRate's 500 per 5 minutes) if given, else to the
        family's weight budget."""
        fam = FAMILIES.get(family)
        if fam is None or not path.startswith(fam.rest_prefix + "/"):
            raise ConfigError(f"{path} is not an endpoint of the {family} family")
        self.load([family])
        ex = self._ex()
        rel, api = path[len(fam.rest_prefix) + 1:], _CCXT[family][1]
        if budget is not None:
            budget.acquire(weight)
        return self._call(lambda: ex.request(rel, [api], "GET", dict(params)), ex,
                          weight=0 if budget is not None else weight, family=family)

    # --- the Fetcher interface ----------------------------------------------------------------
    def _market(self, symbol: str) -> tuple[dict, Family]:
        """The loaded market of a symbol and its family (its family's markets loaded first);
        BadSymbol naming the family when the exchange does not list it there."""
        fam = market_of(symbol).family
        self.load([fam.name])
        market = self._markets.get(symbol)
        if market is None or _family_of_market(market) != fam.name:
            raise BadSymbol(f"unknown symbol {symbol!r}: {self.exchange_id} {fam.title} does not "
                            "list it")
        return market, fam

    def check_symbols(self, symbols: Iterable[str]) -> None:
        for s in symbols:
            self._market(s)

    def markets(self) -> dict[str, str]:
        """Every symbol of the loaded families, each with its market id (BTC/USDT:USDT ->
        BTCUSDT, BTC/USD:BTC -> BTCUSD_PERP)."""
        self.load()
        return {sym: m["id"] for sym, m in self._markets.items()}

    def market_id(self, symbol: str) -> str:
        return self._market(symbol)[0]["id"]

    def trading_span(self, symbol: str) -> tuple[int | None, int | None]:
        """(first open time, end of trading) of a market, from its exchangeInfo entry: a futures
        contract's onboardDate floored to the minute, and a delivery contract's deliveryDate
        (no candle opens at or after it); None where the exchange sets no bound (spot, and a
        perpetual's end)."""
        market, fam = self._market(symbol)
        if fam is SPOT:
            return None, None
        info = market.get("info") or {}
        onboard, delivery = _ms_or_none(info.get("onboardDate")), _ms_or_none(info.get("deliveryDate"))
        first = onboard - onboard % 60_000 if onboard is not None else None
        if delivery is not None and delivery >= PERPETUAL_DELIVERY_MS:
            delivery = None
        return first, delivery

    def closed_end(self, tf: Timeframe) -> int:
        """The newest boundary whose candle is final by the exchange's clock."""
        self.load()
        return tf.floor(self.now_ms() - self.settle_ms)

    def fetch_range(
        self, symbol: str, tf: Timeframe, start: int, end: int, source: str = "backfill",
        price: str = "trade",
    ) -> Iterator[list[Candle]]:
        """Pages of final candles of one price series with open time in [start, end), oldest
        first: spot from /api/v3/klines, futures from their family's klines or price-klines
        endpoint (index by pair), `Family.page_for` rows a request with an endTime that keeps
        each window within that many candles (COIN-M answers the newest rows of a wider
        window), and nothing at or after a delivery."""
        market, fam = self._market(symbol)
        check_market_price([symbol], price)
        ex = self._ex()
        if fam is not SPOT:  # nothing before the listing, nothing opening at or after delivery
            onboard, delivery = self.trading_span(symbol)
            if onboard is not None:
                start = max(start, tf.floor(onboard))
            if delivery is not None:
                end = min(end, tf.floor(delivery) if tf.is_aligned(delivery) else tf.floor(delivery) + tf.ms)
        # The newest candle closes at `end`; wait for it to settle rather than store a moving one.
        wait_ms = end + self.settle_ms - self.now_ms()
        if 0 < wait_ms <= tf.ms + self.settle_ms:
            self._sleep(wait_ms / 1000)
        end = min(end, self.closed_end(tf))
        get, base, limit, weight = self._endpoint(market, fam, price, tf)
        t = start
        while t < end:
            params = {**base, "interval": tf.name, "startTime": t,
                      "endTime": (min(end, t + limit * tf.ms) if fam is not SPOT else end) - 1,
                      "limit": limit}
            rows = self._call(lambda: _klines_rows(get(params)), ex, weight=weight,
                              family=fam.name)
            final_before = self.now_ms() - self.settle_ms
            page: list[Candle] = []
            ex_id, tf_name, tf_ms = self.exchange_id, tf.name, tf.ms
            for row in rows:
                ot = row[0]
                if ot < t or ot >= end:
                    continue
                if ot + tf_ms > final_before:  # defensive: never keep a candle still moving
                    log.warning("%s %s %d not final yet; left for the next run", symbol, tf, ot)
                    end = ot
                    break
                # the kline's own strings, untouched (inlined from_kline: this loop is hot)
                page.append(Candle(ex_id, symbol, tf_name, ot, row[1], row[2], row[3], row[4],
                                   row[5], row[7], row[8], row[9], row[10], source, price))
            if page:
                yield page
                t = page[-1].open_time + tf.ms
            elif fam is not SPOT and params["endTime"] + 1 < end:
                # a futures window is bounded: an empty one says nothing of the next one
                t = params["endTime"] + 1
            else:
                # nothing from t on: the range really ends here (after a short page, this is
                # the follow-up request that confirms it)
                return
            # A page shorter than the limit does not prove that the data ends there: a proxy or
            # the exchange may cut a page short. The loop goes on from its last candle; only an
            # empty answer (or reaching `end`) stops it, so no exchange gap is ever inferred
            # from a short page alone.

    def _endpoint(self, market: dict, fam: Family, price: str, tf: Timeframe):
        """(ccxt implicit method, fixed params, limit, weight) of a series' klines."""
        if fam is SPOT:
            return self._ex().public_get_klines, {"symbol": market["id"]}, PAGE, KLINES_WEIGHT
        limit = fam.page_for(tf.ms)
        method = getattr(self._ex(), _CCXT[fam.name][2] + _PRICE_ENDPOINT[price])
        info = market.get("info") or {}
        base = ({"pair": info.get("pair") or market_of(market["symbol"]).pair} if price == "index"
                else {"symbol": market["id"]})
        return method, base, limit, futures_weight(limit)

    # --- what the consumer and the stream ask about symbols -----------------------------------
    def listed_symbols(self, fresh_s: float = LISTING_FRESH_S) -> set[str]:
        """Every symbol of the loaded families the exchange lists now (halted ones included):
        the markets this process loaded if they are under `fresh_s` old, else a fresh
        exchangeInfo per family; one attempt, so that a caller who can go on without it is
        never held up."""
        shared = self._shared
        if shared.markets is not None and time.monotonic() - shared.loaded_at < fresh_s:
            return set(shared.markets)
        out: set[str] = set()
        for fam in shared.families or self._wanted:
            ex = self._new_exchange([fam])
            out |= set(self._call(lambda: _load_markets(ex), ex, weight=0, retry_s=0,
                                  family=fam))
        return out

    def is_trading(self, symbol: str) -> bool | None:
        """Whether the exchange trades the symbol now (exchangeInfo status TRADING); False when
        it is halted, delivered or no longer listed, None when the exchange cannot say. One
        attempt."""
        try:
            market, fam = self._market(symbol)
        except BadSymbol:
            return False
        mid = market["id"]
        ex = self._ex()
        try:
            if fam is SPOT:
                info = self._call(lambda: ex.public_get_exchangeinfo({"symbol": mid}), ex,
                                  weight=EXCHANGE_INFO_WEIGHT, retry_s=0)
            else:  # the futures exchangeInfo takes no symbol: the whole list, weight 1
                info = self._call(getattr(ex, _CCXT[fam.name][2] + "exchangeinfo"), ex,
                                  weight=1, retry_s=0, family=fam.name)
        except BadSymbol:
            return False
        except (ExchangeUnavailable, ExchangeRejected):
            return None
        for entry in info.get("symbols", []) if isinstance(info, dict) else []:
            if isinstance(entry, dict) and entry.get("symbol") == mid:
                return (entry.get("status") or entry.get("contractStatus")) == "TRADING"
        return False


def _ms_or_none(value) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


_RATE_LIMITED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)
_TRANSIENT = (ccxt.RequestTimeout, ccxt.NetworkError, ccxt.BadResponse, _BadAnswer)
# ccxt's final errors, most specific first, as ours (anything else: ExchangeUnavailable).
_FINAL = (
    (ccxt.BadSymbol, BadSymbol, "does not list this symbol"),
    (ccxt.BadRequest, ExchangeRejected, "rejected the request"),
    (ccxt.AuthenticationError, ConfigError, "rejected the API key"),
)


def _final_error(exchange_id: str, exc: ccxt.BaseError) -> Exception:
    for theirs, ours, what in _FINAL:
        if isinstance(exc, theirs):
            return ours(f"{exchange_id} {what}: {exc}")
    return ExchangeUnavailable(f"{exchange_id} error: {exc}")


class _Retry:
    """One request's retries of transient faults: for `window` seconds (None: for ever), or
    `max_retries` times at the first contact; and the rate-limit waits so far."""

    def __init__(self, window: float | None, first_contact: bool, max_retries: int) -> None:
        self.window, self.first_contact, self.max_retries = window, first_contact, max_retries
        self.attempt = 0
        self.rl_waited = 0.0
        self._since: float | None = None

    def failed(self, now: float) -> float:
        """Count a failed attempt; the seconds since the first one."""
        self.attempt += 1
        self._since = now if self._since is None else self._since
        return now - self._since

    def exhausted(self, elapsed: float) -> bool:
        if self.first_contact:
            return self.attempt > self.max_retries
        return self.window is not None and elapsed >= self.window

    def tried(self, elapsed: float) -> str:
        if self.first_contact:
            return f"after {self.attempt} attempts"
        return f"for {elapsed:.0f}s ({self.attempt} attempts)" if self.attempt > 1 else "(one attempt)"

    def plan(self) -> str:
        if self.first_contact:
            return f"retry {self.attempt} of {self.max_retries}"
        return ("retrying until it answers" if self.window is None
                else f"retrying for up to {self.window:.0f}s")

    def backoff(self, elapsed: float) -> float:
        """Capped exponential with jitter; never past the window (the last try at its end)."""
        wait = min(MAX_BACKOFF_S, 0.2 * 2 ** (self.attempt - 1)) * (0.75 + random.random() / 2)
        if not self.first_contact and self.window is not None:
            wait = max(0.0, min(wait, self.window - elapsed))
        return wait
