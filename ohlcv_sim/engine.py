"""Deterministic candle generation with Binance's semantics (pure, no I/O).

Every final candle is a function of (symbol, timeframe, open time) and the configuration, so a test
or benchmark can recompute any range exactly. Prices are integer ticks of 0.01, volumes integer
units of 1e-8, rendered as Binance renders them: decimal strings with eight decimals.

As on the exchange, the intervals agree with each other: the 1m candles are generated, every
coarser candle is the aggregate of the 1m candles it holds (first open, highest high, lowest low,
last close, summed volumes and trades; hours are memoised so that a week costs 168 lookups), and
each 1m candle is split into 1s candles that aggregate back to it exactly. A candle exists when
any second of it is outside maintenance and after listing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MASK = (1 << 64) - 1
SECOND, MINUTE, HOUR = 1_000, 60_000, 3_600_000
_NEVER = 1 << 62  # an open time no range reaches
INTERVALS = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000, "3d": 259_200_000, "1w": 604_800_000,
}
OFFSETS = {"1w": 4 * 86_400_000}


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _seed_of(text: str) -> int:
    h = 1469598103934665603
    for ch in text.encode():
        h = ((h ^ ch) * 1099511628211) & MASK
    return h


@dataclass(frozen=True)
class SymbolSpec:
    base: str
    quote: str
    price: int  # typical price in ticks of 0.01
    listed_at: int | None = None  # ms; no candle opens before it

    @property
    def symbol(self) -> str:
        return f"{self.base}/{self.quote}"

    @property
    def market_id(self) -> str:
        return f"{self.base}{self.quote}"

    # what the engine reads of a series (futures series in ohlcv_sim/futures.py have the same)
    @property
    def key(self) -> str:
        """The series' identity: its seed, its caches, its halts (spot: the market id)."""
        return self.market_id

    kind = "trade"  # trade | mark | index | premium
    delivery = None  # ms; no candle opens at or after it (delivery contracts)


def default_symbols(extra: int = 0) -> list[SymbolSpec]:
    specs = [
        SymbolSpec("BTC", "USDT", 6_500_000), SymbolSpec("ETH", "USDT", 350_000),
        SymbolSpec("BNB", "USDT", 60_000), SymbolSpec("SOL", "USDT", 15_000),
        SymbolSpec("XRP", "USDT", 5_000), SymbolSpec("ADA", "USDT", 4_000),
        SymbolSpec("DOGE", "USDT", 2_000), SymbolSpec("LTC", "USDT", 9_000),
        SymbolSpec("ETH", "BTC", 5_000),
    ]
    specs += [SymbolSpec(f"SIM{i:03d}", "USDT", 10_000 + 137 * i) for i in range(extra)]
    return specs


@dataclass
class SimConfig:
    symbols: list[SymbolSpec] = field(default_factory=default_symbols)
    latency_ms: float = 0.0
    share_429: float = 0.0  # share of klines requests answered 429 at random
    share_5xx: float = 0.0  # share of klines requests answered 503 at random
    weight_limit: int | None = None  # None: unthrottled (advertises a very large budget)
    weight_window_s: int = 60
    ban_after: int = 3  # requests over the limit, after a 429, before a 418
    ban_seconds: float = 5.0
    maintenance: list[tuple[int, int]] = field(default_factory=list)  # [start, end) ms
    zero_volume_share: float = 0.0
    settle_lag_ms: int = 0  # after a close, the closed candle still moves for this long
    clock_offset_ms: int = 0  # the exchange's clock minus ours
    seed: int = 7
    # faults of a 200 answer (klines only): a share answered with an unusable body (an HTML page,
    # a truncated body, JSON of another shape), a share cut short (the first rows only)
    share_garbage: float = 0.0
    share_short_pages: float = 0.0
    # after this many klines requests, every /api/v3 request answers 503 for outage_seconds
    outage_after_klines: int | None = None
    outage_seconds: float = 60.0
    # per market id, [start, end) ms without candles while halted (end None: still halted);
    # SimServer.halt/resume maintain it at run time
    halts: dict[str, list[list]] = field(default_factory=dict)
    archive_faults: list[str] = field(default_factory=list)  # see sim/archive.py
    archive_cache: int = 64  # archive files kept built (least recently served dropped first)
    # futures (ohlcv_sim/futures.py): the contracts of /fapi (usdm) and /dapi (coinm), by default
    # built relative to the time the config is made; each family's REQUEST_WEIGHT per minute
    # (None: unthrottled, a very large budget advertised, as for spot)
    futures: list = field(default_factory=lambda: _default_futures())
    futures_weight_limit: int | None = None
    # funding (ohlcv_sim/funding.py): per market id [(from_ms, hours), ...] over the defaults;
    # fundingRate + fundingInfo share `funding_limit` requests per `funding_window_s` (per family)
    funding_schedules: dict = field(default_factory=dict)
    funding_limit: int = 500
    funding_window_s: int = 300
    # futures archive files for periods starting before this (ms) have no header row; None: 30
    # days before the simulator started
    futures_header_from: int | None = None

    def spec(self, market_id: str) -> SymbolSpec | None:
        for s in self.symbols:
            if s.market_id == market_id:
                return s
        return None

    def future(self, family: str, market_id: str):
        """The FuturesSpec of a contract id in a family (usdm, coinm), or None."""
        for s in self.futures:
            if s.family == family and s.market_id == market_id:
                return s
        return None

    def futures_series(self, family: str, market_id: str, price: str = "trade"):
        """The engine series of a contract's price series; index by pair (a contract id names
        its pair's index). None when the family has no such contract or pair."""
        from ohlcv_sim.futures import index_series

        if price == "index":
            spec = self.future(family, market_id)
            return index_series(self.futures, family, spec.pair if spec else market_id)
        spec = self.future(family, market_id)
        return None if spec is None else spec.series(price)


def _default_futures():
    from ohlcv_sim.futures import default_futures

    return default_futures()


def _p(ticks: int) -> str:
    return f"{ticks // 100}.{ticks % 100:02d}000000"


def _q(units: int) -> str:
    return f"{units // 100_000_000}.{units % 100_000_000:08d}"


class CandleEngine:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._zero_cut = int(config.zero_volume_share * 1_000_000)
        self._cache: dict[tuple[str, int], dict[int, str]] = {}
        self._hours: dict[tuple[str, int], tuple] = {}

    # --- availability -------------------------------------------------------------------------
    def _next_second(self, spec: SymbolSpec, t: int) -> int:
        """The first second >= t (aligned to 1s) that is traded: after listing, outside
        maintenance."""
        t = _align_up(t, SECOND)
        while True:
            moved = False
            if spec.listed_at is not None and t < spec.listed_at:
                t = _align_up(spec.listed_at, SECOND)
                moved = True
            if spec.delivery is not None and t >= spec.delivery:
                return _NEVER  # delivered: nothing from delivery on
            for start, end in self.config.maintenance:
                if start <= t < end:
                    t = _align_up(end, SECOND)
                    moved = True
            for start, end in self.config.halts.get(spec.key, ()):
                if end is None and t >= start:
                    return _NEVER  # halted now: nothing from the halt on, until it resumes
                if end is not None and start <= t < end:
                    t = _align_up(end, SECOND)
                    moved = True
            if not moved:
                return t

    def next_available(self, spec: SymbolSpec, t: int, tf: int) -> int:
        """The first open time >= t (aligned up) at which the exchange has a candle: a candle
        exists when any second in it is traded."""
        off = self._offset(tf)
        return _align_down(self._next_second(spec, _align_up(t, tf, off)), tf, off)

    def _opens_in(self, spec: SymbolSpec, start: int, end: int, tf: int) -> list[int]:
        out, t = [], self.next_available(spec, start, tf)
        while t < end:
            out.append(t)
            t = self.next_available(spec, t + tf, tf)
        return out

    @staticmethod
    def _offset(tf: int) -> int:
        return 4 * 86_400_000 if tf == 604_800_000 else 0

    # --- values -------------------------------------------------------------------------------
    def close_of(self, spec: SymbolSpec, seed: int, t: int, tf: int) -> int:
        """The close at open time t: a zero-volume candle keeps the previous close."""
        for _ in range(64):
            h = _mix(seed ^ (t * 0x9E3779B97F4A7C15 & MASK) ^ tf)
            if not (self._zero_cut and (h >> 44) % 1_000_000 < self._zero_cut):
                wave = (t // tf) % 2000
                wave = wave if wave < 1000 else 2000 - wave
                span = max(spec.price // 200, 10)
                return spec.price + (wave * span) // 1000 + (h % (2 * span + 1)) - span
            t -= tf
        return spec.price

    def final_row(self, spec: SymbolSpec, t: int, tf: int) -> list:
        seed = _seed_of(spec.key) ^ self.config.seed
        return self._rows(spec, seed, [t], tf)[0]

    def _rows(self, spec: SymbolSpec, seed: int, times: list[int], tf: int) -> list[list]:
        """Final rows (Binance's 12 fields) for ascending open times of any interval."""
        if spec.kind != "trade":
            return _price_rows(spec.kind, self._ints(spec, seed, times, tf), tf)
        if tf == MINUTE:
            return self._minute_rows(spec, seed, times)
        return [[t, _p(o), _p(h), _p(lo), _p(c), _q(v), t + tf - 1, _q(q), n, _q(tb), _q(tq), "0"]
                for t, o, h, lo, c, v, q, n, tb, tq in self._ints(spec, seed, times, tf)]

    def _ints(self, spec: SymbolSpec, seed: int, times: list[int], tf: int) -> list[tuple]:
        """(t, open, high, low, close, volume, quote, trades, taker base, taker quote) as
        integers (ticks, 1e-8 units) for ascending open times that exist."""
        if tf == MINUTE:
            return self._minute_ints(spec, seed, times)
        if tf == SECOND:
            return self._second_ints(spec, seed, times)
        if tf == HOUR:
            return self._hour_ints(spec, seed, times)
        child = HOUR if tf > HOUR else MINUTE
        groups = [self._opens_in(spec, t, t + tf, child) for t in times]
        flat = self._ints(spec, seed, [c for g in groups for c in g], child)
        out, i = [], 0
        for t, g in zip(times, groups):
            out.append(_merge(t, flat[i:i + len(g)]))
            i += len(g)
        return out

    def _hour_ints(self, spec: SymbolSpec, seed: int, times: list[int]) -> list[tuple]:
        """Hours from their minutes, memoised (every coarser interval is built from hours)."""
        key = spec.key
        memo = self._hours
        found = {t: memo.get((key, t)) for t in times}
        missing = [t for t, v in found.items() if v is None]
        if missing:
            if len(memo) > 400_000:
                memo.clear()
            groups = [self._opens_in(spec, t, t + HOUR, MINUTE) for t in missing]
            flat = self._minute_ints(spec, seed, [m for g in groups for m in g])
            i = 0
            for t, g in zip(missing, groups):
                found[t] = memo[(key, t)] = _merge(t, flat[i:i + len(g)])
                i += len(g)
        return [found[t] for t in times]

    def _second_ints(self, spec: SymbolSpec, seed: int, times: list[int]) -> list[tuple]:
        """1s candles: each minute's candle split over its traded seconds."""
        wanted = set(times)
        minutes = sorted({t // MINUTE * MINUTE for t in times})
        by_t: dict[int, tuple] = {}
        for m in self._minute_ints(spec, seed, minutes):
            secs = self._opens_in(spec, m[0], m[0] + MINUTE, SECOND)
            for row in _split(m, secs, seed):
                if row[0] in wanted:
                    by_t[row[0]] = row
        return [by_t[t] for t in times]

    def _minute_rows(self, spec: SymbolSpec, seed: int, times: list[int]) -> list[list]:
        return [[t, _p(o), _p(h), _p(lo), _p(c), _q(v), t + MINUTE - 1, _q(q), n, _q(tb), _q(tq),
                 "0"] for t, o, h, lo, c, v, q, n, tb, tq in self._minute_ints(spec, seed, times)]

    def _minute_ints(self, spec: SymbolSpec, seed: int, times: list[int]) -> list[tuple]:
        """The generated 1m candles, for ascending open times; the previous close is carried,
        not recomputed. A zero-volume minute keeps the previous close. Mark and index minutes
        are trade-like prices without volumes (60 basic data each), premium minutes small signed
        values in units of 1e-8 (12 basic data each)."""
        if spec.kind == "premium":
            return _premium_minutes(seed, times)
        if spec.kind != "trade":
            return [(t, o, h, lo, c, 0, 0, 60, 0, 0)
                    for t, o, h, lo, c, *_ in self._trade_minutes(spec, seed, times)]
        return self._trade_minutes(spec, seed, times)

    def _trade_minutes(self, spec, seed: int, times: list[int]) -> list[tuple]:
        tf = MINUTE
        out = []
        prev_t = None
        prev_close = 0
        span_c = max(spec.price // 200, 10)
        span_hl = max(spec.price // 400, 5)
        price = spec.price
        zero_cut = self._zero_cut
        for t in times:
            open_ = prev_close if prev_t == t - tf else self.close_of(spec, seed, t - tf, tf)
            h = _mix(seed ^ (t * 0x9E3779B97F4A7C15 & MASK) ^ tf)
            if zero_cut and (h >> 44) % 1_000_000 < zero_cut:
                out.append((t, open_, open_, open_, open_, 0, 0, 0, 0, 0))
                prev_t, prev_close = t, open_
                continue
            wave = (t // tf) % 2000
            wave = wave if wave < 1000 else 2000 - wave
            close = price + (wave * span_c) // 1000 + (h % (2 * span_c + 1)) - span_c
            high = max(open_, close) + (h >> 11) % span_hl
            low = max(1, min(open_, close) - (h >> 23) % span_hl)
            volume = (h >> 29) % 50_000_000_000 + 1_000
            quote = volume * close // 100
            share = (h >> 37) % 101
            out.append((t, open_, high, low, close, volume, quote, (h >> 47) % 5000 + 1,
                        volume * share // 100, quote * share // 100))
            prev_t, prev_close = t, close
        return out

    def _live(self, row: list, tf: int, now: int) -> list:
        """The candle as the exchange shows it at `now`: in progress or still moving."""
        t = row[0]
        close_time = t + tf
        if now >= close_time + self.config.settle_lag_ms:
            return row
        if row[5] == "0" and row[7] == "0":  # mark, index, premium: a price, no volumes
            if now >= close_time:
                return row
            frac_num = max(0, now - t)
            return [t, row[1], row[2], row[3], row[1], "0", row[6], "0",
                    max(1, row[8] * frac_num // tf), "0", "0", "0"]
        if now >= close_time:
            # closed but not final yet: a few trades are still being booked
            return row[:5] + [_shrink(row[5]), row[6], _shrink(row[7]), max(0, row[8] - 1)] + row[9:]
        frac_num = max(0, now - t)
        vol = int(row[5].replace(".", "")) * frac_num // tf
        quote = int(row[7].replace(".", "")) * frac_num // tf
        return [t, row[1], row[2], row[3], row[1], _q(vol), row[6], _q(quote),
                row[8] * frac_num // tf, "0.00000000", "0.00000000", "0"]

    def _times(self, spec: SymbolSpec, tf: int, start: int | None, end: int | None,
               limit: int, now: int, newest: bool = False) -> list[int]:
        """Binance /klines: oldest from startTime, else newest up to endTime (or now).
        `newest` (COIN-M): the newest `limit` open times in [startTime, endTime]."""
        off = self._offset(tf)
        last_open = _align_down(now, tf, off)
        if end is not None:
            last_open = min(last_open, _align_down(end, tf, off))
        if spec.delivery is not None:
            last_open = min(last_open, _align_down(spec.delivery - 1, tf, off))
        times: list[int] = []
        if newest and start is not None:
            t = last_open
            floor = max(_align_up(start, tf, off), _align_down(spec.listed_at or 0, tf, off))
            while t >= floor and len(times) < limit:
                if self.next_available(spec, t, tf) == t:
                    times.append(t)
                t -= tf
            times.reverse()
        elif start is not None:
            t = self.next_available(spec, _align_up(start, tf, off), tf)
            while t <= last_open and len(times) < limit:
                times.append(t)
                t = self.next_available(spec, t + tf, tf)
        else:
            t = last_open
            floor = spec.listed_at or 0
            while t >= floor and len(times) < limit:
                if self.next_available(spec, t, tf) == t:
                    times.append(t)
                t -= tf
            times.reverse()
        return times

    def klines(self, spec: SymbolSpec, tf: int, start: int | None, end: int | None,
               limit: int, now: int, newest: bool = False) -> list[list]:
        times = self._times(spec, tf, start, end, limit, now, newest)
        seed = _seed_of(spec.key) ^ self.config.seed
        rows = self._rows(spec, seed, times, tf)
        # only the newest candles can still be open or moving
        for i in range(len(rows) - 1, -1, -1):
            if rows[i][0] + tf + self.config.settle_lag_ms <= now:
                break
            rows[i] = self._live(rows[i], tf, now)
        return rows

    def klines_body(self, spec: SymbolSpec, tf: int, start: int | None, end: int | None,
                    limit: int, now: int, newest: bool = False) -> bytes:
        """The JSON answer; served from the precomputed cache when it covers the whole page."""
        cache = self._cache.get((spec.key, tf))
        if cache:
            times = self._times(spec, tf, start, end, limit, now, newest)
            if times and times[-1] + tf + self.config.settle_lag_ms <= now:
                parts = [cache.get(t) for t in times]
                if None not in parts:
                    return ("[" + ",".join(parts) + "]").encode()
        return encode_rows(self.klines(spec, tf, start, end, limit, now, newest))

    def precompute(self, spec: SymbolSpec, tf: int, start: int, end: int) -> int:
        """Render the final candles of [start, end) once, so that serving them costs no
        generation: a benchmark then measures the client, not the simulator."""
        seed = _seed_of(spec.key) ^ self.config.seed
        cache = self._cache.setdefault((spec.key, tf), {})
        times, t = [], self.next_available(spec, start, tf)
        while t < end:
            times.append(t)
            t = self.next_available(spec, t + tf, tf)
        for row in self._rows(spec, seed, times, tf):
            cache[row[0]] = encode_rows([row])[1:-1].decode()
        return len(times)


def _premium_close(seed: int, t: int) -> int:
    """A premium index close in units of 1e-8: a slow wave plus noise, about +-0.0006."""
    h = _mix(seed ^ (t * 0x9E3779B97F4A7C15 & MASK) ^ MINUTE)
    wave = (t // MINUTE) % 1440
    wave = wave if wave < 720 else 1440 - wave
    return (wave * 40_000) // 720 - 20_000 + (h % 40_001) - 20_000


def _premium_minutes(seed: int, times: list[int]) -> list[tuple]:
    out, prev_t, prev_close = [], None, 0
    for t in times:
        open_ = prev_close if prev_t == t - MINUTE else _premium_close(seed, t - MINUTE)
        close = _premium_close(seed, t)
        h = _mix(seed ^ (t * 0xD6E8FEB86659FD93 & MASK) ^ MINUTE)
        out.append((t, open_, max(open_, close) + (h >> 11) % 5_000,
                    min(open_, close) - (h >> 23) % 5_000, close, 0, 0, 12, 0, 0))
        prev_t, prev_close = t, close
    return out


def _s8(units: int) -> str:
    """A signed decimal with eight decimals from units of 1e-8: -0.00012345."""
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // 100_000_000}.{units % 100_000_000:08d}"


def _price_rows(kind: str, ints: list[tuple], tf: int) -> list[list]:
    """Mark, index and premium rows: the 12 kline fields with Binance's placeholders (volumes
    "0", the trades position holding the count of basic data)."""
    f = _s8 if kind == "premium" else _p
    return [[t, f(o), f(h), f(lo), f(c), "0", t + tf - 1, "0", n, "0", "0", "0"]
            for t, o, h, lo, c, _v, _q2, n, _tb, _tq in ints]


def _merge(t: int, parts: list[tuple]) -> tuple:
    """The candle at t aggregated from its finer candles, as the exchange aggregates."""
    return (t, parts[0][1], max(p[2] for p in parts), min(p[3] for p in parts), parts[-1][4],
            sum(p[5] for p in parts), sum(p[6] for p in parts), sum(p[7] for p in parts),
            sum(p[8] for p in parts), sum(p[9] for p in parts))


def _cut(total: int, weights: list[int]) -> list[int]:
    """Integer parts of total proportional to weights, summing exactly to total; each part is at
    most its weight's share rounded up, so a part of a part never exceeds the whole."""
    out, acc, prev = [], 0, 0
    wsum = sum(weights)
    for w in weights:
        acc += w
        cur = total * acc // wsum if wsum else 0
        out.append(cur - prev)
        prev = cur
    return out


def _split(m: tuple, secs: list[int], seed: int) -> list[tuple]:
    """1s candles for the traded seconds of minute candle m that aggregate back to m exactly:
    some seconds have no trades (volume 0, OHLC = previous close), the high and the low are each
    reached in a second with trades, the last second with trades closes at the minute's close."""
    t, o, h, lo, c, v, q, n, tb, tq = m
    if v == 0:
        return [(s, o, o, o, o, 0, 0, 0, 0, 0) for s in secs]
    hs = [_mix(seed ^ (s * 0xD6E8FEB86659FD93 & MASK) ^ SECOND) for s in secs]
    traded = [j for j, x in enumerate(hs) if (x >> 40) % 100 >= 35] or [len(secs) - 1]
    if len(traded) > n:
        traded = traded[-n:]
    k = len(traded)
    vols = [1 + x for x in _cut(v - k, [1 + (hs[j] >> 16) % 1000 for j in traded])]
    trades = [1 + x for x in _cut(n - k, [1 + (hs[j] >> 26) % 100 for j in traded])]
    quotes = _cut(q, vols)
    taker_b = _cut(tb, vols)
    taker_q = _cut(tq, quotes)
    hi_j = traded[hs[0] % k]
    lo_j = traded[(hs[0] >> 20) % k]
    last = traded[-1]
    span = h - lo + 1
    out, price, i = [], o, 0
    for j, s in enumerate(secs):
        if i >= k or j != traded[i]:
            out.append((s, price, price, price, price, 0, 0, 0, 0, 0))
            continue
        x = hs[j]
        close = c if j == last else lo + (x >> 8) % span
        top, bottom = max(price, close), min(price, close)
        high = h if j == hi_j else top + (x >> 30) % (h - top + 1) // 4
        low = lo if j == lo_j else bottom - (x >> 50) % (bottom - lo + 1) // 4
        out.append((s, price, high, low, close, vols[i], quotes[i], trades[i], taker_b[i],
                    taker_q[i]))
        price = close
        i += 1
    return out


def _shrink(q: str) -> str:
    units = int(q.replace(".", ""))
    return _q(max(0, units - units // 1000 - 1))


def _align_up(t: int, tf: int, off: int = 0) -> int:
    return -((-(t - off)) // tf) * tf + off


def _align_down(t: int, tf: int, off: int = 0) -> int:
    return (t - off) // tf * tf + off


def encode_rows(rows: list[list]) -> bytes:
    """JSON for kline rows, written directly: the simulator must never be the bottleneck."""
    parts = [
        f'[{r[0]},"{r[1]}","{r[2]}","{r[3]}","{r[4]}","{r[5]}",{r[6]},"{r[7]}",{r[8]},"{r[9]}","{r[10]}","0"]'
        for r in rows
    ]
    return ("[" + ",".join(parts) + "]").encode()
