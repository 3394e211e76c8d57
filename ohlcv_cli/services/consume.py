"""Consume: candles from Kafka into the database, each stored exactly once.

One upsert transaction per polled batch; offsets are committed only after the database commit
(at-least-once delivery + the idempotent upsert = stored once). A message that fails validation
goes to the dead-letter topic with its reason and consumption goes on. While the database is
down nothing is committed: the batch is retried with backoff and nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from ohlcv_cli.core import message
from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.errors import BrokerUnavailable, InvalidMessage, StorageError
from ohlcv_cli.core.ports import CandleRepository, DeadLetters, MessageSource, Metrics
from ohlcv_cli.core.timeframes import parse_timeframe

log = logging.getLogger(__name__)


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
    ) -> None:
        self.source, self.repo, self.dlq = source, repo, dead_letters
        self.metrics = metrics or Metrics()
        self.stop = stop or threading.Event()
        self.poll_timeout_ms = poll_timeout_ms
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self.stats = ConsumeStats()
        self.lag_every_s = 5.0
        self._lag_at = float("-inf")

    def decode(self, records: list) -> tuple[list[Candle], list[tuple[object, str]]]:
        good: list[Candle] = []
        bad: list[tuple[object, str]] = []
        for r in records:
            try:
                candle, _ = message.decode(r.value)
            except InvalidMessage as exc:
                bad.append((r, str(exc)))
                continue
            good.append(candle)
        return good, bad

    def _store(self, candles: list[Candle]) -> int:
        """Upsert, retrying with backoff while the database is down; gives up only on stop."""
        backoff = 0.5
        while True:
            try:
                # new rows are the common case; a redelivered batch falls back to the upsert
                return self.repo.upsert(candles, expect_new=True)
            except StorageError as exc:
                self.metrics.error("storage")
                self.stats.db_retries += 1
                if self.stop.is_set():
                    raise
                log.warning("database unavailable, batch of %d kept, retry in %.1fs: %s",
                            len(candles), backoff, exc)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _prepare(self, records: list) -> tuple[list[Candle], int]:
        """Decode; dead-letter the invalid (confirmed before any offset is committed)."""
        candles, bad = self.decode(records)
        for r, reason in bad:
            origin = f"{r.topic}/{r.partition}/{r.offset}"
            log.warning("dead-lettering %s: %s", origin, reason)
            self.dlq.send_dead_letter(r.value, r.key, reason, origin)
        if bad:
            self.dlq.flush()
            self.metrics.dead_lettered(len(bad))
        return candles, len(bad)

    def _finish(self, records: list, candles: list[Candle], written: int, bad: int, t0: float) -> None:
        """After the rows are committed: commit the offsets, count, log."""
        self.source.commit(records)
        now = self._clock()
        for c in candles:
            self.metrics.latency(now - (c.open_time + parse_timeframe(c.timeframe).ms) / 1000)
        self.metrics.stored(written)
        self.stats.batches += 1
        self.stats.messages += len(records)
        self.stats.stored += written
        self.stats.dead_lettered += bad
        lag = None
        if time.monotonic() - self._lag_at >= self.lag_every_s:  # a broker round trip: not per batch
            self._lag_at = time.monotonic()
            lag = self.source.lag()
            if lag is not None:
                self.metrics.lag(lag)
        newest = candles[-1] if candles else None
        log.info("batch %d: %d messages, %d rows written, %d dead-lettered, %.3fs%s%s",
                 self.stats.batches, len(records), written, bad, time.monotonic() - t0,
                 "" if lag is None else f", lag {lag}",
                 "" if newest is None else ", close-to-stored %.2fs" % (
                     now - (newest.open_time + parse_timeframe(newest.timeframe).ms) / 1000))

    def handle(self, records: list) -> int:
        """Store one polled batch, dead-letter the invalid, then commit. Returns rows written."""
        if not records:
            return 0
        t0 = time.monotonic()
        candles, bad = self._prepare(records)
        written = self._store(candles) if candles else 0
        self._finish(records, candles, written, bad, t0)
        return written

    def run(self, max_idle_polls: int | None = None) -> ConsumeStats:
        """Poll, store, commit until `stop` (finishing the batch at hand).

        Pipelined: while one batch is written (in a thread; the driver waits on the server with
        the GIL released) the next is polled and decoded. Offsets are committed from this thread
        only, and only after their batch's database commit."""
        idle = 0
        backoff = 0.5
        inflight = None  # (records, candles, future, bad, t0)

        def settle() -> None:
            nonlocal inflight
            if inflight is not None:
                records, candles, fut, bad, t0 = inflight
                inflight = None
                self._finish(records, candles, fut.result(), bad, t0)

        with ThreadPoolExecutor(1, thread_name_prefix="store") as writer:
            try:
                while not self.stop.is_set():
                    try:
                        records = self.source.poll(self.poll_timeout_ms)
                    except BrokerUnavailable as exc:
                        self.metrics.error("broker")
                        log.warning("%s; retry in %.1fs", exc, backoff)
                        self.stop.wait(backoff)
                        backoff = min(backoff * 2, self.max_backoff_s)
                        continue
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
                        candles, bad = self._prepare(records)
                        fut = writer.submit(self._store, candles) if candles else _done(0)
                        inflight = (records, candles, fut, bad, t0)
                    except BrokerUnavailable as exc:
                        # dead-letter or commit failed: read these batches again, skip nothing
                        self.metrics.error("broker")
                        log.warning("%s; the batch will be read again", exc)
                        inflight = None
                        self.source.rewind(held + records)
                        self.stop.wait(backoff)
            finally:
                settle()
        return self.stats


def _done(value):
    fut: Future = Future()
    fut.set_result(value)
    return fut
