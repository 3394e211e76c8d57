"""Binance's websocket kline streams: the only module importing `websockets`.

One feed serves one API family (`LAYOUTS`): spot (`wss://stream.binance.com:9443/stream`),
USD-M futures on its 2026 routed layout (`wss://fstream.binance.com/market/stream`: the legacy
unrouted `/stream` was retired on 2026-04-23 and pushes no market data) and COIN-M futures
(`wss://dstream.binance.com/stream`). Streams (`kline_stream`): `<symbol>@kline_<i>` for trade
candles; COIN-M also `<symbol>@markPriceKline_<i>` and `<pair>@indexPriceKline_<i>`. A price
series a family has no kline stream for (USD-M mark, index and premium; COIN-M premium) gets none:
the service fetches it over REST at each close. `<symbol>@markPrice` (funding: `r`, `T`) can ride
along for perpetuals (`MarkPrice` events).

One asyncio loop in a thread of its own runs one task per connection and pushes each final candle
(`"x": true`) to the service's `emit`, with every field the event's decimal string. Binance's
rules, per family: at most `max_streams` streams per connection (spot 1,024, futures 200), so more
symbols take more connections; the first `url_streams` streams go in the combined URL
`{base}{path}?streams=a/b/...`, the rest in `SUBSCRIBE` requests of up to 200 streams, spaced to
stay well under the incoming-message limit (spot 5 a second, futures 10, pongs included); pings
(futures: every 3 minutes) are answered by `websockets`. A connection reconnects with jittered
exponential backoff when it closes or fails, at once on `serverShutdown` and before its 24 hours
are up, and counts as dead when silent for `silence_s` while candles should flow.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from dataclasses import dataclass
from typing import Callable, Mapping

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ohlcv_cli.core.candle import Candle, validate
from ohlcv_cli.core.errors import ConfigError, InvalidMessage
from ohlcv_cli.core.feed import Connected, Disconnected, FeedEvent, MarkPrice
from ohlcv_cli.core.timeframes import Timeframe

log = logging.getLogger(__name__)

MAX_STREAMS = 1024
SUBSCRIBE_BATCH = 200
SUBSCRIBE_INTERVAL_S = 0.5
MAX_AGE_S = 23.5 * 3600  # Binance cuts a connection at 24 h: leave before
_STRINGS = ("o", "h", "l", "c", "v", "q", "V", "Q")


@dataclass(frozen=True)
class Layout:
    """One API family's websocket: the combined-stream path under its base URL, the streams one
    connection may carry, and the spacing of SUBSCRIBE requests (incoming-message limit)."""

    family: str
    setting: str  # the environment variable naming its base URL
    path: str
    max_streams: int
    subscribe_interval_s: float


LAYOUTS = {
    "spot": Layout("spot", "OHLCV_STREAM_URL", "/stream", 1024, 0.5),  # 5 incoming/s
    # 2026: USD-M market streams (klines, mark price) only under /market
    "usdm": Layout("usdm", "OHLCV_USDM_STREAM_URL", "/market/stream", 200, 0.25),  # 10/s
    "coinm": Layout("coinm", "OHLCV_COINM_STREAM_URL", "/stream", 200, 0.25),  # 10/s
}
# kline-like events: event type -> price series
_KLINE_EVENTS = {"kline": "trade", "markPrice_kline": "mark", "indexPrice_kline": "index"}


def kline_stream(family: str, price: str, market_id: str, pair: str, tf: str) -> str | None:
    """The stream name of a market's candles of this price series, None where the family has
    no kline stream for it (fetched over REST at each close instead)."""
    if price == "trade":
        return f"{market_id.lower()}@kline_{tf}"
    if family == "coinm" and price == "mark":
        return f"{market_id.lower()}@markPriceKline_{tf}"
    if family == "coinm" and price == "index":
        return f"{pair.lower()}@indexPriceKline_{tf}"
    return None


class _Malformed(Exception):
    pass


def check_stream_url(url: str, family: str = "spot") -> str:
    """The base URL, without a trailing slash or a trailing `/ws` or `/stream` (the endpoint's
    own paths, which some configurations include; for USD-M also `/market`, the route the
    client adds); ws:// or wss:// only."""
    from urllib.parse import urlsplit

    layout = LAYOUTS[family]
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        example = {"spot": "wss://stream.binance.com:9443", "usdm": "wss://fstream.binance.com",
                   "coinm": "wss://dstream.binance.com"}[family]
        raise ConfigError(f"invalid {layout.setting} {url!r}: must be a ws:// or wss:// URL such "
                          f"as {example}")
    base = url.rstrip("/")
    for suffix in ("/ws", "/stream"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    if family == "usdm" and base.endswith("/market"):
        base = base[: -len("/market")]
    return base


class BinanceWsFeed:
    """A CandleFeed over one family's kline streams for `markets` ({ccxt symbol: market id}) of
    one price series; `pairs` ({symbol: pair}) for COIN-M index candles (streamed by pair, stored
    under each contract); `mark_price`: symbols whose `@markPrice` stream to read too (their
    `MarkPrice` events: funding rate and next funding time)."""

    def __init__(
        self,
        base_url: str,
        markets: Mapping[str, str],
        tf: Timeframe,
        *,
        family: str = "spot",
        price: str = "trade",
        pairs: Mapping[str, str] | None = None,
        mark_price: tuple[str, ...] | list[str] = (),
        exchange_id: str = "binance",
        max_streams: int = MAX_STREAMS,
        url_streams: int = SUBSCRIBE_BATCH,
        silence_s: float | None = None,
        max_age_s: float = MAX_AGE_S,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        open_timeout_s: float = 10.0,
    ) -> None:
        self.layout = LAYOUTS[family]
        self.base = check_stream_url(base_url, family)
        self.tf = tf
        self.family, self.price = family, price
        self.exchange_id = exchange_id
        self.max_streams = max(1, min(max_streams, self.layout.max_streams))
        self.url_streams = max(0, url_streams)
        # updates come every 1-2 s per stream and a final one per candle: silence past one
        # candle (at most a minute) plus 5 s means the connection is dead
        self.silence_s = silence_s if silence_s is not None else min(tf.ms / 1000, 60.0) + 5.0
        self.max_age_s = max_age_s
        self.backoff_s = backoff_s
        self.open_timeout_s = open_timeout_s
        pairs = pairs or {}
        # (event kind, market id or pair) -> the symbols its events are for
        self._route: dict[tuple[str, str], tuple[str, ...]] = {}
        streams: list[tuple[str, tuple[str, ...]]] = []  # (stream, symbols with candles on it)
        by_name: dict[str, list[str]] = {}
        for sym, mid in markets.items():
            name = kline_stream(family, price, mid, pairs.get(sym, mid), tf.name)
            if name is None:
                continue
            if name not in by_name:
                by_name[name] = []
                streams.append((name, ()))
            by_name[name].append(sym)
            key = pairs.get(sym, mid) if price == "index" else mid
            self._route[("kline", key.upper())] = tuple(by_name[name])
        streams = [(n, tuple(by_name[n])) for n, _ in streams]
        self.marked = tuple(mark_price)  # the symbols whose mark-price stream this feed reads
        for sym in mark_price:
            mid = markets[sym]
            streams.append((f"{mid.lower()}@markPrice", ()))
            self._route[("mark", mid.upper())] = (sym,)
        self.candle_streams = sum(1 for _, syms in streams if syms)
        self.mark_streams = len(streams) - self.candle_streams
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
        return f"{self.base}{self.layout.path}" + (f"?streams={'/'.join(names)}" if names else "")

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

        self._thread = threading.Thread(target=run, name=f"binance-ws-{self.family}", daemon=True)
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
        symbols = tuple(dict.fromkeys(s for _, syms in chunk for s in syms))
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
                    log.info("%s websocket %d connected: %d streams", self.family, index,
                             len(chunk))
                    self._emit(Connected(index, symbols))
                    try:
                        reason, healthy = await self._read(ws, chunk)
                    finally:
                        self._open.discard(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
                reason = _describe(exc)
            if self._stopping.is_set():
                return  # our own close (its connections are dropped): nothing to report
            if opened_before:
                self._emit(Disconnected(index, symbols, reason))
            if reason in ("serverShutdown", "24 h"):
                wait = 0.0  # a planned move: reconnect at once
            else:
                if healthy:
                    backoff = self.backoff_s[0]
                wait = backoff * (0.5 + self._rng.random())
                backoff = min(backoff * 2, self.backoff_s[1])
            log.warning("%s websocket %d (%d streams) %s; reconnecting in %.1fs",
                        self.family, index, len(chunk), reason, wait)
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
                if outcome in ("candle", "mark"):
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
            await asyncio.sleep(self.layout.subscribe_interval_s)

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
        if event == "markPriceUpdate":
            return self._mark_price(data)
        if event not in _KLINE_EVENTS:
            return None
        k = data.get("k")
        if not isinstance(k, dict):
            raise _Malformed("kline without k")
        final = k.get("x")
        if final is False:
            return None
        if final is not True:
            raise _Malformed(f"x is {final!r}")
        for candle in self._candles(k, data, _KLINE_EVENTS[event]):
            self.stats["candles"] += 1
            self._emit(candle)
        return "candle"

    def _mark_price(self, data: dict) -> str | None:
        symbols = self._route.get(("mark", str(data.get("s") or "").upper()))
        if symbols is None:
            raise _Malformed(f"markPriceUpdate for an unknown symbol {data.get('s')!r}")
        rate, next_t, at = data.get("r"), data.get("T"), data.get("E")
        if type(rate) is not str or type(next_t) is not int or type(at) is not int:
            raise _Malformed("markPriceUpdate: r must be a decimal string, T and E integers")
        for sym in symbols:
            self._emit(MarkPrice(sym, rate, next_t, at, data.get("p")))
        return "mark"

    def _candles(self, k: dict, data: dict, price: str) -> list[Candle]:
        if price != self.price:
            raise _Malformed(f"a {price} candle on a {self.price} feed")
        key = data.get("ps") if price == "index" else (k.get("s") or data.get("s"))
        symbols = self._route.get(("kline", str(key or "").upper()))
        if symbols is None:
            raise _Malformed(f"unknown symbol {key!r}")
        candle = self._candle(k, symbols[0])
        return [candle] + [candle._replace(symbol=s) for s in symbols[1:]]

    def _candle(self, k: dict, symbol: str) -> Candle:
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
                        "stream", self.price)
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
