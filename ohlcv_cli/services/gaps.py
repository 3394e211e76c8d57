"""Gaps: which closed candles the store is missing, and repairing them from the exchange.

The expected grid of a symbol is the whole window asked for, from its start to the last closed
candle minus a grace (the settle delay plus one timeframe, so a candle the stream is about to write
is not reported), without the ranges the exchange confirmed empty. A head before the first stored
candle is missing like any other range until a repair (or a backfill) confirms the exchange has
nothing there (before the listing) and records it. Gaps are found in SQL by the repository
(missing_ranges), one segment of the grid at a time (services.history.find_missing); a repair fills
them through the one road that fills history (services.history.FillHistory).

Each check or repair covers one price series (trade, mark, index, premium) of its symbols. A
delivery contract is expected only up to its delivery (the exchange's deliveryDate in a repair;
in a check, which reads only the database, the delivery its symbol names): nothing at or after
it is reported missing.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.markets import DEFAULT_PRICE
from ohlcv_cli.core.ports import CandleRepository, GapRepository
from ohlcv_cli.core.ranges import Range, count, merge, subtract, uncovered  # noqa: F401
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.window import HistoryWindow, Span, grace_end, symbol_span, trading_window
from ohlcv_cli.services.history import (
    CHUNK, FillHistory, SymbolResult, find_missing,
)

log = logging.getLogger(__name__)


# --- check ------------------------------------------------------------------------------------
@dataclass
class SymbolGaps:
    symbol: str
    start: int  # the first expected open time: the window start, past a known exchange gap
    end: int  # the window end, or a delivery contract's delivery
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
    price: str = DEFAULT_PRICE

    @property
    def missing_candles(self) -> int:
        return sum(s.missing_candles for s in self.symbols)

    @property
    def ok(self) -> bool:
        return self.missing_candles == 0


class GapCheck:
    """Needs only the database: "now" is handed in (the local clock, for a cron check).
    `spans(symbol)`: the symbol's trading span (listing, delivery); by default what the symbol
    names (a delivery contract's delivery)."""

    def __init__(self, repo: CandleRepository, gaps: GapRepository, exchange: str = "binance",
                 *, concurrency: int = 4, chunk: int = CHUNK,
                 spans: Callable[[str], Span] = symbol_span) -> None:
        self.repo = repo
        self.gaps = gaps
        self.exchange = exchange
        self.spans = spans
        # Symbols are checked side by side: the database overlaps one query's round trips and
        # serial window functions with another's parallel index scans.
        self.concurrency = concurrency
        self.chunk = max(1, chunk)

    def window(self, tf: Timeframe, now_ms: int, window: HistoryWindow, *,
               delay_ms: int = 1000) -> tuple[int, int]:
        """[start, end) of the check: it ends at the grace end (or earlier, if `end` says so)."""
        return window.bounds(tf, now_ms, grace_end(tf, now_ms, delay_ms))

    def run(self, symbols: Sequence[str], tf: Timeframe, now_ms: int, window: HistoryWindow, *,
            delay_ms: int = 1000, price: str = DEFAULT_PRICE) -> GapReport:
        start, end = self.window(tf, now_ms, window, delay_ms=delay_ms)
        report = GapReport(self.exchange, tf.name, start, end, price=price)
        workers = max(1, min(self.concurrency, len(symbols)))
        with ThreadPoolExecutor(workers, thread_name_prefix="gaps") as pool:
            report.symbols = list(pool.map(lambda s: self.symbol(s, tf, start, end, price),
                                           symbols))
        return report

    def symbol(self, symbol: str, tf: Timeframe, start: int, end: int,
               price: str = DEFAULT_PRICE) -> SymbolGaps:
        start, end = trading_window(tf, start, end, self.spans(symbol))
        m = find_missing(self.repo, self.gaps, self.exchange, symbol, tf, start, end,
                         chunk=self.chunk, price=price)
        first = m.expected[0][0] if m.expected else start
        return SymbolGaps(symbol, first, end, count(tf, m.expected), m.ranges, m.known,
                          count(tf, m.ranges))


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
    price: str = DEFAULT_PRICE

    @property
    def ok(self) -> bool:
        return all(r.error is None and not r.still_missing for r in self.symbols)


class GapRepair:
    """Fetch what the check finds missing; record what the exchange confirms it has not."""

    def __init__(self, history: FillHistory, gaps: GapRepository) -> None:
        self.history = history
        self.fetcher = history.fetcher
        self.check = GapCheck(history.repo, gaps, self.fetcher.exchange_id,
                              spans=self.fetcher.trading_span)

    def run(self, symbols: Sequence[str], tf: Timeframe, window: HistoryWindow, *,
            delay_ms: int = 1000, source: str = "auto",
            price: str = DEFAULT_PRICE) -> RepairReport:
        self.fetcher.check_symbols(symbols)
        # The exchange's clock, not ours: an empty range is recorded only when it lies wholly
        # before the exchange's last settled close.
        settled = self.fetcher.closed_end(tf)
        start, end = self.check.window(tf, self.fetcher.now_ms(), window, delay_ms=delay_ms)
        end = min(end, settled)
        report = RepairReport(self.fetcher.exchange_id, tf.name, start, end, price=price)
        filled = self.history.run(symbols, tf, start, end, source=source, tag="repair",
                                  settled=settled, price=price)
        for f in filled:
            report.symbols.append(self._outcome(f, tf, start, end, price))
            if f.archive is not None:
                report.archive[f.symbol] = f.archive
        return report

    def _outcome(self, f: SymbolResult, tf: Timeframe, start: int, end: int,
                 price: str) -> SymbolRepair:
        r = SymbolRepair(f.symbol, f.ranges, f.fetched, f.written, f.empty, error=f.error)
        if f.stopped and r.error is None:
            r.error = "stopped before every missing range was fetched"
        if f.error is not None and not f.ranges:  # its missing ranges could not be read
            return r
        if r.error is None:  # a failure is reported by the caller, from the report
            log.info("%s %s: %d of %d candles fetched, %d ranges empty at the exchange",
                     f.symbol, tf, f.fetched, f.missing, len(f.empty))
        try:
            after = self.check.symbol(f.symbol, tf, start, end, price)
            r.still_missing, r.still_missing_candles = after.missing, after.missing_candles
        except OhlcvError as exc:
            r.error = r.error or str(exc)
        return r
