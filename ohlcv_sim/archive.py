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
_CACHE = 64


def parse_fault(text: str) -> tuple[str, str, str]:
    kind, sep, rest = text.partition(":")
    symbol, sep2, period = rest.partition(":")
    if kind not in FAULTS or not sep or not sep2 or not symbol or not period:
        raise ValueError(f"archive fault {text!r}: use KIND:SYMBOL:PERIOD with KIND one of "
                         f"{', '.join(FAULTS)}, e.g. corrupt:BTCUSDT:2024-01")
    return kind, symbol.upper().replace("/", ""), period


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

    def _fault(self, kind: str, market_id: str, label: str) -> bool:
        return any(k == kind and s in ("*", market_id) and p in ("*", label)
                   for k, s, p in self.faults)

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
        try:
            start = _ms(int(y), int(mo), int(d) if d else 1)
        except ValueError:
            return None
        end = start + DAY if d else (_ms(int(y) + 1, 1) if mo == "12" else _ms(int(y), int(mo) + 1))
        today = self.sim.now_ms() // DAY * DAY
        if (kind == "monthly" and end > today) or (kind == "daily" and end > today - DAY):
            return None
        if spec.listed_at is not None and end <= spec.listed_at:
            return None
        label = f"{y}-{mo}-{d}" if d else f"{y}-{mo}"
        if self._fault("missing", sym, label):
            return None
        key = path.removesuffix(".CHECKSUM")
        with self._lock:
            hit = self._pinned.get(key) or self._cache.get(key)
            if hit is not None and key in self._cache:
                self._cache.move_to_end(key)
        if hit is None:
            hit = self._build(spec, tf_name, start, end, label)
            with self._lock:
                self._cache[key] = hit
                while len(self._cache) > _CACHE:
                    self._cache.popitem(last=False)
        return hit

    # --- files ----------------------------------------------------------------------------------
    def _build(self, spec, tf_name: str, start: int, end: int, label: str) -> tuple[bytes, bytes]:
        tf = INTERVALS[tf_name]
        engine = self.sim.engine
        times, t = [], engine.next_available(spec, start, tf)
        while t < end:
            times.append(t)
            t = engine.next_available(spec, t + tf, tf)
        rows = engine._rows(spec, _seed_of(spec.market_id) ^ self.sim.config.seed, times, tf)
        sym = spec.market_id
        disagree = self._fault("disagree", sym, label)
        csv = self._csv(rows, tf, start >= MICROS_FROM, self._fault("header", sym, label),
                        1 if disagree else 0)
        name = f"{sym}-{tf_name}-{label}"
        data = _zip(name + ".csv", csv)
        checksum = f"{hashlib.sha256(data).hexdigest()}  {name}.zip\n".encode()
        if self._fault("corrupt", sym, label):
            # what is served is not what the checksum was computed over
            data = _zip(name + ".csv", self._csv(rows, tf, start >= MICROS_FROM, False, 7))
        return data, checksum

    @staticmethod
    def _csv(rows: list[list], tf: int, micros: bool, header: bool, trades_delta: int) -> bytes:
        scale = 1000 if micros else 1
        lines = [HEADER] if header else []
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


def _zip(member: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr(member, content)
    return buf.getvalue()
