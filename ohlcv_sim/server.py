"""The simulator's HTTP server: Binance's spot REST paths, weights, limits, errors and faults."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from ohlcv_sim import fapi
from ohlcv_sim.archive import ArchiveSim
from ohlcv_sim.engine import INTERVALS, CandleEngine, SimConfig, encode_rows
from ohlcv_sim.funding import FundingModel

log = logging.getLogger(__name__)

WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20, "/api/v3/klines": 2}
UNTHROTTLED_LIMIT = 100_000_000
_CONTROLS = ("/sim/outage", "/sim/halt", "/sim/resume", "/sim/phase")
_GARBAGE = (
    (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad"
     b" Gateway</h1></center><hr><center>cloudfront</center></body></html>", "text/html"),
    (b'{"status": "ok", "data": null}', "application/json;charset=UTF-8"),
    (b'[[1700000000000, "1.0"], {"a": 1}]', "application/json;charset=UTF-8"),
    (b"", "application/json;charset=UTF-8"),
    (None, "application/json;charset=UTF-8"),  # the real body, cut in the middle
)


class _Weights:
    """Fixed windows aligned to the exchange clock, as Binance counts request weight."""

    def __init__(self, config: SimConfig, limit_attr: str = "weight_limit",
                 window_s: int | None = None, ban: bool = True) -> None:
        self.config = config
        self.limit_attr = limit_attr  # the SimConfig field holding this budget's limit
        self.fixed_window_s = window_s  # None: SimConfig.weight_window_s (spot)
        self.ban = ban  # False: only 429s, never a 418 ban
        self.lock = threading.Lock()
        self.window = -1
        self.used = 0
        self.over = 0
        self.banned_until = 0.0
        self.stats = {"requests": 0, "klines": 0, "rejected_429": 0, "rejected_418": 0,
                      "injected_429": 0, "injected_5xx": 0, "injected_garbage": 0,
                      "injected_short": 0, "outage_503": 0, "windows": {},
                      "paths": {}}  # requests per REST path (/api/v3/exchangeInfo: markets loads)

    @property
    def limit(self) -> int | None:
        return getattr(self.config, self.limit_attr)

    @property
    def window_s(self) -> int:
        return self.fixed_window_s or self.config.weight_window_s

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000

    def header_name(self) -> str:
        s = self.window_s
        if s % 86400 == 0:
            return f"X-MBX-USED-WEIGHT-{s // 86400}D"
        if s % 3600 == 0:
            return f"X-MBX-USED-WEIGHT-{s // 3600}H"
        if s % 60 == 0:
            return f"X-MBX-USED-WEIGHT-{s // 60}M"
        return f"X-MBX-USED-WEIGHT-{s}S"

    def count_path(self, path: str) -> None:
        with self.lock:
            self.stats["paths"][path] = self.stats["paths"].get(path, 0) + 1

    def charge(self, weight: int, now_ms: int) -> tuple[int, int | None, float]:
        """Returns (used, status to refuse with or None, retry-after seconds)."""
        with self.lock:
            self.stats["requests"] += 1
            window = now_ms // self.window_ms
            if window != self.window:
                self.window, self.used, self.over = window, 0, 0
            reset_in = ((window + 1) * self.window_ms - now_ms) / 1000
            if self.banned_until > now_ms:
                self.stats["rejected_418"] += 1
                return self.used, 418, (self.banned_until - now_ms) / 1000
            limit = self.limit
            if limit is not None and self.used + weight > limit:
                self.over += 1
                if self.ban and self.over > self.config.ban_after:
                    self.banned_until = now_ms + self.config.ban_seconds * 1000
                    self.stats["rejected_418"] += 1
                    return self.used, 418, self.config.ban_seconds
                self.stats["rejected_429"] += 1
                return self.used, 429, reset_in
            self.used += weight
            self.stats["windows"][window] = self.used
            return self.used, None, 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, fmt: str, *args) -> None:  # quiet: the access log would cost time
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        sim = self.server.sim
        parts = urlsplit(self.path)
        path = parts.path
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if sim.config.latency_ms:
            with sim.archive.in_flight():  # counts requests answered at once (max_in_flight)
                time.sleep(sim.config.latency_ms / 1000)
        now = sim.now_ms()
        if path == "/sim/stats":
            return self._json(200, sim.stats())
        if path.startswith("/data/"):  # the public archive (data.binance.vision), sim/archive.py
            return self._send(*sim.archive.handle(path))
        if path in _CONTROLS:
            return self._control(path, params)
        if path.startswith(("/fapi/", "/dapi/")):  # futures, sim/fapi.py
            return fapi.handle(self, path, params, now)
        weight = WEIGHTS.get(path)
        if weight is None:
            return self._send(404, b"<html><body>404 Not Found</body></html>", "text/html")
        sim.weights.count_path(path)
        if sim.in_outage():
            sim.weights.stats["outage_503"] += 1
            return self._send(503, b"<html><body>503 Service Temporarily Unavailable</body></html>",
                              "text/html")
        used, refuse, retry = sim.weights.charge(weight, now)
        headers = {sim.weights.header_name(): str(used)}
        if refuse is not None:
            headers["Retry-After"] = str(max(1, int(retry + 0.999)))
            msg = ("Way too much request weight used; IP banned until %d." % (now + retry * 1000)
                   if refuse == 418 else
                   "Too much request weight used; current limit is %d request weight per %d "
                   "SECOND. Please use WebSocket Streams for live updates to avoid polling the API."
                   % (sim.config.weight_limit or 0, sim.config.weight_window_s))
            return self._json(refuse, {"code": -1003, "msg": msg}, headers)
        if path == "/api/v3/ping":
            return self._json(200, {}, headers)
        if path == "/api/v3/time":
            return self._json(200, {"serverTime": now}, headers)
        if path == "/api/v3/exchangeInfo":
            info = sim.exchange_info(now)
            if params.get("symbol"):  # Binance: one symbol's entry, -1121 if it is not listed
                info["symbols"] = [e for e in info["symbols"] if e["symbol"] == params["symbol"]]
                if not info["symbols"]:
                    return self._error(-1121, "Invalid symbol.", headers)
            return self._json(200, info, headers)
        return self._klines(params, now, headers)

    def _control(self, path: str, params: dict) -> None:
        """/sim/outage?seconds=N, /sim/halt?symbol=BTCUSDT[&delist=1], /sim/resume?symbol=...,
        /sim/phase (forget the first and last klines times: a benchmark's next fetch phase)"""
        sim = self.server.sim
        try:
            if path == "/sim/phase":
                with sim.weights.lock:
                    sim.weights.stats.pop("klines_first_ms", None)
                    sim.weights.stats.pop("klines_last_ms", None)
            elif path == "/sim/outage":
                sim.outage(float(params.get("seconds", "60")))
            elif path == "/sim/halt":
                sim.halt(params["symbol"], delist=params.get("delist") in ("1", "true"))
            else:
                sim.resume(params["symbol"])
        except (KeyError, ValueError) as exc:
            return self._json(400, {"error": str(exc)})
        return self._json(200, {"ok": True})

    def _klines(self, params: dict, now: int, headers: dict) -> None:
        sim = self.server.sim
        fault = sim.draw_fault()
        if fault == 429:
            sim.weights.stats["injected_429"] += 1
            headers["Retry-After"] = "1"
            return self._json(429, {"code": -1003, "msg": "Too many requests (injected)."}, headers)
        if fault == 503:
            sim.weights.stats["injected_5xx"] += 1
            return self._send(503, b"Service Unavailable", "text/plain", headers)
        sim.count_klines()
        sym = params.get("symbol")
        if not sym:
            return self._error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.", headers)
        spec = sim.config.spec(sym)
        by_symbol = sim.weights.stats.setdefault("klines_by_symbol", {})
        with sim.weights.lock:
            by_symbol[sym] = by_symbol.get(sym, 0) + 1
        if spec is None or sim.delisted(sym):
            return self._error(-1121, "Invalid symbol.", headers)
        tf = INTERVALS.get(params.get("interval", ""))
        if tf is None:
            return self._error(-1120, "Invalid interval.", headers)
        try:
            limit = int(params.get("limit", 500))
            start = int(params["startTime"]) if "startTime" in params else None
            end = int(params["endTime"]) if "endTime" in params else None
        except ValueError:
            return self._error(-1100, "Illegal characters found in a parameter.", headers)
        if not 1 <= limit <= 1000:
            return self._error(-1130, "Invalid data sent for a parameter.", headers)
        if start is not None and end is not None and start > end:
            return self._error(-1023, "Start time is greater than end time.", headers)
        with sim.weights.lock:
            sim.weights.stats["klines"] += 1
            sim.weights.stats.setdefault("klines_first_ms", now)
            sim.weights.stats["klines_last_ms"] = now  # a benchmark's fetch phase: first to last
        body = sim.engine.klines_body(spec, tf, start, end, limit, now)
        bad = sim.draw_answer_fault()
        if bad == "garbage":
            sim.weights.stats["injected_garbage"] += 1
            body, ctype = sim.garbage(body)
            return self._send(200, body, ctype, headers)
        if bad == "short":
            rows = json.loads(body)
            if len(rows) >= 2:
                sim.weights.stats["injected_short"] += 1
                with sim._rng_lock:
                    keep = sim._rng.randint(1, len(rows) - 1)
                body = encode_rows(rows[:keep])
        self._send(200, body, "application/json;charset=UTF-8", headers)

    def _error(self, code: int, msg: str, headers: dict) -> None:
        self._json(400, {"code": code, "msg": msg}, headers)

    def _json(self, status: int, body, headers: dict | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json;charset=UTF-8", headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sim: "SimServer"


class SimServer:
    """Start with `start()` (a background thread) or `serve_forever()`; `url` is the base URL."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 ws_port: int | None = None, ws_faults=None):
        self.config = config or SimConfig()
        self.engine = CandleEngine(self.config)
        self.weights = _Weights(self.config)
        # each futures family has its own budget (REQUEST_WEIGHT per minute)
        self.futures_weights = {f: _Weights(self.config, "futures_weight_limit", 60)
                                for f in ("usdm", "coinm")}
        # fundingRate + fundingInfo: their own limit (500 per 5 minutes), 429 over it, no ban
        self.funding_weights = {f: _Weights(self.config, "funding_limit",
                                            self.config.funding_window_s, ban=False)
                                for f in ("usdm", "coinm")}
        self._rng = random.Random(self.config.seed)
        self._rng_lock = threading.Lock()
        self.funding = FundingModel(self.config, self.now_ms())  # sim/funding.py
        self.archive = ArchiveSim(self)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.sim = self
        self._thread: threading.Thread | None = None
        self.ws = None  # the websocket endpoint (sim/ws.py), when ws_port is given (0: any port)
        if ws_port is not None:
            from ohlcv_sim.ws import WsSim

            self.ws = WsSim(self, ws_faults, host=host, port=ws_port)

    @property
    def ws_url(self) -> str | None:
        return self.ws.url if self.ws is not None else None

    @property
    def usdm_ws_url(self) -> str | None:
        """USD-M websocket base (`<ws_url>/fapi`): klines and mark price on
        `<usdm>/market/stream?streams=...` or `<usdm>/market/ws/<stream>`; the legacy unrouted
        `<usdm>/stream` accepts connections but pushes no market data."""
        return f"{self.ws.url}/fapi" if self.ws is not None else None

    @property
    def coinm_ws_url(self) -> str | None:
        """COIN-M websocket base (`<ws_url>/dapi`): `<coinm>/stream?streams=...`,
        `<coinm>/ws/<stream>`."""
        return f"{self.ws.url}/dapi" if self.ws is not None else None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.config.clock_offset_ms

    def _draw(self, *outcomes: tuple[float, object]):
        """One outcome by its share of requests (one draw, only when some share is set)."""
        if not any(share for share, _ in outcomes):
            return None
        with self._rng_lock:
            x = self._rng.random()
        edge = 0.0
        for share, outcome in outcomes:
            edge += share
            if x < edge:
                return outcome
        return None

    def draw_fault(self) -> int | None:
        c = self.config
        return self._draw((c.share_429, 429), (c.share_5xx, 503))

    # --- faults and controls (run time) -----------------------------------------------------------
    def draw_answer_fault(self) -> str | None:
        c = self.config
        return self._draw((c.share_garbage, "garbage"), (c.share_short_pages, "short"))

    def garbage(self, body: bytes) -> tuple[bytes, str]:
        """An unusable 200 body, in turn each of the kinds a proxy or a CDN produces."""
        with self._rng_lock:
            self._garbage_turn = getattr(self, "_garbage_turn", -1) + 1
            junk, ctype = _GARBAGE[self._garbage_turn % len(_GARBAGE)]
        if junk is None:
            junk = body[: max(1, len(body) // 2)] if len(body) > 2 else b"[[17000"
        return junk, ctype

    def count_klines(self) -> None:
        """Starts the configured outage after `outage_after_klines` klines requests."""
        c = self.config
        if c.outage_after_klines is None:
            return
        with self._rng_lock:
            self._klines_seen = getattr(self, "_klines_seen", 0) + 1
            start = self._klines_seen == c.outage_after_klines
        if start:
            self.outage(c.outage_seconds)

    def outage(self, seconds: float) -> None:
        """Every /api/v3 request answers 503 for `seconds` from now."""
        self._outage_until = time.monotonic() + seconds
        log.info("simulated outage for %.0fs", seconds)

    def in_outage(self) -> bool:
        return time.monotonic() < getattr(self, "_outage_until", 0.0)

    def halt(self, symbol: str, delist: bool = False) -> None:
        """Stop trading a symbol (market id or BASE/QUOTE) from now: exchangeInfo says BREAK and
        no candle opens from now on; `delist` also drops it from exchangeInfo and klines answer
        -1121, as Binance does for a delisted symbol."""
        mid = self._market_id(symbol)
        windows = self.config.halts.setdefault(mid, [])
        if not windows or windows[-1][1] is not None:
            windows.append([self.now_ms(), None])
        if delist:
            self._delisted = getattr(self, "_delisted", set()) | {mid}

    def resume(self, symbol: str) -> None:
        """Trade the symbol again from now: candles again from the next open time."""
        mid = self._market_id(symbol)
        windows = self.config.halts.get(mid, [])
        if windows and windows[-1][1] is None:
            windows[-1][1] = self.now_ms()
        self._delisted = getattr(self, "_delisted", set()) - {mid}

    def halted(self, market_id: str) -> bool:
        windows = self.config.halts.get(market_id, [])
        return bool(windows) and windows[-1][1] is None

    def delisted(self, market_id: str) -> bool:
        return market_id in getattr(self, "_delisted", set())

    def _market_id(self, symbol: str) -> str:
        mid = symbol.replace("/", "").upper()
        if self.config.spec(mid) is None:
            raise KeyError(f"the simulator does not list {symbol!r}")
        return mid

    def final_row(self, symbol: str, timeframe: str, open_time: int) -> list:
        """The final candle the exchange will serve for this open time (for checks)."""
        spec = next(s for s in self.config.symbols if s.symbol == symbol)
        return self.engine.final_row(spec, open_time, INTERVALS[timeframe])

    def final_rows(self, symbol: str, timeframe: str, start: int, end: int) -> list[list]:
        """Every final candle the exchange has with open time in [start, end)."""
        spec = next(s for s in self.config.symbols if s.symbol == symbol)
        tf = INTERVALS[timeframe]
        out = []
        t = self.engine.next_available(spec, start, tf)
        while t < end:
            out.append(self.engine.final_row(spec, t, tf))
            t = self.engine.next_available(spec, t + tf, tf)
        return out

    # --- futures (for checks) --------------------------------------------------------------------
    def futures_series(self, symbol_id: str, family: str, price: str = "trade"):
        """The engine series of a futures contract id (or, for index, a pair) in family
        usdm|coinm; a unified symbol (BTC/USDT:USDT) works too. KeyError when there is none."""
        symbol_id = self._futures_id(symbol_id, family)
        series = self.config.futures_series(family, symbol_id, price)
        if series is None:
            raise KeyError(f"the simulator has no {family} {price} series {symbol_id!r}")
        return series

    def _futures_id(self, symbol: str, family: str) -> str:
        if "/" not in symbol:
            return symbol
        spec = next((f for f in self.config.futures if f.symbol == symbol), None)
        if spec is None or spec.family != family:
            raise KeyError(f"the simulator has no {family} contract {symbol!r}")
        return spec.market_id

    def futures_final_rows(self, symbol_id: str, family: str, price: str, timeframe: str,
                           start: int, end: int) -> list[list]:
        """Every final row the futures REST serves with open time in [start, end), exactly as
        served: symbol_id a contract id (BTCUSDT, BTCUSDT_261225, BTCUSD_PERP, BTCUSD_261225),
        family usdm|coinm, price trade|mark|index|premium. For index, a pair (BTCUSDT, BTCUSD)
        gives the pair's whole series; a contract id gives its pair's rows clipped to the
        contract's trading span [onboard, delivery), which is what a store keeps for it."""
        symbol_id = self._futures_id(symbol_id, family)
        series = self.futures_series(symbol_id, family, price)
        tf = INTERVALS[timeframe]
        spec = self.config.future(family, symbol_id) if price == "index" else None
        if spec is not None:  # a contract's index rows: its own span
            start = max(start, self.engine.next_available(spec, spec.onboard, tf))
            if spec.delivery is not None:
                end = min(end, spec.delivery)
        out = []
        t = self.engine.next_available(series, start, tf)
        while t < end:
            out.append(self.engine.final_row(series, t, tf))
            t = self.engine.next_available(series, t + tf, tf)
        return out

    def futures_final_row(self, symbol_id: str, family: str, price: str, timeframe: str,
                          open_time: int) -> list:
        """The final futures row for one open time (see futures_final_rows)."""
        series = self.futures_series(symbol_id, family, price)
        return self.engine.final_row(series, open_time, INTERVALS[timeframe])

    def funding_settlements(self, symbol_id: str, family: str = "usdm", start: int = 0,
                            end: int | None = None) -> list[dict]:
        """Every funding settlement of a perpetual with fundingTime in [start, end] (inclusive;
        end None: now), ascending, as fundingRate serves them ({symbol, fundingTime,
        fundingRate, markPrice}; COIN-M without markPrice). A delivery contract has none."""
        from ohlcv_sim.fapi import funding_rows

        now = self.now_ms()
        symbol_id = self._futures_id(symbol_id, family)
        spec = self.config.future(family, symbol_id)
        if spec is None:
            raise KeyError(f"the simulator has no {family} contract {symbol_id!r}")
        hi = now if end is None else end
        return funding_rows(self, family, symbol_id, max(start, spec.onboard), hi, 10**9, now)

    def exchange_info(self, now: int) -> dict:
        limit = self.config.weight_limit or UNTHROTTLED_LIMIT
        s = self.config.weight_window_s
        interval, num = ("MINUTE", s // 60) if s % 60 == 0 else ("SECOND", s)
        return {
            "timezone": "UTC",
            "serverTime": now,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": interval, "intervalNum": num, "limit": limit},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [_symbol_info(spec, "BREAK" if self.halted(spec.market_id) else "TRADING")
                        for spec in self.config.symbols if not self.delisted(spec.market_id)],
        }

    def stats(self) -> dict:
        w = self.weights
        with w.lock:
            out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in w.stats.items()
                   if k != "windows"}
            out["windows"] = {str(k): v for k, v in w.stats["windows"].items()}
        out["weight_limit"] = self.config.weight_limit
        out["weight_window_s"] = self.config.weight_window_s
        for family, fw in self.futures_weights.items():  # {"usdm": {...}, "coinm": {...}}
            with fw.lock:
                f_out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in fw.stats.items()
                         if k != "windows"}
                f_out["windows"] = {str(k): v for k, v in fw.stats["windows"].items()}
            f_out["weight_limit"] = self.config.futures_weight_limit
            with self.funding_weights[family].lock:
                fs = self.funding_weights[family].stats
                f_out["funding_requests"] = fs["requests"]
                f_out["funding_rejected_429"] = fs["rejected_429"]
            out[family] = f_out
        out.update(self.archive.stats())
        return out

    def start(self) -> "SimServer":
        if self.ws is not None:
            self.ws.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        if self.ws is not None:
            self.ws.start()
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() would wait forever for a loop never started
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()
        if self.ws is not None:
            self.ws.stop()

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _symbol_info(spec, status: str = "TRADING") -> dict:
    return {
        "symbol": spec.market_id,
        "status": status,
        "baseAsset": spec.base,
        "baseAssetPrecision": 8,
        "quoteAsset": spec.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True, "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }
