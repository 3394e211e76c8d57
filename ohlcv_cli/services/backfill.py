"""Backfill: fetch what the store is missing in a window, for several symbols at once."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.ports import CandleRepository, ExchangeGapRepository, Fetcher
from ohlcv_cli.core.ranges import count, subtract
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.window import WindowSpec, window
from ohlcv_cli.services.fill import fill

log = logging.getLogger(__name__)

# progress(symbol, candles done, candles to do)
Progress = Callable[[str, int, int], None]


@dataclass
class SymbolResult:
    symbol: str
    start: int
    end: int
    missing: int = 0  # candles the store lacked in the window before this run
    fetched: int = 0
    written: int = 0
    exchange_missing: int = 0  # candles the exchange has none for (maintenance, before listing)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class BackfillResult:
    timeframe: str
    start: int
    end: int
    symbols: list[SymbolResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.symbols)

    @property
    def written(self) -> int:
        return sum(r.written for r in self.symbols)

    @property
    def failed(self) -> list[SymbolResult]:
        return [r for r in self.symbols if r.error is not None]


class Backfill:
    def __init__(self, fetcher: Fetcher, repo: CandleRepository, *, concurrency: int = 4,
                 batch_size: int = 10_000, progress: Progress | None = None,
                 gaps: ExchangeGapRepository | None = None,
                 stop: threading.Event | None = None) -> None:
        self.fetcher = fetcher
        self.repo = repo
        self.gaps = gaps  # ranges the exchange confirmed empty: skipped, and learnt
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.progress = progress
        self.stop = stop

    def run(self, symbols: Sequence[str], tf: Timeframe, *, days: float | None = None,
            start: int | None = None, end: int | None = None,
            source: str = "backfill") -> BackfillResult:
        self.fetcher.check_symbols(symbols)
        start, end = window(tf, self.fetcher.now_ms(), WindowSpec(days, start, end))
        result = BackfillResult(tf.name, start, end)
        workers = max(1, min(self.concurrency, len(symbols)))
        with ThreadPoolExecutor(workers, thread_name_prefix="backfill") as pool:
            futures = [pool.submit(self._one, s, tf, start, end, source) for s in symbols]
            result.symbols = [f.result() for f in futures]
        return result

    def _one(self, symbol: str, tf: Timeframe, start: int, end: int, source: str) -> SymbolResult:
        r = SymbolResult(symbol, start, end)
        t0 = time.monotonic()
        exchange = self.fetcher.exchange_id
        try:
            ranges = self.repo.missing_ranges(exchange, symbol, tf, start, end)
            if self.gaps is not None:
                ranges = subtract(ranges, self.gaps.exchange_gaps(exchange, symbol, tf.name,
                                                                  start, end))
            r.missing = count(tf, ranges)
            self._report(symbol, 0, r.missing)
            got = fill(self.fetcher, self.repo, self.gaps, symbol, tf, ranges, source=source,
                       batch_size=self.batch_size, expect_new=True, stop=self.stop,
                       progress=lambda done: self._report(symbol, done, r.missing))
            r.fetched, r.written = got.fetched, got.written
            r.exchange_missing = 0 if got.stopped else r.missing - got.fetched
            if got.stopped:
                r.error = "stopped before the end of the window"
        except OhlcvError as exc:
            # reported by the caller (the result names it), not logged here as well
            r.error = str(exc)
        r.seconds = time.monotonic() - t0
        if r.error is None:
            log.info("%s %s: %d written, %d missing at the exchange, %.1fs", symbol, tf,
                     r.written, r.exchange_missing, r.seconds)
        return r

    def _report(self, symbol: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(symbol, done, total)
