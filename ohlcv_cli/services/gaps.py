"""Gaps: which closed candles the store is missing, and repairing them from the exchange.

The expected grid of a symbol runs from the window start (or its first stored candle, if later) to
the last closed candle minus a grace (the settle delay plus one timeframe, so a candle the stream is
about to write is not reported), without the ranges the exchange confirmed empty. Gaps are found in
SQL by the repository (missing_ranges), one segment of the grid at a time.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.ports import CandleRepository, Fetcher, GapRepository
from ohlcv_cli.core.ranges import Range, clip, count, merge, subtract, uncovered  # noqa: F401
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.window import WindowSpec, grace_end, window
from ohlcv_cli.services.fill import fill
from ohlcv_cli.services.paging import Job, PagedFetch

log = logging.getLogger(__name__)


# Candles per missing_ranges call. A complete chunk costs one count over the primary key; a chunk
# with a hole also costs a window function, over this chunk only rather than the whole history
# (measured on 20 symbols x 1 year of 1m candles: about 1.5 s instead of 2-3 s).
CHUNK = 65_536


# --- check ------------------------------------------------------------------------------------
@dataclass
class SymbolGaps:
    symbol: str
    start: int  # start of the expected grid: window start, or the first stored candle if later
    end: int
    expected: int  # candles expected in the grid (known exchange gaps left out)
    missing: list[Range] = field(default_factory=list)
    exchange_gaps: list[Range] = field(default_factory=list)  # known, within the grid
    missing_candles: int = 0

    @property
    def empty(self) -> bool:
        """No candle stored anywhere in the window."""
        return self.expected > 0 and self.missing_candles == self.expected

    @property
    def coverage(self) -> float:
        """Percentage of the expected candles that are stored."""
        if self.expected == 0:
            return 100.0
        return 100.0 * (self.expected - self.missing_candles) / self.expected


@dataclass
class GapReport:
    exchange: str
    timeframe: str
    start: int
    end: int
    symbols: list[SymbolGaps] = field(default_factory=list)

    @property
    def missing_candles(self) -> int:
        return sum(s.missing_candles for s in self.symbols)

    @property
    def ok(self) -> bool:
        return self.missing_candles == 0


class GapCheck:
    """Needs only the database: "now" is handed in (the local clock, for a cron check)."""

    def __init__(self, repo: CandleRepository, gaps: GapRepository, exchange: str = "binance",
                 *, concurrency: int = 4, chunk: int = CHUNK) -> None:
        self.repo = repo
        self.gaps = gaps
        self.exchange = exchange
        # Symbols are checked side by side: the database overlaps one query's round trips and
        # serial window functions with another's parallel index scans.
        self.concurrency = concurrency
        self.chunk = max(1, chunk)

    def window(self, tf: Timeframe, now_ms: int, *, delay_ms: int = 1000,
               days: float | None = None, start: int | None = None, end: int | None = None
               ) -> tuple[int, int]:
        """[start, end) of the check: it ends at the grace end (or earlier, if `end` says so)."""
        return window(tf, grace_end(tf, now_ms, delay_ms), WindowSpec(days, start, end))

    def run(self, symbols: Sequence[str], tf: Timeframe, now_ms: int, *, delay_ms: int = 1000,
            days: float | None = None, start: int | None = None, end: int | None = None
            ) -> GapReport:
        start, end = self.window(tf, now_ms, delay_ms=delay_ms, days=days, start=start, end=end)
        report = GapReport(self.exchange, tf.name, start, end)
        workers = max(1, min(self.concurrency, len(symbols)))
        with ThreadPoolExecutor(workers, thread_name_prefix="gaps") as pool:
            report.symbols = list(pool.map(lambda s: self.symbol(s, tf, start, end), symbols))
        return report

    def symbol(self, symbol: str, tf: Timeframe, start: int, end: int) -> SymbolGaps:
        first = self.gaps.first_open_time(self.exchange, symbol, tf.name)
        if first is not None and start < first < end:
            start = tf.ceil(first)  # nothing is expected before the first stored candle
        known = clip(self.gaps.exchange_gaps(self.exchange, symbol, tf.name, start, end), start, end)
        segments = subtract([(start, end)], known)
        missing: list[Range] = []
        step = self.chunk * tf.ms
        for a, b in segments:  # each segment should be complete: the count fast path holds
            for c in range(a, b, step):
                missing.extend(self.repo.missing_ranges(self.exchange, symbol, tf, c, min(b, c + step)))
        missing = merge(missing)  # a range cut by a chunk boundary is one range again
        return SymbolGaps(symbol, start, end, count(tf, segments), missing, known,
                          count(tf, missing))


# --- repair -----------------------------------------------------------------------------------
@dataclass
class SymbolRepair:
    symbol: str
    missing: list[Range] = field(default_factory=list)  # before the repair
    fetched: int = 0
    written: int = 0
    exchange_empty: list[Range] = field(default_factory=list)  # confirmed now, recorded
    still_missing: list[Range] = field(default_factory=list)
    still_missing_candles: int = 0
    error: str | None = None


@dataclass
class RepairReport:
    exchange: str
    timeframe: str
    start: int
    end: int
    symbols: list[SymbolRepair] = field(default_factory=list)
    archive: dict = field(default_factory=dict)  # symbol -> services.archive.ArchiveSymbolResult

    @property
    def ok(self) -> bool:
        return all(r.error is None and not r.still_missing for r in self.symbols)


class GapRepair:
    """Fetch what the check finds missing; record what the exchange confirms it has not."""

    def __init__(self, fetcher: Fetcher, repo: CandleRepository, gaps: GapRepository, *,
                 batch_size: int = 20_000, stop: threading.Event | None = None,
                 in_flight: int = 1) -> None:
        self.fetcher = fetcher
        self.repo = repo
        self.gaps = gaps
        self.batch_size = batch_size
        self.stop = stop
        self.in_flight = in_flight  # > 1: pages in flight across symbols (services.paging)
        self.check = GapCheck(repo, gaps, fetcher.exchange_id)

    def run(self, symbols: Sequence[str], tf: Timeframe, *, delay_ms: int = 1000,
            days: float | None = None, start: int | None = None, end: int | None = None
            ) -> RepairReport:
        self.fetcher.check_symbols(symbols)
        # The exchange's clock, not ours: an empty range is recorded only when it lies wholly
        # before the exchange's last settled close.
        settled = self.fetcher.closed_end(tf)
        start, end = self.check.window(tf, self.fetcher.now_ms(), delay_ms=delay_ms, days=days,
                                       start=start, end=end)
        end = min(end, settled)
        report = RepairReport(self.fetcher.exchange_id, tf.name, start, end)
        if self.in_flight > 1:
            report.symbols = self._paged(symbols, tf, start, end, settled)
            return report
        for symbol in symbols:
            report.symbols.append(self._one(symbol, tf, start, end, settled))
        return report

    def _paged(self, symbols: Sequence[str], tf: Timeframe, start: int, end: int, settled: int
               ) -> list[SymbolRepair]:
        """Every symbol's missing ranges fetched by one pool of pages in flight."""
        out: list[SymbolRepair] = []
        jobs: list[Job] = []
        for symbol in symbols:
            r = SymbolRepair(symbol)
            try:
                r.missing = self.check.symbol(symbol, tf, start, end).missing
            except OhlcvError as exc:
                r.error = str(exc)
            out.append(r)
            jobs.append(Job(symbol, r.missing, error=r.error))
        PagedFetch(self.fetcher, self.repo, self.gaps, in_flight=self.in_flight,
                   batch_size=self.batch_size, stop=self.stop).fill(jobs, tf, "repair",
                                                                    settled=settled)
        for r, job in zip(out, jobs):
            if r.error is not None:
                continue
            r.fetched, r.written, r.exchange_empty, r.error = (job.fetched, job.written,
                                                               job.empty, job.error)
            log.info("%s %s: %d of %d candles fetched, %d ranges empty at the exchange",
                     r.symbol, tf, job.fetched, job.missing, len(job.empty))
            try:
                after = self.check.symbol(r.symbol, tf, start, end)
                r.still_missing, r.still_missing_candles = after.missing, after.missing_candles
            except OhlcvError as exc:
                r.error = r.error or str(exc)
        return out

    def _one(self, symbol: str, tf: Timeframe, start: int, end: int, settled: int
             ) -> SymbolRepair:
        r = SymbolRepair(symbol)
        try:
            r.missing = self.check.symbol(symbol, tf, start, end).missing
            # the fetch covers all of each range (end <= settled): what it lacks, the exchange lacks
            got = fill(self.fetcher, self.repo, self.gaps, symbol, tf, r.missing, source="repair",
                       batch_size=self.batch_size, settled=settled, stop=self.stop)
            r.fetched, r.written, r.exchange_empty = got.fetched, got.written, got.empty
            if got.stopped:
                r.error = "stopped before every missing range was fetched"
            log.info("%s %s: %d of %d candles fetched, %d ranges empty at the exchange",
                     symbol, tf, got.fetched, count(tf, r.missing), len(got.empty))
            after = self.check.symbol(symbol, tf, start, end)
            r.still_missing, r.still_missing_candles = after.missing, after.missing_candles
        except OhlcvError as exc:
            r.error = str(exc)  # reported by the caller, from the report
        return r
