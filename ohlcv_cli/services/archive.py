"""The archive pass: what the store is missing, from Binance's public archive, verified.

Each missing range is cut into whole months (monthly files), whole days (daily files) and the rest
(core.archive.plan). A monthly file that is not published falls back to the month's daily files; a
daily file that is not published, a file rejected for its checksum (after one retry) and a file the
spot-check against REST disagrees with are simply not written. The REST pass that runs next
(services.history) computes the missing ranges again from the store, so whatever the archive did not
supply, and only that, comes from REST, and an interrupted run resumes exactly.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ohlcv_cli.core.archive import (
    ArchiveDisagrees, ArchiveError, ArchiveMissing, ArchiveRejected, ArchiveSource,
    ArchiveUnavailable, ArchiveWriter, Period, SpotCheck, plan,
)
from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.markets import DEFAULT_PRICE, market_of
from ohlcv_cli.core.ports import Fetcher
from ohlcv_cli.core.ranges import Range, count
from ohlcv_cli.core.timeframes import PAGE, Timeframe

log = logging.getLogger(__name__)

SPOT_CHECK = PAGE  # candles compared with REST per file: one request (a futures page: 499)

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
    market_id: str  # the id its files are filed under (index prices: the pair)
    family: str = "spot"
    price: str = DEFAULT_PRICE
    files_total: int = 0
    files_done: int = 0
    done: int = 0
    t0: float = field(default_factory=time.monotonic)


class ArchivePass:
    def __init__(self, archive: ArchiveSource, writer: ArchiveWriter, fetcher: MarketFetcher, *,
                 verify: bool = True, concurrency: int = 4, rng: random.Random | None = None,
                 stop: threading.Event | None = None) -> None:
        self.stop = stop  # set: no new file is started; the files at hand are written whole
        self.archive = archive
        self.writer = writer
        self.fetcher = fetcher
        self.verify = verify
        self.concurrency = max(1, concurrency)
        self._progress: ArchiveProgress | None = None
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._lock = threading.Lock()
        self._down: str | None = None  # why the archive host is considered unreachable

    def run(self, tf: Timeframe, missing: dict[str, list[Range]],
            progress: ArchiveProgress | None = None, *, price: str = DEFAULT_PRICE
            ) -> dict[str, ArchiveSymbolResult]:
        """Fill what the archive has of each symbol's missing ranges of one price series; one
        result per symbol. `progress(symbol, candles done, candles to do, files done, files to
        do)`."""
        self._progress = progress
        now = self.fetcher.now_ms()
        states: dict[str, _State] = {}
        jobs: list[tuple[str, Period]] = []
        for symbol, ranges in missing.items():
            periods, _ = plan(tf, ranges, now)
            st = _State(ArchiveSymbolResult(symbol, count(tf, ranges)),
                        self._file_id(symbol, price) if periods else "",
                        market_of(symbol).family.name, price)
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

    def _file_id(self, symbol: str, price: str) -> str:
        """The id a series' files are filed under: the market's, or its pair for index prices."""
        mid = self.fetcher.market_id(symbol)
        return market_of(symbol).pair if price == "index" else mid

    # --- one file -------------------------------------------------------------------------------
    def _one(self, st: _State, tf: Timeframe, period: Period) -> list[Period]:
        """Fetch, verify and write one file; returns the days to try instead of a missing month."""
        r = st.result
        if self.stop is not None and self.stop.is_set() and r.error is None:
            r.error = "stopped before the end of the window"  # the rest stays missing: rerun
        if r.error is not None:
            return []
        written = 0
        try:
            if self._down is not None:  # the host is unreachable: every range goes to REST
                self._count(r, "unavailable")
                return []
            written = self._write(st, tf, period)
        except ArchiveMissing:
            self._count(r, "not_published")
            if period.kind == "monthly":
                log.info("%s %s: no monthly file for %s; trying its daily files", r.symbol, tf,
                         period.label)
                return period.days()
            log.info("%s %s: no daily file for %s; REST will fetch it", r.symbol, tf, period.label)
        except ArchiveError as exc:
            self._refused(r, tf, exc)
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

    def _write(self, st: _State, tf: Timeframe, period: Period) -> int:
        """The file, spot-checked unless verify is off, into the store; the rows written (none
        when the spot-check disagrees: its range comes from REST)."""
        r = st.result
        file = self.archive.fetch(st.market_id, tf.name, period, family=st.family,
                                  price=st.price)
        try:
            check = self._spot_check(st, tf, period) if self.verify else None
            written = self.writer.write_archive(file, self.fetcher.exchange_id, r.symbol, tf,
                                                check, price=st.price)
        except ArchiveDisagrees:
            self._count(r, "disagreed")
            log.warning("%s %s: archive file %s disagrees with the REST API; its range comes "
                        "from REST", r.symbol, tf, file.name)
            return 0
        finally:
            file.close()
        with self._lock:
            r.files += 1
            r.candles += written
        return written

    def _refused(self, r: ArchiveSymbolResult, tf: Timeframe, exc: ArchiveError) -> None:
        """A file not taken (its range comes from REST): counted, and said once."""
        if isinstance(exc, ArchiveRejected):
            self._count(r, "rejected")
            log.warning("%s %s: archive file rejected, its range comes from REST: %s",
                        r.symbol, tf, exc)
        elif isinstance(exc, ArchiveUnavailable):
            with self._lock:
                r.unavailable += 1
                first = self._down is None
                self._down = str(exc)
            if first:  # not a warning: nothing is lost, REST supplies it all
                log.info("%s; the archive is skipped for the rest of this run, REST fetches "
                         "what it would have supplied", exc)
        else:
            self._count(r, "unavailable")
            log.warning("%s %s: %s; the range comes from REST", r.symbol, tf, exc)

    def _count(self, r: ArchiveSymbolResult, what: str) -> None:
        with self._lock:
            setattr(r, what, getattr(r, what) + 1)

    def _spot_check(self, st: _State, tf: Timeframe, p: Period) -> SpotCheck:
        """One REST request of up to SPOT_CHECK candles (the family's page) at a random place in
        the file's range; the writer compares the file's rows there before it commits
        anything."""
        symbol = st.result.symbol
        n = tf.count(p.start, p.end)
        k = min(SPOT_CHECK, market_of(symbol).family.page_for(tf.ms), n)
        with self._rng_lock:
            offset = self._rng.randrange(0, n - k + 1)
        a = p.start + offset * tf.ms
        b = a + k * tf.ms
        rest = tuple((c.open_time, *c.values())
                     for page in self.fetcher.fetch_range(symbol, tf, a, b, "archive",
                                                          price=st.price)
                     for c in page)
        return SpotCheck(a, b, rest)

    def _report(self, st: _State) -> None:
        if self._progress is not None:
            self._progress(st.result.symbol, st.done, st.result.missing, st.files_done,
                           st.files_total)
