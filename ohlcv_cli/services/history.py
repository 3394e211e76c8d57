"""Filling history: the one road that `backfill`, `gaps repair` and `ohlcv run`'s start-up take.

Not a service of its own (it is not in the import contract's list of independent services): it is
the use case those services share. `FillHistory.run` takes each symbol's missing ranges once (the
store's holes less the ranges the exchange confirmed empty, `find_missing`), takes what it can
from the archive's whole months and days, then the rest from REST with pages in flight under the
fetcher's one weight budget (services.paging), writes each symbol's pages in order, records the
ranges the exchange has no candles for, and reports progress through the callback it is given.

One run fills one price series (trade, mark, index, premium) of its symbols. A futures contract's
window is first clipped to its trading span (core.window.trading_window, from the fetcher's
trading_span): nothing is fetched at or after a delivery, and the head before a listing inside the
window is recorded as empty at the exchange without a request, as a spot market's time before
its listing ends up recorded once REST has found it empty.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.markets import DEFAULT_PRICE
from ohlcv_cli.core.ports import CandleRepository, ExchangeGapRepository, Fetcher
from ohlcv_cli.core.ranges import Range, clip, count, merge, subtract
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.window import trading_window
from ohlcv_cli.services.paging import Job, PagedFetch

if TYPE_CHECKING:
    from ohlcv_cli.services.archive import ArchivePass, ArchiveSymbolResult

log = logging.getLogger(__name__)

# progress(symbol, candles done, candles to do); file progress: (symbol, files done, files to do)
Progress = Callable[[str, int, int], None]

# Candles per missing_ranges call. A complete chunk costs one count over the primary key; a chunk
# with a hole also costs a window function, over this chunk only rather than the whole history
# (measured on 20 symbols x 1 year of 1m candles: about 1.5 s instead of 2-3 s).
CHUNK = 65_536


@dataclass
class Missing:
    """What a symbol lacks in [start, end): `ranges` to fetch, `known` empty at the exchange."""

    ranges: list[Range]
    known: list[Range]  # recorded exchange gaps, clipped to the window
    expected: list[Range]  # the window less `known`: where candles should be


def find_missing(repo: CandleRepository, gaps: ExchangeGapRepository | None, exchange: str,
                 symbol: str, tf: Timeframe, start: int, end: int, *, chunk: int = CHUNK,
                 price: str = DEFAULT_PRICE) -> Missing:
    """The store's holes in [start, end) of one price series without the ranges known empty at
    the exchange, asked one chunk of the expected grid at a time (each should be complete: the
    count fast path)."""
    known = [] if gaps is None or start >= end else clip(
        gaps.exchange_gaps(exchange, symbol, tf.name, start, end, price=price), start, end)
    expected = subtract([(start, end)], known) if start < end else []
    ranges: list[Range] = []
    step = max(1, chunk) * tf.ms
    for a, b in expected:
        for c in range(a, b, step):
            ranges.extend(repo.missing_ranges(exchange, symbol, tf, c, min(b, c + step),
                                              price=price))
    return Missing(merge(ranges), known, expected)  # a range cut by a chunk is one range again


@dataclass
class SymbolResult:
    symbol: str
    start: int  # the window, clipped to the symbol's trading span (a listing, a delivery)
    end: int
    price: str = DEFAULT_PRICE
    missing: int = 0  # candles the store lacked in the window before this run
    fetched: int = 0
    written: int = 0
    exchange_missing: int = 0  # candles the exchange has none for (maintenance, before listing)
    seconds: float = 0.0
    error: str | None = None
    stopped: bool = False  # `stop` was set before the window was filled
    ranges: list[Range] = field(default_factory=list)  # the missing ranges before this run
    empty: list[Range] = field(default_factory=list)  # confirmed empty by this run, recorded
    # the archive pass (services.archive), when the source is auto or archive
    from_archive: int = 0  # of `written`, the candles from archive files
    archive_files: int = 0
    rejected_checksum: int = 0  # files that failed their CHECKSUM (or were unreadable) twice
    rejected_vs_rest: int = 0  # files the spot-check against REST disagreed with
    left_missing: int = 0  # --source archive: candles the archive could not supply
    archive: "ArchiveSymbolResult | None" = None


class FillHistory:
    """`source`: `auto` (the archive, then REST for the rest), `rest`, or `archive` (what the
    archive cannot supply stays missing, counted in `left_missing`). Without an archive pass every
    source is `rest`. `in_flight` REST pages at once across symbols; 1 is the sequential road:
    each symbol's pages one after another, `concurrency` symbols at once."""

    def __init__(self, fetcher: Fetcher, repo: CandleRepository,
                 gaps: ExchangeGapRepository | None, *, archive: "ArchivePass | None" = None,
                 in_flight: int = 16, concurrency: int = 4, batch_size: int = 10_000,
                 stop: threading.Event | None = None, progress: Progress | None = None,
                 file_progress: Progress | None = None, chunk: int = CHUNK) -> None:
        self.fetcher, self.repo, self.gaps, self.archive = fetcher, repo, gaps, archive
        self.in_flight, self.concurrency = max(1, in_flight), max(1, concurrency)
        self.batch_size = batch_size
        self.stop = stop
        self.progress, self.file_progress = progress, file_progress
        self.chunk = chunk

    def missing(self, symbol: str, tf: Timeframe, start: int, end: int,
                price: str = DEFAULT_PRICE) -> Missing:
        return find_missing(self.repo, self.gaps, self.fetcher.exchange_id, symbol, tf, start, end,
                            chunk=self.chunk, price=price)

    def run(self, symbols: Sequence[str], tf: Timeframe, start: int, end: int, *,
            source: str = "auto", tag: str = "backfill", settled: int | None = None,
            price: str = DEFAULT_PRICE) -> list[SymbolResult]:
        """Fill [start, end) of the `price` series of every symbol; one result per symbol, in
        order. `tag` is the candles' source column for REST rows; `settled`: the exchange's last
        settled close (asked if not given)."""
        results = [SymbolResult(s, start, end, price) for s in symbols]
        for r in results:
            self._clip(r, tf, settled)
            self._take_missing(r, tf)
        base: dict[str, int] = {}
        if self.archive is not None and source != "rest":
            base = self._archive_pass(results, tf, price)
        if source == "archive" and self.archive is not None:
            for r in results:
                if r.error is None:
                    r.left_missing = count(tf, self.missing(r.symbol, tf, r.start, r.end,
                                                            price).ranges)
            return results
        self._rest_pass(results, tf, tag, settled, base, price)
        return results

    # --- the parts of run ---------------------------------------------------------------------
    def _clip(self, r: SymbolResult, tf: Timeframe, settled: int | None) -> None:
        """The window within the symbol's trading span; a head before its listing is recorded
        empty at the exchange (it is in the past: no candle can appear there)."""
        try:
            span = self.fetcher.trading_span(r.symbol)
        except OhlcvError as exc:
            r.error = str(exc)
            return
        window = r.start, r.end
        r.start, r.end = trading_window(tf, r.start, r.end, span)
        head = (window[0], r.start) if r.start > window[0] else None
        if head is None or self.gaps is None:
            return
        if settled is not None and head[1] > settled:
            return
        try:
            known = self.gaps.exchange_gaps(self.fetcher.exchange_id, r.symbol, tf.name,
                                            *head, price=r.price)
            new = subtract([head], known)
            if new:
                self.gaps.record_exchange_gaps(self.fetcher.exchange_id, r.symbol, tf.name,
                                               new, price=r.price)
            r.empty.extend(new)
            r.exchange_missing += count(tf, new)
        except OhlcvError as exc:
            r.error = str(exc)

    def _take_missing(self, r: SymbolResult, tf: Timeframe) -> None:
        if r.error is None:
            try:
                r.ranges = self.missing(r.symbol, tf, r.start, r.end, r.price).ranges
            except OhlcvError as exc:
                r.error = str(exc)
        r.missing = count(tf, r.ranges)

    def _archive_pass(self, results: list[SymbolResult], tf: Timeframe,
                      price: str) -> dict[str, int]:
        """Whole months and days from the archive; returns the candles each symbol got there
        (the REST pass's progress starts from them)."""
        archived: dict[str, int] = {}

        def on_file(symbol: str, done: int, total: int, files_done: int, files: int) -> None:
            archived[symbol] = done
            self._report(symbol, done, total)
            if self.file_progress is not None:
                self.file_progress(symbol, files_done, files)

        got = self.archive.run(tf, {r.symbol: r.ranges for r in results if r.error is None},
                               progress=on_file, price=price)
        for r in results:
            a = got.get(r.symbol)
            if a is None:
                continue
            r.archive = a
            r.written += a.candles
            r.fetched += a.candles
            r.from_archive, r.archive_files = a.candles, a.files
            r.rejected_checksum, r.rejected_vs_rest = a.rejected, a.disagreed
            r.seconds += a.seconds
            r.error = r.error or a.error
        return archived

    def _rest_pass(self, results: list[SymbolResult], tf: Timeframe, tag: str,
                   settled: int | None, base: dict[str, int], price: str) -> None:
        """What is still missing (the store asked again, after the archive), from REST."""
        jobs = []
        for r in results:
            ranges = r.ranges if r.archive is None else []
            if r.archive is not None and r.error is None:
                try:
                    ranges = self.missing(r.symbol, tf, r.start, r.end, price).ranges
                except OhlcvError as exc:
                    r.error = str(exc)
            jobs.append(Job(r.symbol, ranges, error=r.error))

        def on_rest(symbol: str, done: int, total: int) -> None:
            b = base.get(symbol, 0)
            self._report(symbol, b + done, b + total)

        sequential = self.in_flight == 1
        PagedFetch(self.fetcher, self.repo, self.gaps,
                   in_flight=self.concurrency if sequential else self.in_flight,
                   per_symbol=1 if sequential else None, batch_size=self.batch_size,
                   progress=on_rest, stop=self.stop).fill(jobs, tf, tag, settled=settled,
                                                          price=price)
        for r, job in zip(results, jobs):
            r.fetched += job.fetched
            r.written += job.written
            r.exchange_missing += job.exchange_missing
            r.empty = merge(r.empty + job.empty)
            r.stopped = job.stopped
            r.seconds += job.seconds
            r.error = r.error or job.error

    def _report(self, symbol: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(symbol, done, total)
