"""Binance's websocket kline streams (`<symbol>@kline_<interval>`): the only module importing
`websockets`.

One asyncio loop in a thread of its own runs one task per connection and pushes each final candle
(`"x": true`) to the service's `emit`, with every field the event's decimal string. Binance's rules:
at most `max_streams` (1,024) streams per connection, so more symbols take more connections; the
first `url_streams` streams go in the combined URL `{base}/stream?streams=a/b/...`, the rest in
`SUBSCRIBE` requests of up to 200 streams, at most 2 per second (the server allows 5 incoming
messages per second, pongs included); pings are answered by `websockets`. A connection reconnects
with jittered exponential backoff when it closes or fails, at once on `serverShutdown` and before
its 24 hours are up, and counts as dead when silent for `silence_s` while candles should flow.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from typing import Callable, Mapping

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ohlcv_cli.core.candle import Candle, validate
from ohlcv_cli.core.errors import ConfigError, InvalidMessage
from ohlcv_cli.core.feed import Connected, Disconnected, FeedEvent
from ohlcv_cli.core.timeframes import Timeframe

log = logging.getLogger(__name__)

MAX_STREAMS = 1024
SUBSCRIBE_BATCH = 200
SUBSCRIBE_INTERVAL_S = 0.5
MAX_AGE_S = 23.5 * 3600  # Binance cuts a connection at 24 h: leave before
_STRINGS = ("o", "h", "l", "c", "v", "q", "V", "Q")


class _Malformed(Exception):
    pass


def check_stream_url(url: str) -> str:
    """The base URL, without a trailing slash or a trailing `/ws` or `/stream` (the endpoint's
    own paths, which some configurations include); ws:// or wss:// only."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigError(f"invalid OHLCV_STREAM_URL {url!r}: must be a ws:// or wss:// URL such "
                          f"as wss://stream.binance.com:9443")
    base = url.rstrip("/")
    for suffix in ("/ws", "/stream"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


class BinanceWsFeed:
    """A CandleFeed over Binance's kline streams for `markets` ({ccxt symbol: market id})."""

    def __init__(
        self,
        base_url: str,
        markets: Mapping[str, str],
        tf: Timeframe,
        *,
        exchange_id: str = "binance",
        max_streams: int = MAX_STREAMS,
        url_streams: int = SUBSCRIBE_BATCH,
        silence_s: float | None = None,
        max_age_s: float = MAX_AGE_S,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        open_timeout_s: float = 10.0,
    ) -> None:
        self.base = check_stream_url(base_url)
        self.tf = tf
        self.exchange_id = exchange_id
        self.max_streams = max(1, min(max_streams, MAX_STREAMS))
        self.url_streams = max(0, url_streams)
        # updates come every 1-2 s per stream and a final one per candle: silence past one
        # candle (at most a minute) plus 5 s means the connection is dead
        self.silence_s = silence_s if silence_s is not None else min(tf.ms / 1000, 60.0) + 5.0
        self.max_age_s = max_age_s
        self.backoff_s = backoff_s
        self.open_timeout_s = open_timeout_s
        self._by_market = {m.upper(): s for s, m in markets.items()}
        streams = [(f"{m.lower()}@kline_{tf.name}", s) for s, m in markets.items()]
        self._chunks = [streams[i:i + self.max_streams]
                        for i in range(0, len(streams), self.max_streams)]
        self._emit: Callable[[FeedEvent], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        self._open: set = set()  # open connections, aborted on close()
        self.stats = {"connections": 0, "reconnects": 0, "candles": 0, "malformed": 0}

    @property
    def connections(self) -> int:
        return len(self._chunks)

    def url_of(self, chunk: int) -> str:
        names = [n for n, _ in self._chunks[chunk][: self.url_streams]]
        return f"{self.base}/stream" + (f"?streams={'/'.join(names)}" if names else "")

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, emit: Callable[[FeedEvent], None]) -> None:
        self._emit = emit
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._stopping = asyncio.Event()
            ready.set()
            try:
                self._loop.run_until_complete(self._main())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="binance-ws", daemon=True)
        self._thread.start()
        ready.wait(5)

    def close(self) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._stopping.set)
        except RuntimeError:  # the loop is already closed
            pass
        self._thread.join(5)
        if self._thread.is_alive():
            log.warning("websocket thread still closing after 5 s; leaving it (a daemon)")
        self._thread = None

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._connection(i)) for i in range(len(self._chunks))]
        await self._stopping.wait()
        # leaving: no close handshake (a full receive queue would stall it), just drop them
        for ws in list(self._open):
            ws.transport.abort()
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=3)

    # --- one connection -----------------------------------------------------------------------
    async def _connection(self, index: int) -> None:
        chunk = self._chunks[index]
        symbols = tuple(s for _, s in chunk)
        url = self.url_of(index)
        backoff = self.backoff_s[0]
        opened_before = False
        while not self._stopping.is_set():
            reason, healthy = "closed", False
            try:
                async with connect(url, open_timeout=self.open_timeout_s, ping_interval=20,
                                   ping_timeout=20, close_timeout=2, max_size=2**22,
                                   compression=None) as ws:
                    self._open.add(ws)
                    self.stats["connections"] += 1
                    if opened_before:
                        self.stats["reconnects"] += 1
                    opened_before = True
                    log.info("websocket %d connected: %d streams", index, len(chunk))
                    self._emit(Connected(index, symbols))
                    try:
                        reason, healthy = await self._read(ws, chunk)
                    finally:
                        self._open.discard(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
                reason = _describe(exc)
            if opened_before:
                self._emit(Disconnected(index, symbols, reason))
            if self._stopping.is_set():
                return
            if reason in ("serverShutdown", "24 h"):
                wait = 0.0  # a planned move: reconnect at once
            else:
                if healthy:
                    backoff = self.backoff_s[0]
                wait = backoff * (0.5 + self._rng.random())
                backoff = min(backoff * 2, self.backoff_s[1])
            log.warning("websocket %d (%d streams) %s; reconnecting in %.1fs",
                        index, len(chunk), reason, wait)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)
                return
            except TimeoutError:
                pass

    async def _read(self, ws, chunk) -> tuple[str, bool]:
        """Read until the connection must go; returns (why, whether it delivered candles)."""
        loop = asyncio.get_running_loop()
        opened = loop.time()
        rest = [n for n, _ in chunk[self.url_streams:]]
        sub = asyncio.create_task(self._subscribe(ws, rest)) if rest else None
        healthy = False
        try:
            while True:
                left = self.max_age_s - (loop.time() - opened)
                if left <= 0:
                    return "24 h", healthy
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=min(self.silence_s, left))
                except TimeoutError:
                    if loop.time() - opened >= self.max_age_s:
                        return "24 h", healthy
                    return f"silent for {self.silence_s:.0f}s", healthy
                except ConnectionClosed as exc:
                    return _describe(exc), healthy
                outcome = self._handle(raw)
                if outcome == "shutdown":
                    return "serverShutdown", healthy
                if outcome == "candle":
                    healthy = True
        finally:
            if sub is not None:
                sub.cancel()

    async def _subscribe(self, ws, names: list[str]) -> None:
        ids = 1
        for i in range(0, len(names), SUBSCRIBE_BATCH):
            await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": names[i:i + SUBSCRIBE_BATCH],
                                        "id": ids}).decode())
            ids += 1
            await asyncio.sleep(SUBSCRIBE_INTERVAL_S)

    # --- messages -----------------------------------------------------------------------------
    def _handle(self, raw) -> str | None:
        try:
            return self._parse(raw)
        except _Malformed as exc:
            self.stats["malformed"] += 1
            text = raw if isinstance(raw, str) else repr(raw)
            log.warning("websocket: skipped a malformed message (%s): %.200s", exc, text)
            return None

    def _parse(self, raw) -> str | None:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Malformed("not JSON") from None
        if not isinstance(doc, dict):
            raise _Malformed("not a JSON object")
        if "id" in doc and ("result" in doc or "error" in doc):
            if doc.get("error") is not None:
                log.warning("websocket: request %s refused: %s", doc.get("id"), doc["error"])
            return None
        data = doc.get("data", doc)
        if not isinstance(data, dict):
            raise _Malformed("data is not an object")
        event = data.get("e")
        if event is None and isinstance(data.get("event"), dict):
            event = data["event"].get("e")
        if event == "serverShutdown":
            log.warning("websocket: serverShutdown received")
            return "shutdown"
        if event != "kline":
            return None
        k = data.get("k")
        if not isinstance(k, dict):
            raise _Malformed("kline without k")
        final = k.get("x")
        if final is False:
            return None
        if final is not True:
            raise _Malformed(f"x is {final!r}")
        candle = self._candle(k, data)
        self.stats["candles"] += 1
        self._emit(candle)
        return "candle"

    def _candle(self, k: dict, data: dict) -> Candle:
        symbol = self._by_market.get(str(k.get("s") or data.get("s") or "").upper())
        if symbol is None:
            raise _Malformed(f"unknown symbol {k.get('s')!r}")
        if k.get("i") != self.tf.name:
            raise _Malformed(f"interval {k.get('i')!r}, expected {self.tf.name}")
        t, close_t, n = k.get("t"), k.get("T"), k.get("n")
        if type(t) is not int or type(n) is not int:
            raise _Malformed("t and n must be integers")
        if not self.tf.is_aligned(t) or (close_t is not None and close_t != t + self.tf.ms - 1):
            raise _Malformed(f"open time {t} / close time {close_t} do not fit {self.tf.name}")
        values = [k.get(f) for f in _STRINGS]
        if not all(type(v) is str for v in values):
            raise _Malformed("prices and volumes must be decimal strings")
        o, h, lo, c, v, q, bv, bq = values
        candle = Candle(self.exchange_id, symbol, self.tf.name, t, o, h, lo, c, v, q, n, bv, bq,
                        "stream")
        try:
            return validate(candle)
        except InvalidMessage as exc:
            raise _Malformed(str(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        return f"closed ({rcvd.code} {rcvd.reason})" if rcvd is not None else "cut (no close frame)"
    if isinstance(exc, TimeoutError):
        return "timed out opening"
    if isinstance(exc, InvalidHandshake):
        return f"handshake refused: {exc}"
    return f"unreachable: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
