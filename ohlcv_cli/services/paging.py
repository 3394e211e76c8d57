"""The REST engine: every missing page of every symbol fetched with requests in flight.

Every symbol's missing ranges are cut into fixed slices of one page ([t, t + page × timeframe),
the page of the symbol's API family: 1000 on spot, 499 on futures, fewer on COIN-M where 200 days
would not hold them),
which are independent, and up to `in_flight` slices are fetched at once by one shared pool (at most
`per_symbol` of one symbol's; `in_flight=1` or `per_symbol=1` is the sequential road: each
symbol's pages one after another). The fetcher's shared weight budget paces them, so over a real
network (50-250 ms a request) the budget, not the latency, bounds the rate. Each symbol's slices
reach the writer in order (one fetched ahead waits for those before it), through one buffer of
`batch_size` candles: memory stays bounded by 2 x in_flight pages + batch_size candles whatever the
window. A crash leaves each symbol's store complete up to some point and its missing ranges whole;
the next run's missing-range computation finds them and fetches them again with as few requests
as ever. Ranges the exchange has no candles for are recorded per symbol only after all of its
slices are stored. Not a use case: services.history drives it.
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
from ohlcv_cli.core.markets import DEFAULT_PRICE, market_of
from ohlcv_cli.core.ports import CandleRepository, ExchangeGapRepository, Fetcher
from ohlcv_cli.core.ranges import Range, uncovered
from ohlcv_cli.core.timeframes import PAGE, Timeframe

log = logging.getLogger(__name__)


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
    stopped: bool = False  # `stop` was set before every range was fetched
    seconds: float = 0.0


@dataclass
class _Sym:
    """One symbol's progress through the engine."""

    job: Job
    todo: list[Range]  # its slices, oldest first
    price: str = DEFAULT_PRICE  # the price series filled
    next_slice: int = 0  # the next slice to send
    outstanding: int = 0  # slices sent and not yet written (in flight or held)
    next_seq: int = 0  # the next slice to hand to the writer: slices are written in order
    held: dict[int, list[Candle]] = field(default_factory=dict)  # fetched ahead of next_seq
    done: int = 0  # candles fetched or found empty (progress)
    empty: list[Range] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    closed: bool = False

    @property
    def failed(self) -> bool:
        return self.job.error is not None or self.job.stopped

    @property
    def exhausted(self) -> bool:
        return self.failed or self.next_slice >= len(self.todo)

    @property
    def complete(self) -> bool:
        return self.exhausted and self.outstanding == 0 and not self.closed


class PagedFetch:
    def __init__(self, fetcher: Fetcher, repo: CandleRepository, gaps: ExchangeGapRepository | None, *,
                 in_flight: int = 16, per_symbol: int | None = None, batch_size: int = 10_000,
                 progress: Callable[[str, int, int], None] | None = None, page: int = PAGE,
                 stop: threading.Event | None = None) -> None:
        self.stop = stop  # set: no new page is asked for; the pages at hand in order are written
        self.fetcher = fetcher
        self.repo = repo
        self.gaps = gaps
        self.in_flight = max(1, in_flight)
        self.per_symbol = max(1, per_symbol or self.in_flight)
        self.batch_size = batch_size
        self.progress = progress
        self.page = page
        self._lock = threading.Lock()

    def fill(self, jobs: Sequence[Job], tf: Timeframe, source: str, *,
             settled: int | None = None, price: str = DEFAULT_PRICE) -> None:
        """Fetch every job's ranges with pages in flight; each job is filled in place. A range
        the fetch covered without a candle, ending by `settled` (the exchange's last settled
        close, asked once if not given), is recorded empty at the exchange."""
        syms = [self._start(job, tf, price) for job in jobs]
        if settled is None and any(s.todo for s in syms):
            settled = self.fetcher.closed_end(tf)
        buffer: dict[int, list[Candle]] = {}
        with ThreadPoolExecutor(self.in_flight, thread_name_prefix="page") as pool:
            pending: dict[Future, tuple[int, int, Range]] = {}
            self._send(pool, pending, syms, tf, source)
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i, seq, rng = pending.pop(fut)
                    self._receive(syms[i], seq, rng, fut, tf, settled, buffer.setdefault(i, []))
                if sum(len(v) for v in buffer.values()) >= self.batch_size:
                    self._flush(buffer, syms, tf)
                self._send(pool, pending, syms, tf, source)
                if any(s.complete for s in syms):
                    self._flush(buffer, syms, tf)
        self._flush(buffer, syms, tf)
        for s in syms:
            self._close(s, tf)

    # --- the parts of fill ----------------------------------------------------------------------
    def _start(self, job: Job, tf: Timeframe, price: str) -> _Sym:
        job.missing = sum(tf.count(a, b) for a, b in job.ranges)
        todo = [] if job.error is not None else list(slices(tf, job.ranges,
                                                             self._page(job.symbol, tf)))
        self._report(job.symbol, 0, job.missing)
        return _Sym(job, todo, price)

    def _page(self, symbol: str, tf: Timeframe) -> int:
        """A slice is one request: the symbol's family page, or `page` if that is smaller."""
        return min(self.page, market_of(symbol).family.page_for(tf.ms))

    def _send(self, pool: ThreadPoolExecutor, pending: dict, syms: list[_Sym], tf: Timeframe,
              source: str) -> None:
        """Keep the pool full: symbol after symbol (so that one symbol's slices are in flight
        together), at most per_symbol of each, and at most in_flight slices fetched ahead of the
        writer; none once `stop` is set."""
        held = sum(len(s.held) for s in syms)
        for i, s in enumerate(syms):
            while (not s.exhausted and len(pending) < self.in_flight
                   and len(pending) + held < 2 * self.in_flight
                   and s.outstanding - len(s.held) < self.per_symbol):
                if self._stopping():
                    for rest in syms:
                        rest.job.stopped = rest.job.stopped or not rest.exhausted
                    return
                seq = s.next_slice
                s.next_slice += 1
                s.outstanding += 1
                a, b = s.todo[seq]
                pending[pool.submit(self._fetch, s, tf, a, b, source)] = (i, seq, (a, b))
            if len(pending) >= self.in_flight:
                return

    def _fetch(self, s: _Sym, tf: Timeframe, a: int, b: int, source: str
               ) -> tuple[list[Candle], bool]:
        """One slice, page by page (a worker thread); False when `stop` cut it short."""
        out: list[Candle] = []
        for page in self.fetcher.fetch_range(s.job.symbol, tf, a, b, source, price=s.price):
            out.extend(page)
            self._advance(s, len(page))
            if self._stopping():
                return out, False
        return out, True

    def _receive(self, s: _Sym, seq: int, rng: Range, fut: Future, tf: Timeframe,
                 settled: int, buffer: list[Candle]) -> None:
        """A slice is back: count it, note what the exchange has none of, and hand the symbol's
        slices that are now in order to the writer's buffer."""
        job = s.job
        try:
            page, whole = fut.result()
        except OhlcvError as exc:
            if job.error is None:
                job.error = str(exc)
                log.debug("%s: %s", job.symbol, exc)
            page, whole = None, False
        if job.error is not None:
            s.outstanding -= 1 + len(s.held)  # nothing more of this symbol is written
            s.held.clear()
            return
        a, b = rng
        job.fetched += len(page)
        if whole:
            job.exchange_missing += tf.count(a, b) - len(page)
            s.empty.extend(g for g in uncovered(tf, a, b, [c.open_time for c in page])
                           if g[1] <= settled)
            self._advance(s, tf.count(a, b) - len(page))
        else:
            job.stopped = True
        s.held[seq] = page
        while s.next_seq in s.held:
            buffer.extend(s.held.pop(s.next_seq))
            s.next_seq += 1
            s.outstanding -= 1
        if job.stopped and s.outstanding == len(s.held):  # a cut slice: what follows it waits
            s.outstanding -= len(s.held)
            s.held.clear()

    def _flush(self, buffer: dict[int, list[Candle]], syms: list[_Sym], tf: Timeframe) -> None:
        """Write the buffered candles, one upsert per symbol (so each count is exact); then close
        the symbols whose every slice is written."""
        for i, rows in list(buffer.items()):
            job = syms[i].job
            if rows and job.error is None:
                try:
                    job.written += self.repo.upsert(rows, expect_new=True)
                except OhlcvError as exc:
                    job.error = str(exc)
                    log.debug("%s: %s", job.symbol, exc)
            del buffer[i]
        for s in syms:
            if s.complete:
                self._close(s, tf)

    def _close(self, s: _Sym, tf: Timeframe) -> None:
        if s.closed:
            return
        s.closed = True
        job = s.job
        if not s.failed and self.gaps is not None and s.empty:
            # recorded after the candles around them are stored: a rerun skips them
            try:
                self.gaps.record_exchange_gaps(self.fetcher.exchange_id, job.symbol, tf.name,
                                               s.empty, price=s.price)
            except OhlcvError as exc:
                job.error = str(exc)
        job.empty = [] if s.failed else list(s.empty)
        if job.stopped:
            job.exchange_missing = 0  # not confirmed: the fetch did not cover the window
        job.seconds = time.monotonic() - s.t0
        if job.error is None:  # a failure is reported by the caller, from the result
            log.info("%s %s: %d written, %d missing at the exchange, %.1fs", job.symbol, tf,
                     job.written, job.exchange_missing, job.seconds)

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _advance(self, s: _Sym, n: int) -> None:
        with self._lock:
            s.done += n
            done = s.done
        self._report(s.job.symbol, done, s.job.missing)

    def _report(self, symbol: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(symbol, done, total)
