"""Backfill: fetch what the store is missing in a window, for several symbols at once."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.errors import ConfigError, OhlcvError
from ohlcv_cli.core.ports import CandleRepository, Fetcher, GapRepository
from ohlcv_cli.core.ranges import subtract, uncovered
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.timeutil import iso
from ohlcv_cli.services.paging import PagedFetch

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


def window(tf: Timeframe, now_ms: int, days: float | None, start: int | None, end: int | None
           ) -> tuple[int, int]:
    """[start, end): end is the current boundary (exclusive) unless given; start = end - days."""
    current = tf.floor(now_ms)
    if end is None:
        end = current
    else:
        if end > current:
            log.info("end %s is in the future; using the current boundary %s", iso(end), iso(current))
        end = min(tf.ceil(end), current)
    if start is None:
        if days is None or days <= 0:
            raise ConfigError("--days must be a positive number")
        start = end - int(days * 86_400_000)
    start = tf.ceil(start)
    if start >= end:
        raise ConfigError(f"empty window: start {iso(start)} is not before end {iso(end)}")
    return start, end


class Backfill:
    def __init__(self, fetcher: Fetcher, repo: CandleRepository, *, concurrency: int = 4,
                 batch_size: int = 10_000, progress: Progress | None = None,
                 gaps: GapRepository | None = None, in_flight: int = 1) -> None:
        self.fetcher = fetcher
        self.in_flight = in_flight  # > 1: pages in flight across symbols (services.paging)
        self.repo = repo
        self.gaps = gaps  # ranges the exchange confirmed empty: skipped, and learnt
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.progress = progress

    def run(self, symbols: Sequence[str], tf: Timeframe, *, days: float | None = None,
            start: int | None = None, end: int | None = None,
            source: str = "backfill") -> BackfillResult:
        self.fetcher.check_symbols(symbols)
        start, end = window(tf, self.fetcher.now_ms(), days, start, end)
        result = BackfillResult(tf.name, start, end)
        if self.in_flight > 1:
            result.symbols = [SymbolResult(s, start, end) for s in symbols]
            PagedFetch(self.fetcher, self.repo, self.gaps, in_flight=self.in_flight,
                       batch_size=self.batch_size, progress=self.progress).run(
                result.symbols, tf, source)
            return result
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
                known = self.gaps.exchange_gaps(exchange, symbol, tf.name, start, end)
                ranges = subtract(ranges, known)
            r.missing = sum(tf.count(a, b) for a, b in ranges)
            empty: list[tuple[int, int]] = []
            self._report(symbol, 0, r.missing)
            done = 0
            buffer: list[Candle] = []
            for a, b in ranges:
                got = 0
                times: list[int] = []
                for page in self.fetcher.fetch_range(symbol, tf, a, b, source):
                    buffer.extend(page)
                    got += len(page)
                    times.extend(c.open_time for c in page)
                    if len(buffer) >= self.batch_size:
                        r.written += self.repo.upsert(buffer, expect_new=True)
                        buffer.clear()
                    self._report(symbol, done + got, r.missing)
                r.fetched += got
                r.exchange_missing += tf.count(a, b) - got
                settled = self.fetcher.closed_end(tf)
                empty.extend(g for g in uncovered(tf, a, b, times) if g[1] <= settled)
                done += tf.count(a, b)
                self._report(symbol, done, r.missing)
            if buffer:
                r.written += self.repo.upsert(buffer, expect_new=True)
            if self.gaps is not None and empty:
                # recorded after the candles around them are stored: a rerun skips them
                self.gaps.record_exchange_gaps(exchange, symbol, tf.name, empty)
        except OhlcvError as exc:
            r.error = str(exc)
            log.error("%s: %s", symbol, exc)
        r.seconds = time.monotonic() - t0
        log.info("%s %s: %d written, %d missing at the exchange, %.1fs", symbol, tf,
                 r.written, r.exchange_missing, r.seconds)
        return r

    def _report(self, symbol: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(symbol, done, total)
