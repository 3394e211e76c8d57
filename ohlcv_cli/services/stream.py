"""Stream: fetch each candle as it closes and hand it to a sink (Kafka, or the database).

One stream serves one price series (`price`: trade, or a contract's mark, index or premium
candles) of symbols of any family. Per symbol a watermark (the next open time to fetch) only
moves past candles the sink has confirmed, so a slow cycle, an exchange error, a broker outage or a restart never loses a candle:
the next cycle fetches everything from the watermark to the last closed candle.

With `funding` (perpetuals: services.live_funding, its symbols polled over REST) each
settlement is confirmed over REST and handed to the sink too, between the candle cycles.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ohlcv_cli.core.candle import Candle, seconds_since_close
from ohlcv_cli.core.errors import BadSymbol, BrokerUnavailable, ExchangeUnavailable, StorageError
from ohlcv_cli.core.halts import HaltedSymbols
from ohlcv_cli.core.outage import OutageLog
from ohlcv_cli.core.ports import CandleRepository, CandleSink, Fetcher, Metrics
from ohlcv_cli.core.timeframes import DAY_MS, Timeframe
from ohlcv_cli.core.timeutil import iso

log = logging.getLogger(__name__)

# A lost broker is seen within a second and the client reconnects on its own: retry publishing
# often, so candles flow again within seconds of the broker's return.
SINK_RETRY_MAX_S = 1.0


@dataclass
class CycleReport:
    cycle: int
    candles: int = 0
    behind: int = 0  # symbols whose newest closed candle is not there yet
    seconds: float = 0.0
    error: str | None = None
    sink_down: bool = False  # the error is the sink's (the broker, the database)


@dataclass
class StreamState:
    watermarks: dict[str, int] = field(default_factory=dict)
    cycles: int = 0
    published: int = 0


class Stream:
    def __init__(
        self,
        fetcher: Fetcher,
        sink: CandleSink,
        symbols: Sequence[str],
        tf: Timeframe,
        *,
        repo: CandleRepository | None = None,
        delay_s: float = 1.0,
        max_catchup_ms: int = DAY_MS,
        workers: int = 8,
        retry_s: float = 0.25,
        price: str = "trade",
        metrics: Metrics | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        funding=None,
    ) -> None:
        self.fetcher, self.sink, self.repo = fetcher, sink, repo
        self.symbols = list(symbols)
        self.tf = tf
        self.price = price
        self.delay_ms = int(delay_s * 1000)
        self.max_catchup_ms = max_catchup_ms
        self.workers = max(1, min(workers, len(self.symbols)))
        self.retry_s = retry_s
        self.metrics = metrics or Metrics()
        self.stop = stop or threading.Event()
        self._sleep = sleep or self.stop.wait
        self.state = StreamState()
        self.funding = funding  # LiveFunding: settlements over REST, between the cycles
        self._funding_pending: set[Future] = set()  # its fetches in the pool
        self.halts = HaltedSymbols(fetcher, self.tf)
        # WsStream reports its sink's outages here too
        self.outage = OutageLog(log, getattr(sink, "name", "the sink"))

    # --- start --------------------------------------------------------------------------------
    def _last_closed_end(self) -> int:
        """The boundary up to which candles are final: closed and `delay` old on the exchange clock."""
        return self.tf.floor(self.fetcher.now_ms() - self.delay_ms)

    def init_watermarks(self) -> dict[str, int]:
        """Resume after the newest stored candle, at most `max_catchup` back; with nothing
        stored, start with the last closed candle."""
        self.fetcher.check_symbols(self.symbols)
        end = self._last_closed_end()
        floor = self.tf.ceil(end - self.max_catchup_ms)
        for s in self.symbols:
            latest = None
            if self.repo is not None:
                latest = self.repo.latest_open_time(self.fetcher.exchange_id, s, self.tf.name,
                                                    **self.priced)
            start = end - self.tf.ms if latest is None else max(latest + self.tf.ms, floor)
            if latest is not None and latest + self.tf.ms < floor:
                log.warning("%s %s: %s to %s is older than the maximum catch-up and is left to "
                            "`ohlcv backfill` or `ohlcv gaps repair`", s, self.tf,
                            iso(latest + self.tf.ms), iso(floor))
            self.state.watermarks[s] = start
            log.info("%s %s%s: streaming from %s%s", s, self.tf,
                     "" if self.price == "trade" else f" {self.price}", iso(start),
                     "" if latest is None else f" (newest stored {iso(latest)})")
        return self.state.watermarks

    @property
    def priced(self) -> dict:
        """The keyword naming the price series, for the fetcher and the repository (none for
        trade candles: every spot code path keeps its call)."""
        return {} if self.price == "trade" else {"price": self.price}

    def fetch(self, symbol: str, start: int, end: int) -> list[Candle]:
        """The candles of [start, end) over REST, of this stream's price series."""
        return [c for page in self.fetcher.fetch_range(symbol, self.tf, start, end, "stream",
                                                       **self.priced)
                for c in page]

    # --- cycles -------------------------------------------------------------------------------
    def _fetch(self, symbol: str, end: int) -> list[Candle]:
        start = self.state.watermarks[symbol]
        if start >= end:
            return []
        return self.fetch(symbol, start, end)

    def cycle(self, pool: ThreadPoolExecutor) -> CycleReport:
        """Fetch everything from each watermark to the last closed candle; publish; advance."""
        self.state.cycles += 1
        report = CycleReport(self.state.cycles)
        t0 = time.monotonic()
        end = self._last_closed_end()
        futures = {s: pool.submit(self._fetch, s, end) for s in self.symbols if self.halts.due(s)}
        for symbol, fut in futures.items():
            try:
                candles = fut.result()
            except BadSymbol as exc:  # -1121: delisted while streaming; the others go on
                self.halts.halt(symbol, str(exc))
                continue
            except ExchangeUnavailable as exc:
                self.metrics.error("exchange")
                report.error = str(exc)
                continue
            self.halts.fetched(symbol, bool(candles))
            if candles:
                self.metrics.fetched(symbol, len(candles))
                try:
                    self.sink.publish(candles)
                except (BrokerUnavailable, StorageError) as exc:
                    self.metrics.error("broker" if isinstance(exc, BrokerUnavailable) else "storage")
                    report.error, report.sink_down = str(exc), True
                    break  # the sink is down: nothing else will get through this cycle
                self.metrics.published(symbol, len(candles))
                self.state.watermarks[symbol] = candles[-1].open_time + self.tf.ms
                report.candles += len(candles)
            if self.state.watermarks[symbol] >= end:
                self.halts.caught_up(symbol)
            elif not self.halts.late(symbol):
                report.behind += 1
        self.state.published += report.candles
        report.seconds = time.monotonic() - t0
        return report

    def run(self, max_cycles: int | None = None) -> StreamState:
        """Cycle at each close plus the delay until `stop` is set (finishing the cycle at hand)."""
        if not self.state.watermarks:
            self.init_watermarks()
        if self.funding is not None:
            self.funding.start()
        backoff = 0.5
        with ThreadPoolExecutor(self.workers, thread_name_prefix="stream") as pool:
            while not self.stop.is_set():
                report = self.cycle(pool)
                self._funding_turn(pool)
                lag_s = (self.fetcher.now_ms() - self._last_closed_end()) / 1000
                if report.error:  # one line when an outage starts, not one per retry
                    self.outage.failed(report.error, f"retry in {backoff:.1f}s")
                else:
                    self.outage.ok()
                    log.info("cycle %d: %d candles published, %d symbols waiting, %.3fs, "
                             "lag %.2fs", report.cycle, report.candles, report.behind,
                             report.seconds, lag_s)
                if max_cycles is not None and self.state.cycles >= max_cycles:
                    break
                if report.error:
                    # exchange or sink down: back off, then retry from the same watermarks
                    self._idle(pool, backoff)
                    backoff = min(backoff * 2, SINK_RETRY_MAX_S if report.sink_down else 30.0)
                    continue
                backoff = 0.5
                if report.behind:
                    # a closed candle the exchange does not have yet: retry shortly, never skip
                    next_due = self._due(self._last_closed_end() + self.tf.ms)
                    if next_due > self.retry_s:
                        self._idle(pool, self.retry_s)
                        continue
                self._idle(pool, max(0.0, self._due(self._last_closed_end() + self.tf.ms)))
        return self.state

    def _funding_turn(self, pool: ThreadPoolExecutor) -> None:
        """Take the answers of the funding fetches that are done, start those that are due,
        publish; never waits for a fetch (a candle cycle is never held up by funding)."""
        f = self.funding
        if f is None:
            return
        done = {x for x in self._funding_pending if x.done()}
        self._funding_pending -= done
        for fut in done:
            f.take(fut.result())
        self._funding_pending.update(pool.submit(f.fetch, *d) for d in f.due())
        if f.publish() is not None:  # the sink is down: kept, published on a later turn
            self.metrics.error("broker")

    def _idle(self, pool: ThreadPoolExecutor, seconds: float) -> None:
        """Sleep `seconds` (until the next cycle), taking funding answers as they come and
        starting funding fetches as they fall due."""
        until = time.monotonic() + seconds
        while self.funding is not None and not self.stop.is_set():
            left = until - time.monotonic()
            wake = self.funding.wake_in()
            wake = left if wake is None else min(wake, left)
            if left <= 0 or (wake >= left and not self._funding_pending):
                break
            if self._funding_pending:  # an answer wakes us; the stop is seen within 0.5 s
                wait(self._funding_pending, timeout=max(0.0, min(wake, 0.5)),
                     return_when=FIRST_COMPLETED)
            else:
                self._sleep(max(0.0, wake))
            if not self.stop.is_set():
                self._funding_turn(pool)
        self._sleep(max(0.0, until - time.monotonic()))

    def _due(self, boundary: int) -> float:
        """Seconds until `boundary` plus the delay, on the exchange's clock."""
        return (boundary + self.delay_ms - self.fetcher.now_ms()) / 1000


class RepositorySink:
    """The sink of `ohlcv run` without Kafka: candles go straight into the database."""

    name = "database"

    def __init__(self, repo: CandleRepository, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time, funding=None) -> None:
        self.repo = repo
        self.funding = funding  # the funding repository (store(settlements)), for perpetuals
        self.metrics = metrics or Metrics()
        self._clock = clock

    def publish(self, candles, fetched_at: int | None = None) -> int:
        candles = list(candles)
        written = self.repo.upsert(candles)
        now = self._clock()
        for seconds in seconds_since_close(candles, now):
            self.metrics.latency(seconds)
        self.metrics.stored(written)
        return len(candles)

    def publish_funding(self, settlements) -> int:
        settlements = list(settlements)
        if self.funding is not None and settlements:
            self.funding.store(settlements)
        return len(settlements)
