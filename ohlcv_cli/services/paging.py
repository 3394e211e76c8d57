"""REST backfill with many requests in flight, across and within symbols.

Every symbol's missing ranges are cut into fixed slices of one page ([t, t + 1000 × timeframe)),
which are independent, and up to `in_flight` slices are fetched at once by one shared pool; the
fetcher's shared weight budget paces them, so over a real network (50-250 ms a request) the budget,
not the latency, bounds the rate. Each symbol's slices reach the writer in order (one fetched
ahead waits for those before it), through one buffer of `batch_size` candles: memory stays bounded
by 2 x in_flight pages + batch_size candles whatever the window. A crash leaves each symbol's store
complete up to some point and its missing ranges whole; the next run's missing-range computation
finds them and fetches them again with as few requests as ever. Ranges the exchange has no candles
for are recorded per symbol only after all of its slices are stored.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.ports import CandleRepository, ExchangeGapRepository, Fetcher
from ohlcv_cli.core.ranges import Range, subtract, uncovered
from ohlcv_cli.core.timeframes import Timeframe

log = logging.getLogger(__name__)

PAGE = 1000


def slices(tf: Timeframe, ranges: Sequence[Range], page: int = PAGE) -> Iterator[Range]:
    step = page * tf.ms
    for a, b in ranges:
        for t in range(a, b, step):
            yield t, min(b, t + step)


@dataclass
class Job:
    """One symbol's ranges to fill, and what filling them did."""

    symbol: str
    ranges: list[Range]
    missing: int = 0  # candles in the ranges
    fetched: int = 0
    written: int = 0
    exchange_missing: int = 0  # candles the exchange had none for
    empty: list[Range] = field(default_factory=list)  # those, as ranges (settled ones only)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class _Sym:
    result: Job
    ranges: list[Range]
    outstanding: int = 0
    exhausted: bool = False
    done: int = 0
    empty: list[Range] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    closed: bool = False
    next_seq: int = 0  # the next slice to hand to the writer: slices are written in order
    held: dict = field(default_factory=dict)  # slices fetched ahead of next_seq


class PagedFetch:
    def __init__(self, fetcher: Fetcher, repo: CandleRepository, gaps: ExchangeGapRepository | None, *,
                 in_flight: int = 16, batch_size: int = 10_000,
                 progress: Callable[[str, int, int], None] | None = None, page: int = PAGE,
                 stop: threading.Event | None = None) -> None:
        self.stop = stop  # set: no new page is asked for; the pages at hand are written
        self.fetcher = fetcher
        self.repo = repo
        self.gaps = gaps
        self.in_flight = max(1, in_flight)
        self.batch_size = batch_size
        self.progress = progress
        self.page = page

    def run(self, results: Sequence, tf: Timeframe, source: str) -> None:
        """Backfill: fill each SymbolResult (symbol, start, end set) in place, from the store's
        missing ranges in its window less the ranges known empty at the exchange."""
        exchange = self.fetcher.exchange_id
        jobs: list[Job] = []
        for r in results:
            try:
                ranges = self.repo.missing_ranges(exchange, r.symbol, tf, r.start, r.end)
                if self.gaps is not None:
                    known = self.gaps.exchange_gaps(exchange, r.symbol, tf.name, r.start, r.end)
                    ranges = subtract(ranges, known)
                jobs.append(Job(r.symbol, ranges))
            except OhlcvError as exc:
                log.debug("%s: %s", r.symbol, exc)
                jobs.append(Job(r.symbol, [], error=str(exc)))
        self.fill(jobs, tf, source)
        for r, job in zip(results, jobs):
            r.missing, r.fetched, r.written = job.missing, job.fetched, job.written
            r.exchange_missing, r.seconds = job.exchange_missing, job.seconds
            if job.error is not None:
                r.error = job.error

    def fill(self, jobs: Sequence[Job], tf: Timeframe, source: str, *,
             settled: int | None = None) -> None:
        """Fetch every job's ranges with pages in flight; each job is filled in place. A range
        the fetch covered without a candle, ending by `settled` (the exchange's last settled
        close, asked once if not given), is recorded empty at the exchange."""
        self._tf = tf
        syms: list[_Sym] = []
        for job in jobs:
            job.missing = sum(tf.count(a, b) for a, b in job.ranges)
            syms.append(_Sym(job, job.ranges if job.error is None else []))
            self._report(job.symbol, 0, job.missing)
        # symbol after symbol, so that each symbol's slices are in flight together
        work = ((i, j, a, b) for i, s in enumerate(syms)
                for j, (a, b) in enumerate(slices(tf, s.ranges, self.page)))
        buffer: dict[int, list[Candle]] = {}
        if settled is None:
            settled = self.fetcher.closed_end(tf)
        # Slices reach the writer in order, so a crash leaves each symbol's missing ranges whole
        # (one resume request per page, no holes); slices fetched ahead wait, at most in_flight.
        held = [0]
        with ThreadPoolExecutor(self.in_flight, thread_name_prefix="page") as pool:
            pending: dict[Future, tuple[int, int, int, int]] = {}

            def refill() -> None:
                while len(pending) < self.in_flight and len(pending) + held[0] < 2 * self.in_flight:
                    item = next(work, None)
                    if item is not None and self.stop is not None and self.stop.is_set():
                        r = syms[item[0]].result
                        if r.error is None:
                            r.error = "stopped before the end of the window"
                        continue
                    upto = len(syms) if item is None else item[0]
                    for s in syms[:upto]:
                        s.exhausted = True
                    if item is None:
                        return
                    i, j, a, b = item
                    s = syms[i]
                    if s.result.error is not None:
                        continue
                    s.outstanding += 1
                    pending[pool.submit(self._fetch, s.result.symbol, tf, a, b, source)] = item

            refill()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i, j, a, b = pending.pop(fut)
                    s = syms[i]
                    r = s.result
                    try:
                        page = fut.result()
                    except OhlcvError as exc:
                        if r.error is None:
                            r.error = str(exc)
                            log.debug("%s: %s", r.symbol, exc)
                        page = None
                    if r.error is not None:
                        s.outstanding -= 1 + len(s.held)
                        held[0] -= len(s.held)
                        s.held.clear()
                        continue
                    r.fetched += len(page)
                    r.exchange_missing += tf.count(a, b) - len(page)
                    s.empty.extend(g for g in uncovered(tf, a, b, [c.open_time for c in page])
                                   if g[1] <= settled)
                    s.done += tf.count(a, b)
                    self._report(r.symbol, s.done, r.missing)
                    s.held[j] = page
                    held[0] += 1
                    while s.next_seq in s.held:
                        buffer.setdefault(i, []).extend(s.held.pop(s.next_seq))
                        s.next_seq += 1
                        s.outstanding -= 1
                        held[0] -= 1
                    if sum(len(v) for v in buffer.values()) >= self.batch_size:
                        self._flush(buffer, syms)
                refill()
                if any(self._complete(s) for s in syms):
                    self._flush(buffer, syms)
        for s in syms:
            s.exhausted = True
        self._flush(buffer, syms)
        for s in syms:
            self._close(s, tf)

    @staticmethod
    def _complete(s: _Sym) -> bool:
        return s.exhausted and s.outstanding == 0 and not s.closed

    def _fetch(self, symbol: str, tf: Timeframe, a: int, b: int, source: str) -> list[Candle]:
        out: list[Candle] = []
        for page in self.fetcher.fetch_range(symbol, tf, a, b, source):
            out.extend(page)
        return out

    def _flush(self, buffer: dict[int, list[Candle]], syms: list[_Sym]) -> None:
        """Write the buffered candles, one upsert per symbol (so each count is exact); then close
        the symbols whose every slice is written."""
        for i, rows in list(buffer.items()):
            r = syms[i].result
            if rows and r.error is None:
                try:
                    r.written += self.repo.upsert(rows, expect_new=True)
                except OhlcvError as exc:
                    r.error = str(exc)
                    log.debug("%s: %s", r.symbol, exc)
            del buffer[i]
        for s in syms:
            if self._complete(s):
                self._close(s, self._tf)

    def _close(self, s: _Sym, tf: Timeframe) -> None:
        if s.closed:
            return
        s.closed = True
        r = s.result
        if r.error is None and self.gaps is not None and s.empty:
            # recorded after the candles around them are stored: a rerun skips them
            try:
                self.gaps.record_exchange_gaps(self.fetcher.exchange_id, r.symbol, tf.name, s.empty)
            except OhlcvError as exc:
                r.error = str(exc)
        r.empty = list(s.empty) if r.error is None else []
        r.seconds = time.monotonic() - s.t0
        log.info("%s %s: %d written, %d missing at the exchange, %.1fs", r.symbol, tf, r.written,
                 r.exchange_missing, r.seconds)

    def _report(self, symbol: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(symbol, done, total)
