"""Consume: candles from Kafka into the database, each stored exactly once.

One upsert transaction per polled batch; offsets are committed only after the database commit
(at-least-once delivery + the idempotent upsert = stored once). A message that fails validation
(including what the schema cannot hold, a symbol the exchange does not list, an exchange this
deployment does not serve, a key that is not the symbol) goes to the dead-letter topic with its
reason and consumption goes on. While the database is down nothing is committed: the batch is
retried with backoff and nothing is lost. When the database rejects a batch (a value it cannot
hold), the batch is split in halves until the rejected rows are found: they go to the
dead-letter topic with the database's reason, the rest is stored, and the offsets move on.

Messages of schema_version 1 (spot trade candles) and 2 are read; each candle is stored in its own
price series (Candle.price). Other message types on the topic (core.message.register_type, e.g.
"funding") go to the store function given for their type in `handlers`, written after the
batch's candles, before the offsets are committed, with the same retry and dead-letter rules; a
registered type without a handler here is dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Collection, Mapping

from ohlcv_cli.core import message
from ohlcv_cli.core.candle import Candle, seconds_since_close
from ohlcv_cli.core.errors import (
    BrokerUnavailable, InvalidMessage, OhlcvError, StorageError, StorageRejected,
)
from ohlcv_cli.core.outage import OutageLog
from ohlcv_cli.core.ports import (
    CandleRepository, DeadLetters, MessageSource, Metrics, SymbolListing,
)

log = logging.getLogger(__name__)

# The broker client reconnects on its own (within a second): polling again soon after a lost
# broker costs nothing, and consuming resumes within seconds of the broker's return.
BROKER_RETRY_MAX_S = 1.0

Item = tuple[object, Candle]  # (the raw record, its candle)
Others = dict[str, list[tuple[object, object]]]  # type -> [(the raw record, its parsed item)]
# stores the parsed items of one message type in one transaction; returns rows written; raises
# StorageError (retried) or StorageRejected (the rows are dead-lettered, found by halving)
OtherStore = Callable[[list], int]


class Listing:
    """The exchange's symbol list as the consumer knows it: loaded at start and reloaded, at most
    once every `every_s`, when an unknown symbol appears (so a new listing gets stored).

    Loads run in a thread of their own and are waited for at most `wait_s`: an exchange that
    cannot be reached never holds up storing well-formed candles, which are then stored (the
    listing cannot say they are junk)."""

    def __init__(self, source: SymbolListing, *, every_s: float = 60.0, wait_s: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.every_s, self.wait_s = every_s, wait_s
        self._clock = clock
        self.symbols: set[str] | None = None
        self._last_ok = False
        self._attempt_at = float("-inf")
        self._thread: threading.Thread | None = None
        self._waited: threading.Thread | None = None
        self._error: OhlcvError | None = None
        self._unreachable = OutageLog(log, "the exchange's symbol list")
        self._families: set[str | None] = set()
        self._unlisted_families: set[str | None] = set()

    def start(self) -> None:
        self._reload()

    def _reload(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._attempt_at = self._clock()
        self._thread = threading.Thread(target=self._load, name="listing", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            symbols = set(self.source.listed_symbols())
        except OhlcvError as exc:
            self._last_ok, self._error = False, exc  # logged when a message needs the list
            return
        self._families = {message.market_name(s) for s in symbols}
        self.symbols, self._last_ok = symbols, True
        self._unreachable.ok()

    def _wait(self) -> None:
        """Wait for the load at hand, once: a hanging exchange costs one `wait_s` per load."""
        thread = self._thread
        if thread is not None and thread is not self._waited:
            self._waited = thread
            thread.join(self.wait_s)

    def listed(self, symbol: str) -> bool:
        """False only when the exchange's list, as fresh as the once-a-minute rule allows,
        does not have the symbol."""
        symbols = self.symbols
        if symbols is not None and symbol in symbols:  # the per-message fast path
            return True
        if symbols is not None and self._last_ok \
                and message.market_name(symbol) not in self._families:
            # a list without any market of the symbol's family (a spot-only listing and a
            # futures candle) cannot say: stored, said once per family
            family = message.market_name(symbol)
            if family not in self._unlisted_families:
                self._unlisted_families.add(family)
                log.info("the exchange's symbol list holds no %s markets: %s candles are "
                         "stored unchecked", family, family)
            return True
        self._wait()
        if self.symbols is not None and symbol in self.symbols:
            return True
        if self._clock() - self._attempt_at >= self.every_s:
            self._reload()
            self._wait()
        if self.symbols is None or not self._last_ok or (
                self._thread is not None and self._thread.is_alive()):
            # the exchange cannot say now: never hold up a well-formed candle
            self._unreachable.failed(self._error or "no answer yet",
                                     "symbols are not checked against it meanwhile")
            return True
        return symbol in self.symbols


@dataclass
class ConsumeStats:
    batches: int = 0
    messages: int = 0
    stored: int = 0  # rows written (new or changed)
    dead_lettered: int = 0
    db_retries: int = 0


class Consume:
    def __init__(
        self,
        source: MessageSource,
        repo: CandleRepository,
        dead_letters: DeadLetters,
        *,
        metrics: Metrics | None = None,
        stop: threading.Event | None = None,
        poll_timeout_ms: int = 500,
        max_backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        listing: SymbolListing | Listing | None = None,
        exchanges: Collection[str] | None = ("binance",),
        summary_every_s: float = 60.0,
        handlers: Mapping[str, OtherStore] | None = None,
    ) -> None:
        self.source, self.repo, self.dlq = source, repo, dead_letters
        # None: no symbol check (no exchange to ask); exchanges None: any exchange
        self.listing = Listing(listing) if listing is not None and not isinstance(
            listing, Listing) else listing
        self.exchanges = None if exchanges is None else frozenset(exchanges)
        self._db_outage = OutageLog(log, "database")
        self._broker_outage = OutageLog(log, "Kafka broker")
        self.metrics = metrics or Metrics()
        self.stop = stop or threading.Event()
        self.poll_timeout_ms = poll_timeout_ms
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self.stats = ConsumeStats()
        self.lag_every_s = 5.0
        self._lag_at = float("-inf")
        self._lag: int | None = None
        # one INFO line a minute (per batch: DEBUG); counts since the last line
        self.summary_every_s = summary_every_s
        self._summary_at = time.monotonic()
        self._window = ConsumeStats()
        self.handlers = dict(handlers or {})
        self._others: Others = {}  # filled by decode(), taken by _prepare()

    def decode(self, records: list) -> tuple[list[Item], list[tuple[object, str]]]:
        """(candles, (record, reason) of the invalid); messages of other registered types are
        set apart in self._others."""
        good: list[Item] = []
        bad: list[tuple[object, str]] = []
        exchanges = self.exchanges
        for r in records:
            try:
                candle, _ = message.decode(r.value)
            except InvalidMessage as exc:
                bad.append((r, str(exc)))
                continue
            except message.OtherMessageType as other:
                reason = self._other_problem(r, other)
                if reason is None:
                    self._others.setdefault(other.type, []).append((r, other.item))
                else:
                    bad.append((r, reason))
                continue
            if exchanges is not None and candle.exchange not in exchanges:
                bad.append((r, f"exchange {candle.exchange!r} is not served here "
                               f"({', '.join(sorted(exchanges))})"))
                continue
            if r.key != candle.symbol.encode():
                bad.append((r, f"message key {r.key!r} is not the symbol {candle.symbol}"))
                continue
            if self.listing is not None and not self.listing.listed(candle.symbol):
                bad.append((r, f"symbol {candle.symbol} is not listed by {candle.exchange}"))
                continue
            good.append((r, candle))
        return good, bad

    def _other_problem(self, r, other: "message.OtherMessageType") -> str | None:
        """Why a message of another type cannot be stored here, or None."""
        if other.type not in self.handlers:
            return f"{other.type} messages are not stored by this consumer"
        exchange, symbol = other.doc.get("exchange"), other.doc.get("symbol")
        if self.exchanges is not None and isinstance(exchange, str) \
                and exchange not in self.exchanges:
            return (f"exchange {exchange!r} is not served here "
                    f"({', '.join(sorted(self.exchanges))})")
        if isinstance(symbol, str) and r.key != symbol.encode():
            return f"message key {r.key!r} is not the symbol {symbol}"
        return None

    def _store(self, items: list[Item], others: Others | None = None
               ) -> tuple[int, list[tuple[object, str]], float]:
        """Write a batch: (rows written, the records the database rejected with its reason,
        the time of the database commit)."""
        rejected: list[tuple[object, str]] = []
        written = self._write(items, rejected) if items else 0
        for kind, pairs in (others or {}).items():
            written += self._write(pairs, rejected, self.handlers[kind])
        return written, rejected, self._clock()

    def _upsert(self, candles: list[Candle]) -> int:
        # new rows are the common case; a redelivered batch falls back to the upsert
        return self.repo.upsert(candles, expect_new=True)

    def _write(self, items: list, rejected: list, write: OtherStore | None = None) -> int:
        """Upsert, retrying with backoff while the database is unavailable (gives up only on
        stop); rows it rejects are found by halving the batch and set apart in `rejected`."""
        backoff = 0.5
        write = write or self._upsert
        candles = [c for _, c in items]
        while True:
            try:
                written = write(candles)
                self._db_outage.ok()
                return written
            except StorageRejected as exc:
                self._db_outage.ok()
                if len(items) == 1:
                    rejected.append((items[0][0], str(exc)))
                    return 0
                half = len(items) // 2
                return (self._write(items[:half], rejected, write)
                        + self._write(items[half:], rejected, write))
            except StorageError as exc:
                self.metrics.error("storage")
                self.stats.db_retries += 1
                if self.stop.is_set():
                    raise
                self._db_outage.failed(exc, f"batch of {len(candles)} kept, retry in {backoff:.1f}s")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _dead_letter(self, bad: list[tuple[object, str]]) -> None:
        """Send to the dead-letter topic and wait for the broker (before any offset commit)."""
        for r, reason in bad:
            origin = f"{r.topic}/{r.partition}/{r.offset}"
            log.warning("dead-lettering %s: %s", origin, reason)
            self.dlq.send_dead_letter(r.value, r.key, reason, origin)
        if bad:
            self.dlq.flush()
            self.metrics.dead_lettered(len(bad))

    def _prepare(self, records: list) -> tuple[list[Item], Others, int]:
        """Decode; dead-letter the invalid (confirmed before any offset is committed)."""
        self._others = {}
        items, bad = self.decode(records)
        others, self._others = self._others, {}
        self._dead_letter(bad)
        return items, others, len(bad)

    def _finish(self, records: list, items: list[Item], result: tuple, bad: int, t0: float) -> None:
        """After the rows are committed: dead-letter what the database rejected, commit the
        offsets, count, log. Latency is measured at the database commit."""
        written, rejected, stored_at = result
        self._dead_letter(rejected)
        self.source.commit(records)
        bad += len(rejected)
        refused = {id(r) for r, _ in rejected}
        candles = [c for r, c in items if id(r) not in refused]
        latencies = seconds_since_close(candles, stored_at)
        for seconds in latencies:
            self.metrics.latency(seconds)
        self.metrics.stored(written)
        self.stats.batches += 1
        self.stats.messages += len(records)
        self.stats.stored += written
        self.stats.dead_lettered += bad
        w = self._window
        w.batches, w.messages, w.stored = w.batches + 1, w.messages + len(records), w.stored + written
        w.dead_lettered += bad
        lag = None
        if time.monotonic() - self._lag_at >= self.lag_every_s:  # a broker round trip: not per batch
            self._lag_at = time.monotonic()
            lag = self.source.lag()
            if lag is not None:
                self._lag = lag
                self.metrics.lag(lag)
        log.debug("batch %d: %d messages, %d rows written, %d dead-lettered, %.3fs%s%s",
                 self.stats.batches, len(records), written, bad, time.monotonic() - t0,
                 "" if lag is None else f", lag {lag}",
                 "" if not latencies else ", close-to-stored %.2fs" % latencies[-1])

    def _summary(self, force: bool = False) -> None:
        """Once every `summary_every_s` (and at the end, if anything came): what was stored."""
        elapsed = time.monotonic() - self._summary_at
        if not force and elapsed < self.summary_every_s:
            return
        w, self._window = self._window, ConsumeStats()
        self._summary_at = time.monotonic()
        if force and not w.batches:
            return
        log.info("consumed in %.0fs: %s candles stored, %s batches, %s messages, %s "
                 "dead-lettered%s", elapsed, f"{w.stored:,}", f"{w.batches:,}", f"{w.messages:,}",
                 f"{w.dead_lettered:,}", "" if self._lag is None else f", lag {self._lag:,}")

    def handle(self, records: list) -> int:
        """Store one polled batch, dead-letter the invalid, then commit. Returns rows written."""
        if not records:
            return 0
        t0 = time.monotonic()
        items, others, bad = self._prepare(records)
        result = self._store(items, others) if items or others else (0, [], self._clock())
        self._finish(records, items, result, bad, t0)
        return result[0]

    def run(self, max_idle_polls: int | None = None) -> ConsumeStats:
        """Poll, store, commit until `stop` (finishing the batch at hand).

        Pipelined: while one batch is written (in a thread; the driver waits on the server with
        the GIL released) the next is polled and decoded. Offsets are committed from this thread
        only, and only after their batch's database commit."""
        idle = 0
        backoff = 0.5
        inflight = None  # (records, items, future, bad, t0)
        if isinstance(self.listing, Listing):
            self.listing.start()

        def settle() -> None:
            nonlocal inflight
            if inflight is not None:
                records, items, fut, bad, t0 = inflight
                inflight = None
                self._finish(records, items, fut.result(), bad, t0)

        with ThreadPoolExecutor(1, thread_name_prefix="store") as writer:
            try:
                while not self.stop.is_set():
                    self._summary()
                    try:
                        records = self.source.poll(self.poll_timeout_ms)
                    except BrokerUnavailable as exc:
                        self.metrics.error("broker")
                        self._broker_outage.failed(exc, f"retry in {backoff:.1f}s")
                        self.stop.wait(backoff)
                        backoff = min(backoff * 2, self.max_backoff_s, BROKER_RETRY_MAX_S)
                        continue
                    self._broker_outage.ok()
                    backoff = 0.5
                    held = list(inflight[0]) if inflight else []
                    try:
                        settle()
                        if not records:
                            idle += 1
                            if max_idle_polls is not None and idle >= max_idle_polls:
                                break
                            continue
                        idle = 0
                        t0 = time.monotonic()
                        items, others, bad = self._prepare(records)
                        fut = (writer.submit(self._store, items, others) if items or others
                               else _done((0, [], self._clock())))
                        inflight = (records, items, fut, bad, t0)
                    except BrokerUnavailable as exc:
                        # dead-letter or commit failed: read these batches again, skip nothing
                        self.metrics.error("broker")
                        self._broker_outage.failed(exc, "the batch will be read again")
                        inflight = None
                        self.source.rewind(held + records)
                        self.stop.wait(backoff)
            finally:
                settle()
                self._summary(force=True)
        return self.stats


def _done(value):
    fut: Future = Future()
    fut.set_result(value)
    return fut
