"""Funding settlements: backfill, check and repair (issue 19).

One road fills funding history (FillFunding): for the settlements the due rule says are missing,
whole past months come from the archive's monthly files (USD-M and COIN-M; no request
weight), whatever is left from REST `fundingRate` (a page of up to 1,000; USD-M's within the
endpoint's own 500-per-5-minutes budget). Backfill and repair are that road over what a check finds missing, so a backfill resumes
from what is stored and a repair fills exactly what the check reported.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

from ohlcv_cli.core.archive import Period, month_start, next_month
from ohlcv_cli.core.errors import ConfigError, ExchangeRejected, ExchangeUnavailable, OhlcvError
from ohlcv_cli.core.funding import (
    CONTEXT_MS, DEFAULT_INTERVAL_HOURS, HOUR_MS, TOLERANCE_MS, FundingGaps, Settlement,
    boundaries, boundary_of, find_gaps, with_intervals,
)
from ohlcv_cli.core.markets import COINM, USDM, market_of
from ohlcv_cli.core.ranges import merge, subtract
from ohlcv_cli.core.symbols import is_symbol
from ohlcv_cli.core.timeframes import DAY_MS

log = logging.getLogger(__name__)

# A settlement is due in a check once this long has passed since its boundary (Binance records
# it a few ms after the boundary and publishes it on REST within seconds).
GRACE_MS = 60_000


# --- the interfaces this module knows its collaborators by -------------------------------------
class FundingSource(Protocol):
    exchange: str

    def now_ms(self) -> int: ...
    def history(self, symbol: str, start: int, end: int, source: str = "rest"
                ) -> Iterator[list[Settlement]]: ...
    def intervals(self, family: str = "usdm") -> dict[str, int]: ...
    def onboard(self, symbol: str) -> int | None: ...
    def has_archive(self, symbol: str) -> bool: ...
    def archive_month(self, symbol: str, period: Period) -> list[Settlement] | None: ...


class FundingRepository(Protocol):
    def store(self, settlements) -> int: ...
    def times(self, exchange: str, symbol: str, start: int | None = None,
              end: int | None = None) -> list[int]: ...
    def latest(self, exchange: str, symbol: str, before: int | None = None
               ) -> Settlement | None: ...


# --- symbols and the window -------------------------------------------------------------------
def perpetuals(symbols: Sequence[str], explicit: bool = True) -> list[str]:
    """The perpetual symbols (funding exists for nothing else). `explicit` (--symbols): any
    other symbol is an error; from SYMBOLS, the others are left out (an error if none is left)."""
    out = []
    for s in symbols:
        if not is_symbol(s):
            raise ConfigError(f"funding takes ccxt perpetual symbols such as BTC/USDT:USDT or "
                              f"BTC/USD:BTC, not {s!r}")
        m = market_of(s)
        if m.is_perpetual:
            out.append(s)
        elif explicit:
            what = "a spot market" if m.is_spot else "a delivery contract"
            raise ConfigError(f"{s} is {what}: funding exists for perpetual contracts only "
                              f"(e.g. {m.base}/{m.quote}:{m.settle or m.quote})")
    if not out:
        raise ConfigError("no perpetual symbol in SYMBOLS: pass --symbols, e.g. BTC/USDT:USDT")
    return out


def funding_bounds(now_ms: int, days: float | None = None, start: int | None = None,
                   end: int | None = None) -> tuple[int, int]:
    """[start, end) of the settlements a command covers: `days` back from the current hour, or
    from `start`; up to `end`, never past what is due by now (GRACE_MS after its boundary)."""
    limit = now_ms - GRACE_MS + 1
    hi = limit if end is None else min(end, limit)
    if start is None:
        if not days or days <= 0:
            raise ConfigError("a window needs a start or a positive number of days")
        start = now_ms // HOUR_MS * HOUR_MS - int(days * DAY_MS)
    if start >= hi:
        raise ConfigError("empty window: its start is not before its end (or before now)")
    return start, hi


# --- check ------------------------------------------------------------------------------------
@dataclass
class FundingReport:
    exchange: str
    start: int
    end: int
    symbols: list[FundingGaps] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return sum(len(g.missing) for g in self.symbols)

    @property
    def ok(self) -> bool:
        return self.missing == 0


@dataclass(frozen=True)
class Rules:
    """What the exchange says of each symbol: the interval now and the onboard time."""

    current: dict[str, int]
    onboard: dict[str, int | None]


def exchange_rules(source: FundingSource, symbols: Sequence[str]) -> Rules:
    """fundingInfo (one request per futures family with symbols here; a symbol it does not list
    settles every 8 hours) and each symbol's onboard time. Should COIN-M's fundingInfo fail
    (it came years after USD-M's; a proxy or testnet may lack it), a warning says so and its
    symbols go by the stored spacing (Rules.current has no entry; FundingCheck falls back to
    the stored interval, then 8 hours); USD-M's is the record and its failure is an error."""
    current: dict[str, int] = {}
    for family in (USDM, COINM):
        mine = [s for s in symbols if market_of(s).family is family]
        if not mine:
            continue
        try:
            adjusted = source.intervals(family.name)
        except (ExchangeRejected, ExchangeUnavailable) as exc:  # refused, missing, malformed
            if family is USDM:
                raise
            log.warning("%s fundingInfo: %s; the intervals of %s go by the stored spacing",
                        family.title, exc, ", ".join(mine))
            continue
        for s in mine:
            current[s] = adjusted.get(market_of(s).id, DEFAULT_INTERVAL_HOURS)
    return Rules(current, {s: source.onboard(s) for s in symbols})


class FundingCheck:
    """The due settlements of the window that have none stored, per symbol."""

    def __init__(self, repo: FundingRepository, exchange: str = "binance") -> None:
        self.repo = repo
        self.exchange = exchange

    def current_interval(self, symbol: str, rules: Rules | None) -> int:
        if rules is not None and symbol in rules.current:
            return rules.current[symbol]
        last = self.repo.latest(self.exchange, symbol)
        return last.interval_hours if last and last.interval_hours else DEFAULT_INTERVAL_HOURS

    def symbol(self, symbol: str, start: int, end: int, rules: Rules | None = None
               ) -> FundingGaps:
        times = self.repo.times(self.exchange, symbol, start - CONTEXT_MS, end + CONTEXT_MS)
        onboard = None if rules is None else rules.onboard.get(symbol)
        return find_gaps(symbol, times, start, end, self.current_interval(symbol, rules), onboard)

    def run(self, symbols: Sequence[str], start: int, end: int, rules: Rules | None = None
            ) -> FundingReport:
        return FundingReport(self.exchange, start, end,
                             [self.symbol(s, start, end, rules) for s in symbols])


# --- the one road that fills funding history ------------------------------------------------
@dataclass
class FillResult:
    symbol: str
    missing: int = 0  # due settlements with none stored, before
    written: int = 0
    from_archive: int = 0  # settlements written from archive files
    from_rest: int = 0
    archive_months: int = 0  # monthly files used
    archive_missing: int = 0  # monthly files the archive does not have (404): REST instead
    requests: int = 0
    still_missing: list[int] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.still_missing


class FillFunding:
    """Fetch what the due rule says is missing: archive months first, REST for the rest."""

    def __init__(self, source: FundingSource, repo: FundingRepository, *,
                 use_archive: bool = True, archive_concurrency: int = 8) -> None:
        self.source = source
        self.repo = repo
        self.exchange = source.exchange
        self.use_archive = use_archive
        self.archive_concurrency = max(1, archive_concurrency)

    def _store(self, rows: list[Settlement], have: set[int], current: int | None) -> int:
        """Rows of boundaries not stored yet (a settlement is one row, whatever its exact ms),
        with their intervals from the spacing; returns the rows written."""
        new = [r for r in rows if boundary_of(r.funding_time) not in have]
        if not new:
            return 0
        previous = self.repo.latest(self.exchange, new[0].symbol, before=new[0].funding_time)
        new = with_intervals(new, None if previous is None else previous.funding_time, current)
        written = self.repo.store(new)
        have.update(b for b in boundaries(r.funding_time for r in new))
        return written

    def fill(self, symbol: str, gaps: FundingGaps, label: str, current: int | None = None,
             ) -> FillResult:
        result = FillResult(symbol, missing=len(gaps.missing))
        if gaps.ok:
            return result
        todo = set(gaps.missing)
        have = set(boundaries(self.repo.times(self.exchange, symbol, gaps.start - TOLERANCE_MS,
                                              gaps.end + TOLERANCE_MS)))
        now = self.source.now_ms()
        covered: list[tuple[int, int]] = []  # months the archive gave
        if self.use_archive and self.source.has_archive(symbol):
            months = _months(sorted(todo), now)
            with ThreadPoolExecutor(min(self.archive_concurrency, max(1, len(months)))) as pool:
                files = list(pool.map(lambda p: self.source.archive_month(symbol, p), months))
            got: list[Settlement] = []  # every month's rows, stored in one transaction
            for period, rows in zip(months, files):
                if rows is None:
                    result.archive_missing += 1
                    continue
                result.archive_months += 1
                covered.append((period.start - TOLERANCE_MS, period.end - TOLERANCE_MS))
                got.extend(r for r in rows
                           if gaps.start - TOLERANCE_MS <= r.funding_time < gaps.end + TOLERANCE_MS)
            n = self._store(sorted(got, key=lambda r: r.funding_time), have, None)
            result.from_archive += n
            result.written += n
        # REST for each span with missing settlements, but the months the archive gave; the
        # whole span, not only the boundaries counted (next to an interval change the count is
        # the fewest that can be missing)
        left = sorted(todo - have)
        for a, b in subtract(merge((a - TOLERANCE_MS, b + TOLERANCE_MS + 1)
                                   for a, b in gaps.spans), covered):
            if not any(a <= t < b for t in left):
                continue
            for page in self.source.history(symbol, a, b, source=label):
                result.requests += 1
                n = self._store([r for r in page if gaps.start - TOLERANCE_MS <= r.funding_time
                                 < gaps.end + TOLERANCE_MS], have, current)
                result.from_rest += n
                result.written += n
        return result


def _months(missing: Sequence[int], now_ms: int) -> list[Period]:
    """The calendar months that hold missing settlements and have ended (their file may be
    published; a month not published yet answers 404 and goes to REST)."""
    out: list[Period] = []
    for b in missing:
        m0 = month_start(b)
        if out and out[-1].start == m0:
            continue
        m1 = next_month(b)
        if m1 <= now_ms:
            out.append(Period("monthly", m0, m1))
    return out


@dataclass
class FillReport:
    exchange: str
    start: int
    end: int
    symbols: list[FillResult] = field(default_factory=list)
    requests: int = 0  # fundingRate and fundingInfo requests
    seconds: float = 0.0
    limited: int = 0  # those of them under USD-M's 500-per-5-minutes limit

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.symbols)

    @property
    def failed(self) -> list[FillResult]:
        return [r for r in self.symbols if r.error]


class _Fill:
    """Check, fill what is missing, check again: backfill and repair, per symbol side by side."""

    label = "rest"

    def __init__(self, source: FundingSource, repo: FundingRepository, *, use_archive=True,
                 concurrency: int = 4, archive_concurrency: int = 8,
                 progress: Callable[[str, FillResult], None] | None = None) -> None:
        self.source = source
        self.repo = repo
        self.check = FundingCheck(repo, source.exchange)
        self.road = FillFunding(source, repo, use_archive=use_archive,
                                archive_concurrency=archive_concurrency)
        self.concurrency = max(1, concurrency)
        self.progress = progress

    def _one(self, symbol: str, start: int, end: int, rules: Rules) -> FillResult:
        began = time.monotonic()
        try:
            gaps = self.check.symbol(symbol, start, end, rules)
            result = self.road.fill(symbol, gaps, self.label, rules.current.get(symbol))
            result.still_missing = self.check.symbol(symbol, start, end, rules).missing
        except OhlcvError as exc:
            result = FillResult(symbol, error=str(exc))
        result.seconds = time.monotonic() - began
        if self.progress:
            self.progress(symbol, result)
        return result

    def run(self, symbols: Sequence[str], start: int, end: int) -> FillReport:
        began = time.monotonic()
        before = getattr(self.source, "requests", 0), getattr(self.source, "limited", 0)
        rules = exchange_rules(self.source, symbols)
        with ThreadPoolExecutor(min(self.concurrency, len(symbols))) as pool:
            results = list(pool.map(lambda s: self._one(s, start, end, rules), symbols))
        requests = getattr(self.source, "requests", 0) - before[0]
        limited = getattr(self.source, "limited", 0) - before[1]
        return FillReport(self.source.exchange, start, end, results, requests,
                          time.monotonic() - began, limited)


class FundingBackfill(_Fill):
    """Every settlement of the window the store does not have (resumable: what is stored is
    never fetched again)."""

    label = "rest"


class FundingRepair(_Fill):
    """What FundingCheck reports missing, fetched (REST rows stored with source 'repair');
    `still_missing`: what the exchange does not have either."""

    label = "repair"
