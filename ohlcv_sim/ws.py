"""The simulator's websocket server: Binance's kline streams from the same candles as its REST API.

`/stream?streams=btcusdt@kline_1m/...` (combined streams) and `SUBSCRIBE` / `UNSUBSCRIBE` /
`LIST_SUBSCRIPTIONS` requests on `/stream` or `/ws`; events wrapped as `{"stream", "data"}`.
While a candle is open it sends `"x": false` updates (every 1 s for `1s`, every 2 s otherwise);
right after the close the final `"x": true` event with the candle's final values (the rows
`SimServer.final_row` gives). Binance's limits: 1,024 streams per connection, 5 incoming messages
per second (more closes the connection). Faults (`WsFaults`) can be switched on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ohlcv_sim.engine import INTERVALS

log = logging.getLogger(__name__)

MAX_STREAMS = 1024
MAX_INCOMING_PER_S = 5
FUTURES_MAX_STREAMS = 200
FUTURES_MAX_INCOMING_PER_S = 10
FUTURES_INTERVALS = [k for k in INTERVALS if k != "1s"]


@dataclass
class WsFaults:
    drop_final_share: float = 0.0  # share of final (x: true) events never sent
    disconnect_every_s: float | None = None  # close each connection this long after it opened
    shutdown_every_s: float | None = None  # send serverShutdown this long after open, close 2 s later
    malformed_every_s: float | None = None  # send a malformed message this often
    stall_after_s: float | None = None  # each connection goes silent (stays open) after this long
    max_streams: int = MAX_STREAMS
    futures_max_streams: int = FUTURES_MAX_STREAMS  # per connection on /fapi and /dapi


def _stream_name(market_id: str, interval: str) -> str:
    return f"{market_id.lower()}@kline_{interval}"


class WsSim:
    """Started by SimServer (its own thread and asyncio loop); `url` is the base URL."""

    def __init__(self, sim, faults: WsFaults | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.sim = sim
        self.faults = faults or WsFaults()
        self.host, self._port = host, port
        self._rng = random.Random(sim.config.seed + 1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._by_stream = {}  # spot: stream name -> (series, interval, event format)
        for spec in sim.config.symbols:
            for name in INTERVALS:
                self._by_stream[_stream_name(spec.market_id, name)] = (spec, name, "spot")
        self._routes = {"spot": self._by_stream, "usdm": {}, "coinm": {}, "legacy": {}}
        from ohlcv_sim.futures import index_series

        for spec in sim.config.futures:
            streams = self._routes[spec.family]
            low = spec.market_id.lower()
            for name in FUTURES_INTERVALS:
                streams[f"{low}@kline_{name}"] = (spec, name, "kline")
            streams[f"{low}@markPrice"] = (spec, "3s", "markPrice")
            streams[f"{low}@markPrice@1s"] = (spec, "1s", "markPrice")
            if spec.family == "coinm":
                index = index_series(sim.config.futures, "coinm", spec.pair)
                for name in FUTURES_INTERVALS:
                    streams[f"{low}@markPriceKline_{name}"] = (spec.series("mark"), name,
                                                              "markPrice_kline")
                    streams[f"{spec.pair.lower()}@indexPriceKline_{name}"] = (
                        index, name, "indexPrice_kline")
        self.stats_lock = threading.Lock()
        self.counters = {"connections": 0, "open_connections": 0, "max_streams_per_connection": 0,
                         "finals_sent": 0, "finals_dropped": 0, "updates_sent": 0,
                         "malformed_sent": 0, "shutdowns_sent": 0, "disconnects": 0,
                         "stalls": 0, "subscribe_requests": 0, "rate_limit_closes": 0,
                         "usdm_connections": 0, "coinm_connections": 0,
                         "legacy_connections": 0, "mark_price_sent": 0}
        self.connection_streams: list[int] = []  # streams per connection, in connection order

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> "WsSim":
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="sim-ws", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._server = self._loop.run_until_complete(self._open())
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()

    async def _open(self):
        return await serve(self._handle, self.host, self._port, max_size=2**20, compression=None)

    def stop(self) -> None:
        if self._loop is None or self._server is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._server.close)
        self._thread.join(10)
        self._thread = None

    def stats(self) -> dict:
        with self.stats_lock:
            out = dict(self.counters)
            out["connection_streams"] = list(self.connection_streams)
        return out

    def _count(self, key: str, n: int = 1) -> None:
        with self.stats_lock:
            self.counters[key] += n

    # --- one connection -----------------------------------------------------------------------
    @staticmethod
    def route(path: str) -> tuple[str, bool, list[str]] | None:
        """(route, raw, streams named in the path) of a connection path, None if unknown.
        Spot: /stream, /ws. USD-M (2026 layout): /fapi/market/stream, /fapi/market/ws[/<s>];
        the legacy unrouted /fapi/stream, /fapi/ws[/<s>] (and /fapi/public/...) accept
        connections and push nothing. COIN-M: /dapi/stream, /dapi/ws[/<s>]. Raw (/ws) paths get
        bare events, /stream paths {"stream", "data"}."""
        p = path.rstrip("/") or "/"
        if p in ("/stream", "/ws"):
            return "spot", False, []
        for prefix, route in (("/fapi/market", "usdm"), ("/dapi", "coinm"), ("/fapi", "legacy"),
                              ("/fapi/public", "legacy")):
            rest = p[len(prefix):] if p.startswith(prefix + "/") else None
            if rest is None:
                continue
            if rest == "/stream":
                return route, False, []
            if rest == "/ws":
                return route, True, []
            if rest.startswith("/ws/"):
                return route, True, [n for n in rest[4:].split("/") if n]
            if route == "legacy":
                return route, False, []
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path)
        found = self.route(parts.path)
        if found is None:
            await ws.close(1008, "unknown path")
            return
        route, raw, names = found
        streams = self._routes[route]
        names += [n for v in parse_qs(parts.query).get("streams", []) for n in v.split("/") if n]
        limit = self.faults.max_streams if route == "spot" else self.faults.futures_max_streams
        subs: dict[str, tuple] = {}
        if len(names) > limit:
            await ws.close(1008, f"too many streams: {len(names)} > {limit}")
            return
        for n in names:
            if n in streams:
                subs[n] = streams[n]
        with self.stats_lock:
            self.counters["connections"] += 1
            self.counters["open_connections"] += 1
            if route != "spot":
                self.counters[f"{route}_connections"] += 1
            index = len(self.connection_streams)
            self.connection_streams.append(len(subs))
        loop = asyncio.get_running_loop()
        opened = loop.time()
        sender = asyncio.create_task(self._send_loop(ws, subs, opened, raw))
        try:
            await self._receive_loop(ws, subs, index, streams, limit,
                                     MAX_INCOMING_PER_S if route == "spot"
                                     else FUTURES_MAX_INCOMING_PER_S)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            self._count("open_connections", -1)

    async def _receive_loop(self, ws: ServerConnection, subs: dict, index: int,
                            streams: dict, limit: int, per_s: int) -> None:
        loop = asyncio.get_running_loop()
        window, count = -1, 0
        async for raw in ws:
            second = int(loop.time())
            if second != window:
                window, count = second, 0
            count += 1
            if count > per_s:
                self._count("rate_limit_closes")
                await ws.close(1008, "Too many requests")
                return
            try:
                req = json.loads(raw)
                method, rid = req["method"], req.get("id")
                params = req.get("params") or []
            except (ValueError, KeyError, TypeError):
                await ws.send(json.dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": None}))
                continue
            if method == "SUBSCRIBE":
                self._count("subscribe_requests")
                if len(set(subs) | set(params)) > limit:
                    await ws.send(json.dumps({"error": {"code": 2, "msg": "Too many streams"}, "id": rid}))
                    continue
                for n in params:
                    if n in streams:
                        subs[n] = streams[n]
                with self.stats_lock:
                    self.connection_streams[index] = len(subs)
                await ws.send(json.dumps({"result": None, "id": rid}))
            elif method == "UNSUBSCRIBE":
                for n in params:
                    subs.pop(n, None)
                await ws.send(json.dumps({"result": None, "id": rid}))
            elif method == "LIST_SUBSCRIPTIONS":
                await ws.send(json.dumps({"result": sorted(subs), "id": rid}))
            else:
                await ws.send(json.dumps({"error": {"code": 1, "msg": "Unknown method"}, "id": rid}))

    async def _send_loop(self, ws: ServerConnection, subs: dict, opened: float,
                         raw: bool = False) -> None:
        """Wake on a 500 ms grid of the exchange clock: finals at each close, updates between."""
        f = self.faults
        loop = asyncio.get_running_loop()
        next_malformed = opened + f.malformed_every_s if f.malformed_every_s else None
        shutdown_at = opened + f.shutdown_every_s if f.shutdown_every_s else None
        try:
            while True:
                now = self.sim.now_ms()
                wake = (now // 500 + 1) * 500
                await asyncio.sleep((wake - self.sim.now_ms()) / 1000)
                age = loop.time() - opened
                if f.disconnect_every_s is not None and age >= f.disconnect_every_s:
                    self._count("disconnects")
                    ws.transport.abort()  # abrupt, as a network cut: no close frame
                    return
                if f.stall_after_s is not None and age >= f.stall_after_s:
                    self._count("stalls")
                    await asyncio.Future()  # open and silent until the client gives up
                if shutdown_at is not None and loop.time() >= shutdown_at:
                    self._count("shutdowns_sent")
                    await ws.send(json.dumps({"e": "serverShutdown", "E": self.sim.now_ms()}))
                    shutdown_at = None
                    loop.call_later(2.0, lambda: asyncio.ensure_future(ws.close(1001, "shutdown")))
                if next_malformed is not None and loop.time() >= next_malformed:
                    next_malformed += f.malformed_every_s
                    self._count("malformed_sent")
                    await ws.send(self._malformed())
                messages = []
                for name, (spec, interval, fmt) in list(subs.items()):
                    if fmt == "markPrice":
                        msg = self._mark_price(name, spec, interval, wake)
                    else:
                        msg = self._event(name, spec, interval, wake, fmt)
                    if msg is not None:
                        if raw:  # a /ws connection: the bare event
                            msg = json.dumps(json.loads(msg)["data"], separators=(",", ":"))
                        messages.append(msg)
                for m in messages:
                    await ws.send(m)
        except ConnectionClosed:
            return

    def _malformed(self) -> str:
        kind = self._rng.randrange(3)
        if kind == 0:
            return "{not json"
        if kind == 1:
            return json.dumps({"stream": "btcusdt@kline_1s",
                               "data": {"e": "kline", "s": "BTCUSDT", "k": {"t": "soon", "x": True}}})
        return json.dumps({"stream": "btcusdt@kline_1s", "data": {
            "e": "kline", "E": 0, "s": "BTCUSDT",
            "k": {"t": 0, "T": 999, "s": "BTCUSDT", "i": "1s", "o": 1.5, "c": "1", "h": "1",
                  "l": "1", "v": "1", "n": 1, "x": True, "q": "1", "V": "1", "Q": "1"}}})

    def _mark_price(self, name: str, spec, interval: str, wake: int) -> str | None:
        """`<symbol>@markPrice` every 3 s, `@markPrice@1s` every second: p the mark price (the
        close of the mark 1m candle in progress), i the index price (likewise), P = p, r the
        current funding rate (the one the next settlement will have) and T the next funding time
        (SimServer.funding); a delivery contract has r "" and T 0."""
        if wake % (3000 if interval == "3s" else 1000) != 0:
            return None
        engine = self.sim.engine
        minute = wake // 60_000 * 60_000
        if engine.next_available(spec, minute, 60_000) != minute:
            return None  # before onboard or after delivery
        from ohlcv_sim.futures import index_series

        mark = engine.final_row(spec.series("mark"), minute, 60_000)[4]
        index = engine.final_row(index_series(self.sim.config.futures, spec.family, spec.pair),
                                 minute, 60_000)[4]
        current = self.sim.funding.current(spec.family, spec.market_id, wake)
        rate, nxt = current if current is not None else ("", 0)
        self._count("mark_price_sent")
        return json.dumps({"stream": name, "data": {
            "e": "markPriceUpdate", "E": wake, "s": spec.market_id, "p": mark, "i": index,
            "P": mark, "r": rate, "T": nxt}}, separators=(",", ":"))

    def _event(self, name: str, spec, interval: str, wake: int, fmt: str = "spot") -> str | None:
        tf = INTERVALS[interval]
        engine = self.sim.engine
        off = engine._offset(tf)
        if (wake - off) % tf == 0:
            t = wake - tf
            if engine.next_available(spec, t, tf) != t:
                return None  # maintenance or before listing: no candle, no event
            if self.faults.drop_final_share and self._rng.random() < self.faults.drop_final_share:
                self._count("finals_dropped")
                return None
            self._count("finals_sent")
            return _kline_message(name, spec, interval, engine.final_row(spec, t, tf), True, wake,
                                  fmt)
        period = 1000 if tf == 1000 else 2000
        if wake % period != (500 if tf == 1000 else 0):
            return None
        t = (wake - off) // tf * tf + off
        if engine.next_available(spec, t, tf) != t:
            return None
        row = engine._live(engine.final_row(spec, t, tf), tf, wake)
        self._count("updates_sent")
        return _kline_message(name, spec, interval, row, False, wake, fmt)


def _kline_message(name: str, spec, interval: str, row: list, final: bool, now: int,
                   fmt: str = "spot") -> str:
    """A kline event: spot and futures `kline`; COIN-M `markPrice_kline` (k.s the contract) and
    `indexPrice_kline` (k.s "0"), both with `ps` the pair."""
    k = {"t": row[0], "T": row[6], "s": spec.market_id, "i": interval, "f": 100,
         "L": 100 + row[8], "o": row[1], "c": row[4], "h": row[2], "l": row[3], "v": row[5],
         "n": row[8], "x": final, "q": row[7], "V": row[9], "Q": row[10], "B": "0"}
    if fmt in ("spot", "kline"):
        data = {"e": "kline", "E": now, "s": spec.market_id, "k": k}
    else:
        pair = spec.market_id.split("_")[0]
        k["f"], k["L"] = row[0], min(now, row[6])
        if fmt == "indexPrice_kline":
            k["s"] = "0"
        data = {"e": fmt, "E": now, "ps": pair, "k": k}
    return json.dumps({"stream": name, "data": data}, separators=(",", ":"))
