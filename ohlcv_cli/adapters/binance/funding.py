"""Binance's funding history: REST `fundingRate` and `fundingInfo` (USD-M and COIN-M), and the
archive's monthly `fundingRate` files (USD-M and COIN-M).

REST goes through the one CcxtFetcher of the process (its `request`, with the retry policy of
every other call). `/fapi/v1/fundingRate` and `/fapi/v1/fundingInfo` share a separate limit of
500 requests per 5 minutes per IP (not the family's request weight), paced by a budget of its
own; COIN-M's `/dapi/v1/fundingRate` and `fundingInfo` weigh 1 on COIN-M's request weight, as
every other `/dapi` call.
Archive files go through BinanceArchive: the same download, checksum and retry code as klines.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator, Protocol

from ohlcv_cli.adapters.binance.budget import WeightBudget
from ohlcv_cli.core.archive import ArchiveError, ArchiveMissing, Period
from ohlcv_cli.core.errors import ExchangeUnavailable
from ohlcv_cli.core.feed import MarkPrice
from ohlcv_cli.core.funding import Settlement, check_interval_hours
from ohlcv_cli.core.markets import COINM, USDM, Family, market_of

log = logging.getLogger(__name__)

FUNDING_LIMIT = 500  # requests per window, shared by fundingRate and fundingInfo
FUNDING_WINDOW_MS = 5 * 60_000
PAGE = 1000  # the most rows one fundingRate request returns


class FundingFetcher(Protocol):
    """What this adapter needs of CcxtFetcher."""

    def request(self, family: str, path: str, params: dict, *, weight: int, budget=None): ...
    def now_ms(self) -> int: ...
    def trading_span(self, symbol: str) -> tuple[int | None, int | None]: ...


def funding_path(market_id: str, period: Period, family: Family = USDM) -> str:
    """Binance's layout of the monthly funding files: `data/futures/um/...` for USD-M,
    `data/futures/cm/...` for COIN-M (BTCUSD_PERP's start in 2022-07); same columns."""
    label = period.label
    return (f"/{family.archive_root}/monthly/fundingRate/{market_id}/"
            f"{market_id}-fundingRate-{label}.zip")


class BadFundingAnswer(ExchangeUnavailable):
    """A fundingRate or fundingInfo answer that is not of the documented shape."""


def _settlements(rows, exchange: str, symbol: str, market_id: str, source: str
                 ) -> list[Settlement]:
    if type(rows) is not list:
        raise BadFundingAnswer(f"fundingRate answer is not a JSON array: {str(rows)[:80]!r}")
    out = []
    for row in rows:
        if not (isinstance(row, dict) and type(row.get("fundingTime")) is int
                and isinstance(row.get("fundingRate"), str) and row.get("symbol") == market_id):
            raise BadFundingAnswer(f"fundingRate answer holds a malformed row: {str(row)[:100]!r}")
        mark = row.get("markPrice")
        out.append(Settlement(exchange, symbol, row["fundingTime"], row["fundingRate"],
                              mark if isinstance(mark, str) and mark else None, None, source))
    return out


class BinanceFunding:
    """Thread-safe as its fetcher is; one per process, so that its budget is the IP's."""

    def __init__(self, fetcher: FundingFetcher, archive=None, *, exchange: str = "binance",
                 budget: WeightBudget | None = None, limit: int = FUNDING_LIMIT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._fetcher = fetcher
        self._archive = archive
        self.exchange = exchange
        self.budget = budget or WeightBudget(limit, FUNDING_WINDOW_MS, fetcher.now_ms, sleep)
        self.requests = 0  # fundingRate and fundingInfo requests
        self.limited = 0  # those of them under the 500-per-5-minutes limit (USD-M)
        self._count = threading.Lock()  # the counts are kept from several threads

    def now_ms(self) -> int:
        return self._fetcher.now_ms()

    def _get(self, family: str, path: str, params: dict):
        limited = family == USDM.name  # else: on the family's request weight
        with self._count:
            self.requests += 1
            self.limited += limited
        return self._fetcher.request(family, path, params, weight=1,
                                     budget=self.budget if limited else None)

    # --- REST ---------------------------------------------------------------------------------
    def history(self, symbol: str, start: int, end: int, source: str = "rest"
                ) -> Iterator[list[Settlement]]:
        """The settlements with start <= fundingTime < end, ascending: one page (up to 1,000)
        per request, so that a caller counts requests by pages. The next page starts 1 ms after
        the last fundingTime (both bounds are inclusive); a page shorter than the limit is the
        last (Binance answers the first `limit` rows from startTime): with 500 requests per 5
        minutes, no request is spent confirming an end. Should a page ever be cut short, the
        check after the fill finds what is missing and a repair asks again."""
        family = market_of(symbol).family
        mid = market_of(symbol).id
        path = f"{family.rest_prefix}/fundingRate"
        t = start
        while t < end:
            params = {"symbol": mid, "startTime": t, "endTime": end - 1, "limit": PAGE}
            rows = _settlements(self._get(family.name, path, params), self.exchange, symbol, mid,
                                source)
            page = [s for s in rows if t <= s.funding_time < end]
            yield page
            if len(rows) < PAGE or not page:
                return
            t = page[-1].funding_time + 1

    def intervals(self, family: str = USDM.name) -> dict[str, int]:
        """fundingInfo: {market id: fundingIntervalHours} of the symbols whose interval Binance
        adjusted (a symbol it does not list settles every 8 hours)."""
        prefix = {USDM.name: USDM.rest_prefix, COINM.name: COINM.rest_prefix}[family]
        answer = self._get(family, f"{prefix}/fundingInfo", {})
        if type(answer) is not list:
            raise BadFundingAnswer(f"fundingInfo answer is not a JSON array: {str(answer)[:80]!r}")
        out = {}
        for row in answer:
            try:
                out[row["symbol"]] = check_interval_hours(row["fundingIntervalHours"])
            except (TypeError, KeyError, ValueError):
                raise BadFundingAnswer(
                    f"fundingInfo answer holds a malformed row: {str(row)[:100]!r}") from None
        return out

    def next_settlement(self, symbol: str) -> MarkPrice | None:
        """premiumIndex: the rate that settles next and when (`lastFundingRate`,
        `nextFundingTime`), the mark-price stream's news over REST (weight 1 on USD-M, 10 on
        COIN-M, whose answer is a list). None for a contract without funding (time 0)."""
        market = market_of(symbol)
        family = market.family
        weight = 1 if family is USDM else 10
        answer = self._fetcher.request(family.name, f"{family.rest_prefix}/premiumIndex",
                                       {"symbol": market.id}, weight=weight)
        rows = answer if isinstance(answer, list) else [answer]
        for row in rows:
            if isinstance(row, dict) and row.get("symbol") == market.id:
                t, rate = row.get("nextFundingTime"), row.get("lastFundingRate")
                if type(t) is not int or not isinstance(rate, str):
                    break
                if t <= 0 or not rate:
                    return None
                mark = row.get("markPrice")
                return MarkPrice(symbol, rate, t, int(row.get("time") or 0),
                                 mark if isinstance(mark, str) else None)
        raise BadFundingAnswer(f"premiumIndex answer for {market.id} is not of the documented "
                               f"shape: {str(answer)[:100]!r}")

    def onboard(self, symbol: str) -> int | None:
        """The symbol's onboard time (nothing is due before it): the fetcher's trading span,
        from the family's exchangeInfo (`onboardDate`)."""
        return self._fetcher.trading_span(symbol)[0]

    # --- the archive --------------------------------------------------------------------------
    def has_archive(self, symbol: str) -> bool:
        """Binance files monthly funding for the perpetuals of both futures families."""
        return self._archive is not None and market_of(symbol).family in (USDM, COINM)

    def archive_month(self, symbol: str, period: Period) -> list[Settlement] | None:
        """The month's settlements from its archive file (source 'archive', no mark price, the
        file's interval); None when the archive has no such file (404) or cannot give it."""
        market = market_of(symbol)
        path = funding_path(market.id, period, market.family)
        try:
            file = self._archive.fetch_file(path, period)
        except ArchiveMissing:
            return None
        except ArchiveError as exc:
            log.warning("funding archive %s: %s; REST instead", path, exc)
            return None
        try:
            out = []
            for row in file.rows():
                # calc_time (ms), funding_interval_hours, last_funding_rate
                hours = check_interval_hours(row[1]) if row[1] else None
                out.append(Settlement(self.exchange, symbol, row[0], row[2].strip(), None, hours,
                                      "archive"))
        except (IndexError, ValueError, ArchiveError) as exc:
            log.warning("funding archive %s: unreadable (%s); REST instead", path, exc)
            return None
        finally:
            file.close()
        return [s for s in out if period.start <= s.funding_time < period.end]
