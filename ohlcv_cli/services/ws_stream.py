"""Stream from the exchange's websocket, with REST as the safety net.

The per-symbol watermark of `Stream` (the next open time owed) stays the single truth of what has
been published: candles from the socket and from REST wait in a per-symbol buffer and are
published strictly from the watermark on, without a hole, so per symbol order holds and each
candle is published once (anything older than the watermark is dropped). REST fills the holes:
- a candle whose final event has not arrived `delay` after its close (a dropped event, a dead or
  missing connection) is fetched through the existing REST path with its settle rules;
- after every connect and reconnect, the range from the watermark up to the first candle the
  socket delivers is fetched at once, before anything newer is published.

One thread runs this loop; the feed pushes from its own thread and REST fetches run in a small
pool, both into one queue, so the loop only ever touches its own state. With `funding`
(perpetuals: services.live_funding) the mark-price events go to it, and its REST confirmations run
in the same pool and come back through the same queue.
"""

from __future__ import annotations

import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.errors import BadSymbol, BrokerUnavailable, ExchangeUnavailable, StorageError
from ohlcv_cli.core.feed import CandleFeed, Connected, Disconnected, FeedEvent, MarkPrice
from ohlcv_cli.services.live_funding import FundingFetched, LiveFunding
from ohlcv_cli.services.stream import SINK_RETRY_MAX_S, Stream, StreamState

log = logging.getLogger(__name__)

SOCKET, REST = "socket", "rest"
STOP_POLL_S = 0.25  # how soon a stop request is seen while nothing arrives


@dataclass
class _Fetched:
    symbol: str
    candles: list[Candle]
    error: ExchangeUnavailable | None = None
    short: bool = False  # the exchange did not have the whole range yet
    halted: str | None = None  # the exchange no longer lists it (-1121)
    bug: BaseException | None = None


class FeedGroup:
    """Several feeds as one (one per API family: spot, USD-M, COIN-M, each with its own
    connections); connection numbers are made unique across them."""

    def __init__(self, feeds: Sequence) -> None:
        self.feeds = list(feeds)

    @property
    def connections(self) -> int:
        return sum(f.connections for f in self.feeds)

    def start(self, emit: Callable[[FeedEvent], None]) -> None:
        offset = 0
        for feed in self.feeds:
            feed.start(self._shifted(emit, offset))
            offset += feed.connections

    @staticmethod
    def _shifted(emit: Callable[[FeedEvent], None], offset: int) -> Callable[[FeedEvent], None]:
        if not offset:
            return emit

        def shifted(event: FeedEvent) -> None:
            if isinstance(event, (Connected, Disconnected)):
                event = replace(event, connection=event.connection + offset)
            emit(event)
        return shifted

    def close(self) -> None:
        for feed in self.feeds:
            feed.close()


@dataclass
class WsCounters:
    from_socket: int = 0
    from_rest: int = 0
    reconnects: int = 0
    dropped: int = 0  # socket candles older than the watermark (already published from REST)


class WsStream:
    def __init__(self, stream: Stream, feed: CandleFeed, *, report_every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 funding: LiveFunding | None = None) -> None:
        self.stream = stream
        self.feed = feed
        self.funding = funding
        self.report_every_s = report_every_s
        self._clock = clock
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        symbols = stream.symbols
        self._pending: dict[str, dict[int, tuple[Candle, str]]] = {s: {} for s in symbols}
        self._synced = {s: False for s in symbols}  # gap since the last connect filled?
        self._in_flight: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._covered: dict[str, int] = {}  # REST answered every candle before this
        self._seen_connections: set[int] = set()
        self.counters = WsCounters()  # since start
        self._window = WsCounters()  # since the last log line

    # --- helpers ------------------------------------------------------------------------------
    @property
    def state(self) -> StreamState:
        return self.stream.state

    def _due_end(self) -> int:
        """Candles opening before this are overdue from the socket: closed `delay` ago."""
        s = self.stream
        return s.tf.floor(s.fetcher.now_ms() - s.delay_ms)

    # --- the loop -----------------------------------------------------------------------------
    def run(self, max_cycles: int | None = None) -> StreamState:
        """Until `stop` is set; a cycle is one close of the timeframe (max_cycles: testing)."""
        s = self.stream
        if not s.state.watermarks:
            s.init_watermarks()
        if self.funding is not None:
            self.funding.start()
        self.feed.start(self._queue.put)
        boundary = self._due_end()
        next_report = self._clock() + self.report_every_s
        backoff = 0.5
        pool = ThreadPoolExecutor(s.workers, thread_name_prefix="ws-rest")
        try:
            while not s.stop.is_set():
                self._drain(self._timeout())
                self._request_rest(pool)
                if self.funding is not None:
                    self._request_funding(pool)
                error = self._publish()
                if error:
                    s.stop.wait(backoff)
                    backoff = min(backoff * 2, SINK_RETRY_MAX_S)
                else:
                    backoff = 0.5
                end = self._due_end()
                if end > boundary:
                    s.state.cycles += (end - boundary) // s.tf.ms
                    boundary = end
                    if max_cycles is not None and s.state.cycles >= max_cycles:
                        break
                if self._clock() >= next_report:
                    self._report()
                    next_report += self.report_every_s
        finally:
            t0 = time.monotonic()
            self.feed.close()
            pool.shutdown(wait=True, cancel_futures=True)
            log.info("websocket and REST workers closed in %.2fs", time.monotonic() - t0)
            self._report()
        return s.state

    def _timeout(self) -> float:
        s = self.stream
        now = s.fetcher.now_ms()
        next_due = (self._due_end() + s.tf.ms + s.delay_ms - now) / 1000
        timeout = max(0.0, min(next_due, self.report_every_s, STOP_POLL_S))
        if self._retry_at:
            timeout = min(timeout, max(0.0, min(self._retry_at.values()) - self._clock()))
        return max(timeout, 0.005)

    def _drain(self, timeout: float) -> None:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._take(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return

    def _take(self, item) -> None:
        wm = self.state.watermarks
        if isinstance(item, MarkPrice):
            if self.funding is not None:
                self.funding.on_mark(item)
            return
        if isinstance(item, FundingFetched):
            self.funding.take(item)
            return
        if isinstance(item, Candle):
            if item.open_time >= wm[item.symbol]:
                # a socket candle wins over a REST one already waiting: both are final
                self._pending[item.symbol][item.open_time] = (item, SOCKET)
            else:
                self.counters.dropped += 1
        elif isinstance(item, _Fetched):
            self._in_flight.discard(item.symbol)
            if item.bug is not None:
                raise item.bug
            halts = self.stream.halts  # symbols that stopped trading: polled slowly (Stream's rule)
            if item.halted is not None:
                halts.halt(item.symbol, item.halted)
                return
            halts.fetched(item.symbol, bool(item.candles))
            if item.short and not item.candles:
                halts.late(item.symbol)
            if item.short:
                self._retry_at[item.symbol] = self._clock() + self.stream.retry_s
            if item.error is not None:
                n = self._failures.get(item.symbol, 0) + 1
                self._failures[item.symbol] = n
                self._retry_at[item.symbol] = self._clock() + min(30.0, 0.5 * 2 ** n)
                self.stream.metrics.error("exchange")
                log.warning("%s: REST fetch failed (%s); retrying", item.symbol, item.error)
                return
            self._failures.pop(item.symbol, None)
            if item.candles:
                self.stream.metrics.fetched(item.symbol, len(item.candles))
            pending = self._pending[item.symbol]
            if item.candles:
                # REST answers all the exchange has up to its last candle: open times in
                # between without one are an exchange gap (maintenance), never waited for
                end = item.candles[-1].open_time + self.stream.tf.ms
                self._covered[item.symbol] = max(self._covered.get(item.symbol, 0), end)
            for c in item.candles:
                if c.open_time >= wm[item.symbol]:
                    pending.setdefault(c.open_time, (c, REST))
        elif isinstance(item, Connected):
            if item.connection in self._seen_connections:
                self.counters.reconnects += 1
                self._window.reconnects += 1
            self._seen_connections.add(item.connection)
        elif isinstance(item, Disconnected):
            for sym in item.symbols:
                self._synced[sym] = False

    def _request_rest(self, pool: ThreadPoolExecutor) -> None:
        """Fetch each symbol's hole from its watermark: up to the first socket candle after a
        (re)connect, else up to the candles overdue from the socket."""
        s = self.stream
        due_end = self._due_end()
        now = self._clock()
        wm = self.state.watermarks
        for sym in s.symbols:
            if sym in self._in_flight or self._retry_at.get(sym, 0.0) > now:
                continue
            if not s.halts.due(sym):
                continue
            self._retry_at.pop(sym, None)
            pending = self._pending[sym]
            w = wm[sym]
            first = min(pending) if pending else None
            if first is None:
                target = due_end
            elif not self._synced[sym]:
                target = first
            else:
                target = min(due_end, first)
            if w >= target:
                if first is not None and first == w:
                    self._synced[sym] = True
                continue
            if first is not None and not self._synced[sym]:
                self._synced[sym] = True  # this fill closes the gap of the (re)connect
            self._in_flight.add(sym)
            fut = pool.submit(self._fetch, sym, w, target)
            fut.add_done_callback(lambda f: None if f.cancelled() else self._queue.put(f.result()))

    def _request_funding(self, pool: ThreadPoolExecutor) -> None:
        f = self.funding
        for args in f.due():
            fut = pool.submit(f.fetch, *args)
            fut.add_done_callback(lambda x: None if x.cancelled() else self._queue.put(x.result()))
        if f.publish() is not None:  # the sink is down: kept, retried on the next turn
            self.stream.metrics.error("broker")

    def _fetch(self, symbol: str, start: int, end: int) -> _Fetched:
        s = self.stream
        try:
            candles = s.fetch(symbol, start, end)
        except BadSymbol as exc:
            return _Fetched(symbol, [], halted=str(exc))
        except ExchangeUnavailable as exc:
            return _Fetched(symbol, [], exc)
        except BaseException as exc:  # re-raised in the loop's thread, never lost with the worker
            return _Fetched(symbol, [], bug=exc)
        # the exchange does not have it all yet: retry shortly, never skip
        short = not candles or candles[-1].open_time + s.tf.ms < end
        return _Fetched(symbol, candles, short=short)

    def _publish(self) -> str | None:
        """Publish every symbol's run of buffered candles that starts at its watermark."""
        s = self.stream
        wm = self.state.watermarks
        batch: list[Candle] = []
        runs: dict[str, tuple[int, int, int]] = {}  # symbol -> (new watermark, socket, rest)
        tf_ms = s.tf.ms
        for sym in s.symbols:
            pending = self._pending[sym]
            if not pending:
                continue
            t, n_socket, n_rest = wm[sym], 0, 0
            covered = self._covered.get(sym, 0)
            while True:
                entry = pending.get(t)
                if entry is not None:
                    batch.append(entry[0])
                    if entry[1] == SOCKET:
                        n_socket += 1
                    else:
                        n_rest += 1
                elif t >= covered:
                    break
                t += tf_ms
            if n_socket or n_rest:
                runs[sym] = (t, n_socket, n_rest)
        if not batch:
            return None
        try:
            s.sink.publish(batch)
        except (BrokerUnavailable, StorageError) as exc:
            s.metrics.error("broker" if isinstance(exc, BrokerUnavailable) else "storage")
            s.outage.failed(exc, "retrying")  # one line when it starts, one when it ends
            return str(exc)
        s.outage.ok()
        for sym, (end, n_socket, n_rest) in runs.items():
            pending = self._pending[sym]
            for t in range(wm[sym], end, tf_ms):
                pending.pop(t, None)
            wm[sym] = end
            s.halts.caught_up(sym)
            for c in (self.counters, self._window):
                c.from_socket += n_socket
                c.from_rest += n_rest
            s.metrics.published(sym, n_socket + n_rest)
        s.state.published += len(batch)
        return None

    def _report(self) -> None:
        w, due = self._window, self._due_end()
        halted = self.stream.halts.halted
        waiting = sum(1 for sym in self.stream.symbols
                      if self.state.watermarks[sym] < due and sym not in halted)
        log.info("websocket stream: %d candles from the socket, %d from REST, %d reconnects, "
                 "%d symbols waiting%s", w.from_socket, w.from_rest, w.reconnects, waiting,
                 "" if self.funding is None else
                 f"; {self.funding.published} funding settlements published since start")
        self._window = WsCounters()
