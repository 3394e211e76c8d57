"""The simulator's data.binance.vision: kline zips and CHECKSUM files from the same deterministic
candles as its REST API, with the archive's habits and switchable faults.

Layout as Binance's: /data/spot/{monthly,daily}/klines/{SYM}/{tf}/{SYM}-{tf}-{YYYY-MM[-DD]}.zip
(+ .CHECKSUM, "<sha256>  <name>"). Open and close times are µs for dates from 2025-01-01 (ms
before); monthly files exist only for months that ended, daily files only up to the day before
yesterday, and none for a period wholly before a symbol's listing.

Faults (SimConfig.archive_faults, `ohlcv sim --archive-fault KIND:SYMBOL:PERIOD`, `*` matches any
symbol or period): `corrupt` (the zip does not match its CHECKSUM), `disagree` (matches its
CHECKSUM but every candle's trade count differs from REST), `missing` (404), `header` (a header
row before the data).
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime, timezone

from ohlcv_sim.engine import INTERVALS, _seed_of

DAY = 86_400_000
MICROS_FROM = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
FAULTS = ("corrupt", "disagree", "missing", "header")
HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
          "taker_buy_volume,taker_buy_quote_volume,ignore\n")
_PATH = re.compile(
    r"^/data/spot/(monthly|daily)/klines/([A-Z0-9]+)/([0-9a-z]+)/"
    r"([A-Z0-9]+)-([0-9a-z]+)-(\d{4})-(\d{2})(?:-(\d{2}))?\.zip(\.CHECKSUM)?$")
COINM_HEADER = ("open_time,open,high,low,close,volume,close_time,base_asset_volume,count,"
                "taker_buy_volume,taker_buy_base_asset_volume,ignore\n")
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate\n"
FUTURES_KINDS = {"klines": "trade", "markPriceKlines": "mark", "indexPriceKlines": "index",
                 "premiumIndexKlines": "premium"}
_FUTURES_PATH = re.compile(
    r"^/data/futures/(um|cm)/(monthly|daily)/(klines|markPriceKlines|indexPriceKlines|"
    r"premiumIndexKlines)/([A-Z0-9_]+)/([0-9a-z]+)/"
    r"([A-Z0-9_]+)-([0-9a-z]+)-(\d{4})-(\d{2})(?:-(\d{2}))?\.zip(\.CHECKSUM)?$")
_FUNDING_PATH = re.compile(
    r"^/data/futures/(um|cm)/monthly/fundingRate/([A-Z0-9_]+)/"
    r"([A-Z0-9_]+)-fundingRate-(\d{4})-(\d{2})\.zip(\.CHECKSUM)?$")


def parse_fault(text: str) -> tuple[str, str, str, str]:
    """(kind, symbol, period, scope). SYMBOL may be scoped as SCOPE@ID, SCOPE one of spot, um,
    cm, a data kind (klines, markPriceKlines, indexPriceKlines, premiumIndexKlines, fundingRate)
    or ROOT.KIND (um.premiumIndexKlines): the fault then hits only those files."""
    kind, sep, rest = text.partition(":")
    symbol, sep2, period = rest.partition(":")
    scope, at, ident = symbol.rpartition("@")
    if kind not in FAULTS or not sep or not sep2 or not ident or not period or (at and not scope):
        raise ValueError(f"archive fault {text!r}: use KIND:SYMBOL:PERIOD with KIND one of "
                         f"{', '.join(FAULTS)}, e.g. corrupt:BTCUSDT:2024-01 (SYMBOL may be "
                         "scoped, e.g. um.premiumIndexKlines@BTCUSDT)")
    return kind, ident.upper().replace("/", ""), period, scope or "*"


def _ms(y: int, m: int, d: int = 1) -> int:
    return int(datetime(y, m, d, tzinfo=timezone.utc).timestamp() * 1000)


class ArchiveSim:
    def __init__(self, sim) -> None:
        self.sim = sim
        self.faults = [parse_fault(f) for f in sim.config.archive_faults]
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        self._pinned: dict[str, tuple[bytes, bytes]] = {}
        self.counts = {"archive_requests": 0, "archive_downloads": 0, "archive_checksums": 0,
                       "archive_404": 0, "max_in_flight": 0}
        self._in_flight = 0
        self._started = sim.now_ms()

    @contextmanager
    def in_flight(self):
        """Around the simulated latency: how many requests (REST or archive) wait at once."""
        with self._lock:
            self._in_flight += 1
            self.counts["max_in_flight"] = max(self.counts["max_in_flight"], self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def stats(self) -> dict:
        with self._lock:
            return dict(self.counts)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _fault(self, kind: str, market_id: str, label: str,
               tags: tuple[str, ...] = ("spot", "klines", "spot.klines")) -> bool:
        return any(k == kind and s in ("*", market_id) and p in ("*", label)
                   and (sc == "*" or sc in tags) for k, s, p, sc in self.faults)

    # --- serving --------------------------------------------------------------------------------
    def handle(self, path: str) -> tuple[int, bytes, str]:
        self._count("archive_requests")
        built = self._resolve(path)
        if built is None:
            self._count("archive_404")
            return 404, (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
                         b"<Message>The specified key does not exist.</Message></Error>"), \
                "application/xml"
        zip_bytes, checksum = built
        if path.endswith(".CHECKSUM"):
            self._count("archive_checksums")
            return 200, checksum, "application/octet-stream"
        self._count("archive_downloads")
        return 200, zip_bytes, "application/zip"

    def _resolve(self, path: str) -> tuple[bytes, bytes] | None:
        if path.startswith("/data/futures/"):
            return self._resolve_futures(path)
        m = _PATH.match(path)
        if m is None:
            return None
        kind, sym, tf_name, sym2, tf2, y, mo, d, _ = m.groups()
        if sym != sym2 or tf_name != tf2 or tf_name not in INTERVALS:
            return None
        if (kind == "daily") != (d is not None):
            return None
        spec = self.sim.config.spec(sym)
        if spec is None:
            return None
        span = self._period(kind, y, mo, d)
        if span is None:
            return None
        start, end, label = span
        if spec.listed_at is not None and end <= spec.listed_at:
            return None
        if self._fault("missing", sym, label):
            return None
        return self._cached(path, lambda: self._build(spec, tf_name, start, end, label))

    # --- files ----------------------------------------------------------------------------------
    def _build(self, spec, tf_name: str, start: int, end: int, label: str) -> tuple[bytes, bytes]:
        tf = INTERVALS[tf_name]
        rows = self._rows(spec, tf, start, end)
        sym = spec.market_id
        micros = start >= MICROS_FROM
        delta = 1 if self._fault("disagree", sym, label) else 0
        csv = self._csv(rows, tf, micros, self._fault("header", sym, label), delta)
        return self._pack(f"{sym}-{tf_name}-{label}", csv,
                          lambda: self._csv(rows, tf, micros, False, 7),
                          self._fault("corrupt", sym, label))

    def _rows(self, series, tf: int, start: int, end: int) -> list[list]:
        """The engine's rows of a series' candles with open time in [start, end)."""
        engine = self.sim.engine
        times, t = [], engine.next_available(series, start, tf)
        while t < end:
            times.append(t)
            t = engine.next_available(series, t + tf, tf)
        return engine._rows(series, _seed_of(series.key) ^ self.sim.config.seed, times, tf)

    # --- futures files ----------------------------------------------------------------------
    def header_from(self) -> int:
        """Futures files of periods starting before this have no header row."""
        c = self.sim.config.futures_header_from
        return c if c is not None else self._started // DAY * DAY - 30 * DAY

    def _resolve_futures(self, path: str) -> tuple[bytes, bytes] | None:
        m = _FUNDING_PATH.match(path)
        if m is not None:
            return self._resolve_funding(path, *m.groups())
        m = _FUTURES_PATH.match(path)
        if m is None:
            return None
        root, kind, data, sym, tf_name, sym2, tf2, y, mo, d, _ = m.groups()
        if sym != sym2 or tf_name != tf2 or tf_name not in INTERVALS or tf_name == "1s":
            return None
        if (kind == "daily") != (d is not None):
            return None
        family = "usdm" if root == "um" else "coinm"
        price = FUTURES_KINDS[data]
        if price == "index":
            from ohlcv_sim.futures import index_series

            series = index_series(self.sim.config.futures, family, sym)
        else:
            spec = self.sim.config.future(family, sym)
            series = None if spec is None else spec.series(price)
        if series is None:
            return None
        span = self._period(kind, y, mo, d)
        if span is None:
            return None
        start, end, label = span
        if series.listed_at is not None and end <= series.listed_at:
            return None
        if series.delivery is not None and start >= series.delivery:
            return None
        tags = (root, data, f"{root}.{data}")
        if self._fault("missing", sym, label, tags):
            return None
        return self._cached(path, lambda: self._build_futures(
            series, root, tf_name, start, end, label, tags))

    def _period(self, kind: str, y: str, mo: str, d: str | None):
        """(start, end, label) of a published period, None when not (yet) published."""
        try:
            start = _ms(int(y), int(mo), int(d) if d else 1)
        except ValueError:
            return None
        end = start + DAY if d else (_ms(int(y) + 1, 1) if mo == "12" else _ms(int(y), int(mo) + 1))
        today = self.sim.now_ms() // DAY * DAY
        if (kind == "monthly" and end > today) or (kind == "daily" and end > today - DAY):
            return None
        return start, end, (f"{y}-{mo}-{d}" if d else f"{y}-{mo}")

    def _cached(self, path: str, build) -> tuple[bytes, bytes]:
        key = path.removesuffix(".CHECKSUM")
        with self._lock:
            hit = self._pinned.get(key) or self._cache.get(key)
            if hit is not None and key in self._cache:
                self._cache.move_to_end(key)
        if hit is None:
            hit = build()
            with self._lock:
                self._cache[key] = hit
                while len(self._cache) > self.sim.config.archive_cache:
                    self._cache.popitem(last=False)
        return hit

    def _build_futures(self, series, root: str, tf_name: str, start: int, end: int, label: str,
                       tags: tuple[str, ...]) -> tuple[bytes, bytes]:
        tf = INTERVALS[tf_name]
        rows = self._rows(series, tf, start, end)
        sym = series.market_id
        header = start >= self.header_from() or self._fault("header", sym, label, tags)
        names = COINM_HEADER if root == "cm" else HEADER
        delta = 1 if self._fault("disagree", sym, label, tags) else 0
        csv = self._csv(rows, tf, False, header, delta, names)
        name = f"{sym}-{tf_name}-{label}"
        return self._pack(name, csv, lambda: self._csv(rows, tf, False, header, 7, names),
                          self._fault("corrupt", sym, label, tags))

    def _resolve_funding(self, path: str, root, sym, sym2, y, mo, _cs):
        if sym != sym2:
            return None
        family = "usdm" if root == "um" else "coinm"
        spec = self.sim.config.future(family, sym)
        if spec is None or spec.delivery is not None:
            return None
        span = self._period("monthly", y, mo, None)
        if span is None:
            return None
        start, end, label = span
        if end <= spec.onboard:
            return None
        tags = (root, "fundingRate", f"{root}.fundingRate")
        if self._fault("missing", sym, label, tags):
            return None

        def build():
            rows = self.sim.funding.settlements(family, sym, start, end - 1)
            delta = 1 if self._fault("disagree", sym, label, tags) else 0

            def csv(d: int) -> bytes:
                lines = [FUNDING_HEADER]
                for st in rows:
                    lines.append(f"{st.funding_time},{st.interval_hours},"
                                 f"{_bump(st.rate, d)}\n")
                return "".join(lines).encode()

            return self._pack(f"{sym}-fundingRate-{label}", csv(delta), lambda: csv(7),
                              self._fault("corrupt", sym, label, tags))
        return self._cached(path, build)

    @staticmethod
    def _pack(name: str, csv: bytes, other, corrupt: bool) -> tuple[bytes, bytes]:
        data = _zip(name + ".csv", csv)
        checksum = f"{hashlib.sha256(data).hexdigest()}  {name}.zip\n".encode()
        if corrupt:  # what is served is not what the checksum was computed over
            data = _zip(name + ".csv", other())
        return data, checksum

    @staticmethod
    def _csv(rows: list[list], tf: int, micros: bool, header: bool, trades_delta: int,
             names: str = HEADER) -> bytes:
        scale = 1000 if micros else 1
        lines = [names] if header else []
        for r in rows:
            ot = r[0] * scale
            ct = (r[0] + tf) * scale - 1
            lines.append(f"{ot},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{ct},{r[7]},"
                         f"{r[8] + trades_delta},{r[9]},{r[10]},0\n")
        return "".join(lines).encode()

    def precompute(self, tf_name: str, start: int, end: int) -> int:
        """Build (and keep) every file of [start, end) for every symbol; returns how many."""
        n = 0
        for spec in self.sim.config.symbols:
            t = start
            while t < end:
                dt = datetime.fromtimestamp(t / 1000, timezone.utc)
                m_end = _ms(dt.year + 1, 1) if dt.month == 12 else _ms(dt.year, dt.month + 1)
                if dt.day == 1 and m_end <= end:
                    label, kind, nxt = f"{dt:%Y-%m}", "monthly", m_end
                else:
                    label, kind, nxt = f"{dt:%Y-%m-%d}", "daily", t + DAY
                sym = spec.market_id
                path = f"/data/spot/{kind}/klines/{sym}/{tf_name}/{sym}-{tf_name}-{label}.zip"
                built = self._resolve(path)
                if built is not None:
                    with self._lock:
                        self._pinned[path] = built
                    n += 1
                t = nxt
        return n


def _bump(rate: str, units: int) -> str:
    """A rate string moved by `units` of 1e-8 (a file that disagrees with REST)."""
    if not units:
        return rate
    neg = rate.startswith("-")
    v = int(rate.lstrip("-").replace(".", "")) * (-1 if neg else 1) + units
    sign = "-" if v < 0 else ""
    v = abs(v)
    return f"{sign}{v // 100_000_000}.{v % 100_000_000:08d}"


def _zip(member: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr(member, content)
    return buf.getvalue()
