"""The archive pass: what the store is missing, from Binance's public archive, verified.

Each missing range is cut into whole months (monthly files), whole days (daily files) and the rest
(core.archive.plan). A monthly file that is not published falls back to the month's daily files; a
daily file that is not published, a file rejected for its checksum (after one retry) and a file the
spot-check against REST disagrees with are simply not written. The REST backfill that runs next
computes the missing ranges again from the store, so whatever the archive did not supply, and only
that, comes from REST, and an interrupted run resumes exactly.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from ohlcv_cli.core.archive import (
    ArchiveDisagrees, ArchiveError, ArchiveMissing, ArchiveRejected, ArchiveSource,
    ArchiveUnavailable, ArchiveWriter, Period, SpotCheck, plan,
)
from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.ports import Fetcher
from ohlcv_cli.core.ranges import Range, count, subtract
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.window import WindowSpec, window
from ohlcv_cli.services.backfill import Backfill, BackfillResult, Progress, SymbolResult
from ohlcv_cli.services.gaps import GapRepair, RepairReport, SymbolRepair

log = logging.getLogger(__name__)

SPOT_CHECK = 1000  # candles compared with REST per file: one request

# progress(symbol, candles done, candles to do, files done, files to do)
ArchiveProgress = Callable[[str, int, int, int, int], None]


class MarketFetcher(Fetcher, Protocol):
    def market_id(self, symbol: str) -> str:
        """The exchange's id of the symbol (BTC/USDT -> BTCUSDT)."""


@dataclass
class ArchiveSymbolResult:
    symbol: str
    missing: int = 0  # candles missing in the window before the pass
    files: int = 0  # files written
    candles: int = 0  # rows written from the archive
    not_published: int = 0  # 404 (a month falls back to its days; a day to REST)
    rejected: int = 0  # failed the checksum or could not be read, twice
    disagreed: int = 0  # the spot-check against REST found a difference
    unavailable: int = 0  # the archive host kept failing
    seconds: float = 0.0
    error: str | None = None

    @property
    def files_rejected(self) -> int:
        return self.rejected + self.disagreed


@dataclass
class _State:
    result: ArchiveSymbolResult
    market_id: str
    files_total: int = 0
    files_done: int = 0
    done: int = 0
    t0: float = field(default_factory=time.monotonic)


class ArchivePass:
    def __init__(self, archive: ArchiveSource, writer: ArchiveWriter, fetcher: MarketFetcher, *,
                 verify: bool = True, concurrency: int = 4,
                 progress: ArchiveProgress | None = None, rng: random.Random | None = None,
                 stop: threading.Event | None = None) -> None:
        self.stop = stop  # set: no new file is started; the files at hand are written whole
        self.archive = archive
        self.writer = writer
        self.fetcher = fetcher
        self.verify = verify
        self.concurrency = max(1, concurrency)
        self.progress = progress
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._lock = threading.Lock()
        self._down: str | None = None  # why the archive host is considered unreachable

    def run(self, tf: Timeframe, missing: dict[str, list[Range]]) -> dict[str, ArchiveSymbolResult]:
        """Fill what the archive has of each symbol's missing ranges; one result per symbol."""
        now = self.fetcher.now_ms()
        states: dict[str, _State] = {}
        jobs: list[tuple[str, Period]] = []
        for symbol, ranges in missing.items():
            periods, _ = plan(tf, ranges, now)
            st = _State(ArchiveSymbolResult(symbol, count(tf, ranges)),
                        self.fetcher.market_id(symbol) if periods else "")
            st.files_total = len(periods)
            states[symbol] = st
            jobs.extend((symbol, p) for p in periods)
            self._report(st)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="archive") as pool:
            pending: dict[Future, tuple[str, Period]] = {
                pool.submit(self._one, states[s], tf, p): (s, p) for s, p in jobs}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    symbol, period = pending.pop(fut)
                    st = states[symbol]
                    days = fut.result()
                    if days:  # an unpublished month: its days instead
                        with self._lock:
                            st.files_total += len(days)
                        for d in days:
                            pending[pool.submit(self._one, st, tf, d)] = (symbol, d)
        for st in states.values():
            st.result.seconds = time.monotonic() - st.t0
            r = st.result
            log.info("%s %s archive: %d files, %d candles; %d not published, %d rejected, "
                     "%d disagreed with REST", r.symbol, tf, r.files, r.candles, r.not_published,
                     r.rejected, r.disagreed)
        return {s: st.result for s, st in states.items()}

    # --- one file -------------------------------------------------------------------------------
    def _one(self, st: _State, tf: Timeframe, period: Period) -> list[Period]:
        """Fetch, verify and write one file; returns the days to try instead of a missing month."""
        r = st.result
        if self.stop is not None and self.stop.is_set() and r.error is None:
            r.error = "stopped before the end of the window"  # the rest stays missing: rerun
        if r.error is not None:
            return []
        if self._down is not None:  # the host is unreachable: every range goes to REST
            with self._lock:
                r.unavailable += 1
                st.files_done += 1
            self._report(st)
            return []
        written = 0
        try:
            file = self.archive.fetch(st.market_id, tf.name, period)
            try:
                check = self._spot_check(r.symbol, tf, period) if self.verify else None
                written = self.writer.write_archive(file, self.fetcher.exchange_id, r.symbol, tf,
                                                    check)
            finally:
                file.close()
            with self._lock:
                r.files += 1
                r.candles += written
        except ArchiveDisagrees:
            with self._lock:
                r.disagreed += 1
            log.warning("%s %s: archive file %s disagrees with the REST API; its range comes "
                        "from REST", r.symbol, tf, file.name)
        except ArchiveMissing:
            with self._lock:
                r.not_published += 1
            if period.kind == "monthly":
                log.info("%s %s: no monthly file for %s; trying its daily files", r.symbol, tf,
                         period.label)
                return period.days()
            log.info("%s %s: no daily file for %s; REST will fetch it", r.symbol, tf, period.label)
        except ArchiveRejected as exc:
            with self._lock:
                r.rejected += 1
            log.warning("%s %s: archive file rejected, its range comes from REST: %s",
                        r.symbol, tf, exc)
        except ArchiveUnavailable as exc:
            with self._lock:
                r.unavailable += 1
                first = self._down is None
                self._down = str(exc)
            if first:  # not a warning: nothing is lost, REST supplies it all
                log.info("%s; the archive is skipped for the rest of this run, REST fetches "
                            "what it would have supplied", exc)
        except ArchiveError as exc:
            with self._lock:
                r.unavailable += 1
            log.warning("%s %s: %s; the range comes from REST", r.symbol, tf, exc)
        except OhlcvError as exc:
            with self._lock:
                if r.error is None:
                    r.error = str(exc)
            log.debug("%s: %s", r.symbol, exc)
        finally:
            with self._lock:
                st.files_done += 1
                st.done += written
            self._report(st)
        return []

    def _spot_check(self, symbol: str, tf: Timeframe, p: Period) -> SpotCheck:
        """One REST request of up to SPOT_CHECK candles at a random place in the file's range;
        the writer compares the file's rows there before it commits anything."""
        n = tf.count(p.start, p.end)
        k = min(SPOT_CHECK, n)
        with self._rng_lock:
            offset = self._rng.randrange(0, n - k + 1)
        a = p.start + offset * tf.ms
        b = a + k * tf.ms
        rest = tuple((c.open_time, *c.values())
                     for page in self.fetcher.fetch_range(symbol, tf, a, b, "archive")
                     for c in page)
        return SpotCheck(a, b, rest)

    def _report(self, st: _State) -> None:
        if self.progress is not None:
            self.progress(st.result.symbol, st.done, st.result.missing, st.files_done,
                          st.files_total)


def missing_ranges(repo, gaps, exchange: str, symbol: str, tf: Timeframe, start: int, end: int
                   ) -> list[Range]:
    """What a backfill fetches: the store's holes without the ranges known empty at the exchange."""
    ranges = repo.missing_ranges(exchange, symbol, tf, start, end)
    if gaps is not None:
        ranges = subtract(ranges, gaps.exchange_gaps(exchange, symbol, tf.name, start, end))
    return ranges


def symbols_missing(repo, gaps, exchange: str, symbols: Sequence[str], tf: Timeframe, start: int,
                    end: int) -> dict[str, list[Range]]:
    return {s: missing_ranges(repo, gaps, exchange, s, tf, start, end) for s in symbols}


def backfill_from_sources(backfill: Backfill, archive: ArchivePass | None,
                          symbols: Sequence[str], tf: Timeframe, *, source: str = "auto",
                          days: float | None = None, start: int | None = None,
                          end: int | None = None, progress: Progress | None = None,
                          file_progress: Progress | None = None) -> BackfillResult:
    """`auto`: the archive pass, then the REST backfill on whatever is still missing; `rest`: the
    REST backfill alone; `archive`: the archive pass alone (what it cannot supply stays missing,
    counted in `left_missing`). One result: `written` counts both sources, `from_archive` the
    archive's part. `progress(symbol, done, total)` runs across both passes; `file_progress(symbol,
    files done, files to do)` counts the archive's files."""
    fetcher = backfill.fetcher
    if source == "rest" or archive is None:
        backfill.progress = progress
        return backfill.run(symbols, tf, days=days, start=start, end=end)
    fetcher.check_symbols(symbols)
    start, end = window(tf, fetcher.now_ms(), WindowSpec(days, start, end))
    missing = symbols_missing(backfill.repo, backfill.gaps, fetcher.exchange_id, symbols, tf,
                              start, end)
    archived: dict[str, int] = {}

    def on_archive(symbol: str, done: int, total: int, files_done: int, files: int) -> None:
        archived[symbol] = done
        if progress is not None:
            progress(symbol, done, total)
        if file_progress is not None:
            file_progress(symbol, files_done, files)

    def on_rest(symbol: str, done: int, total: int) -> None:
        base = archived.get(symbol, 0)
        if progress is not None:
            progress(symbol, base + done, base + total)

    archive.progress = on_archive
    results = archive.run(tf, missing)
    if source == "archive":
        out = BackfillResult(tf.name, start, end)
        still = symbols_missing(backfill.repo, backfill.gaps, fetcher.exchange_id, symbols, tf,
                                start, end)
        for sym in symbols:
            r = SymbolResult(sym, start, end, missing=count(tf, missing[sym]),
                             left_missing=count(tf, still[sym]))
            out.symbols.append(r)
    else:
        backfill.progress = on_rest
        out = backfill.run(symbols, tf, start=start, end=end)
    for r in out.symbols:
        a = results[r.symbol]
        r.missing = count(tf, missing[r.symbol])
        r.written += a.candles
        r.fetched += a.candles
        r.from_archive, r.archive_files = a.candles, a.files
        r.rejected_checksum, r.rejected_vs_rest = a.rejected, a.disagreed
        r.seconds += a.seconds
        r.error = r.error or a.error
    return out


def repair_from_sources(repair: GapRepair, archive: ArchivePass | None, symbols: Sequence[str],
                        tf: Timeframe, *, source: str = "auto", delay_ms: int = 1000,
                        days: float | None = None, start: int | None = None,
                        end: int | None = None) -> RepairReport:
    """`gaps repair` with sources: the archive pass over what the check finds missing, then the
    REST repair (or, for `archive`, the check again: what is still missing is reported). The
    report's `archive` maps each symbol to its archive pass."""
    fetcher = repair.fetcher
    if source == "rest" or archive is None:
        return repair.run(symbols, tf, delay_ms=delay_ms, days=days, start=start, end=end)
    fetcher.check_symbols(symbols)
    start, end = repair.check.window(tf, fetcher.now_ms(), delay_ms=delay_ms, days=days,
                                     start=start, end=end)
    end = min(end, fetcher.closed_end(tf))
    missing = {s: repair.check.symbol(s, tf, start, end).missing for s in symbols}
    results = archive.run(tf, missing)
    if source != "archive":
        report = repair.run(symbols, tf, delay_ms=delay_ms, start=start, end=end)
        for r in report.symbols:  # the report counts both passes
            a = results[r.symbol]
            r.missing, r.written, r.fetched = missing[r.symbol], r.written + a.candles, r.fetched + a.candles
            r.error = r.error or a.error
    else:
        report = RepairReport(fetcher.exchange_id, tf.name, start, end)
        for s in symbols:
            after = repair.check.symbol(s, tf, start, end)
            a = results[s]
            report.symbols.append(SymbolRepair(s, missing[s], a.candles, a.candles, [],
                                               after.missing, after.missing_candles, a.error))
    report.archive = results
    return report
