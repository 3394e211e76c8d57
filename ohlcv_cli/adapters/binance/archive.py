"""Binance's public archive (data.binance.vision) through httpx: kline zips and their checksums.

Every zip is streamed to a spooled temporary file while its SHA-256 is computed, compared with its
`.CHECKSUM`, and only then opened; a mismatch or an unreadable zip is downloaded once more before
the file is rejected. The CSV inside is read lazily, so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import random
import tempfile
import threading
import time
import struct
import zipfile
import zlib
from typing import BinaryIO, Callable, Iterator

import httpx

try:  # a declared dependency; zlib does the same work, slower
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover
    _inflate = zlib  # type: ignore[assignment]

from ohlcv_cli.core.archive import (
    ArchiveFile, ArchiveMissing, ArchiveRejected, ArchiveUnavailable, Period,
)
from ohlcv_cli.core.markets import FAMILIES

log = logging.getLogger(__name__)

DEFAULT_URL = "https://data.binance.vision"
CHUNK = 1 << 20
SPOOL_BYTES = 8 << 20
# µs open times are ~1.7e15 today, ms ones ~1.7e12: anything above 1e14 ms would be year 5138.
_US_THRESHOLD = 10 ** 14


class _Bad(Exception):
    """A download that must not be used (checksum mismatch, broken zip)."""


# the archive's folder of each price series (futures only have the last three)
KINDS = {"trade": "klines", "mark": "markPriceKlines", "index": "indexPriceKlines",
         "premium": "premiumIndexKlines"}


def kline_path(market_id: str, timeframe: str, period: Period, *, family: str = "spot",
               price: str = "trade") -> str:
    """Binance's layout, exactly (the monthly interval would be `1mo`; it is never asked for):
    data/spot/... or data/futures/um|cm/..., one folder per price series; `market_id` is the
    pair for index prices."""
    name = f"{market_id}-{timeframe}-{period.label}.zip"
    root = FAMILIES[family].archive_root
    return f"/{root}/{period.kind}/{KINDS[price]}/{market_id}/{timeframe}/{name}"


def inflate_member(spool: BinaryIO, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A zip member's bytes, at most CHUNK at a time, inflated by ISA-L (about 2.5x zlib's speed
    here: inflating is most of what the client spends on an archive file). The member's CRC-32 is
    checked at its end; a bad member raises ArchiveRejected, so the caller's transaction rolls
    back before anything of it is committed."""
    where = f"{info.filename}: broken zip member"
    spool.seek(info.header_offset)
    local = spool.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ArchiveRejected(f"{where} (no local header)")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    spool.seek(info.header_offset + 30 + name_len + extra_len)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        inflater = _inflate.decompressobj(-15)
    elif info.compress_type != zipfile.ZIP_STORED:
        raise ArchiveRejected(f"{where} (compression method {info.compress_type})")
    else:
        inflater = None
    left, crc, size = info.compress_size, 0, 0
    try:
        while left:
            raw = spool.read(min(CHUNK, left))
            if not raw:
                raise ArchiveRejected(f"{where} (truncated)")
            left -= len(raw)
            while raw:
                if inflater is None:
                    out, raw = raw, b""
                else:
                    out = inflater.decompress(raw, CHUNK)
                    raw = inflater.unconsumed_tail
                if out:
                    crc, size = zlib.crc32(out, crc), size + len(out)
                    yield out
        if inflater is not None:
            out = inflater.flush()
            if out:
                crc, size = zlib.crc32(out, crc), size + len(out)
                yield out
    except _inflate.error as exc:
        raise ArchiveRejected(f"{where} ({exc})") from None
    if crc != info.CRC or size != info.file_size:
        raise ArchiveRejected(f"{where} (CRC-32 or size does not match)")


def _last_open_time(lines: bytes) -> int:
    """The open time (first field) of the last row of whole lines; when it is not a number the
    block must be parsed (and the bad row reported), so: larger than any open time."""
    body = lines.rstrip(b"\r\n")
    row = body[body.rfind(b"\n") + 1:]
    try:
        return int(row.split(b",", 1)[0])
    except ValueError:
        return 1 << 62


class _ZipHandle:
    def __init__(self, spool, member: str) -> None:
        self._spool = spool
        self._member = member
        self._zip = zipfile.ZipFile(spool)

    def chunks(self) -> Iterator[bytes]:
        return inflate_member(self._spool, self._zip.getinfo(self._member))

    def rows(self, file: ArchiveFile, start: int | None = None, end: int | None = None
             ) -> Iterator[list]:
        """The CSV's rows with the open time as int ms; with `start`, blocks that end before it
        are skipped unparsed (only inflated), and with `end` reading stops at the first row at or
        after it (the files are in open-time order), so a spot-check near the end of a month's
        file costs an inflate, not a parse of every row."""
        div = file.time_divisor
        lo = None if start is None else start * div
        hi = None if end is None else end * div
        carry = b""
        first = file.header
        blocks = self.chunks()
        while True:
            block = next(blocks, b"")
            if not block:
                data, carry = carry, b""
            else:
                data = carry + block
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
            if first and data:  # the header row
                data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
                first = False
            if data and (lo is None or _last_open_time(data) >= lo):
                for row in csv.reader(data.decode("utf-8").splitlines()):
                    if not row:
                        continue
                    t = int(row[0])
                    if hi is not None and t >= hi:
                        return
                    if lo is not None and t < lo:
                        continue
                    row[0] = t // div
                    yield row
            if not block:
                return

    def close(self) -> None:
        self._zip.close()
        self._spool.close()


class BinanceArchive:
    """Thread-safe: one httpx client (a connection pool) shared by the download threads."""

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout_s: float = 30.0,
                 max_retries: int = 3, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self._retries = max_retries
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)), transport=transport, follow_redirects=True,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )
        self._lock = threading.Lock()
        self._stats = {"downloads": 0, "bytes": 0, "missing": 0, "rejected": 0, "retries": 0}

    def stats(self) -> dict:
        with self._lock:
            return dict(self._stats)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] += n

    def close(self) -> None:
        self._client.close()

    def fetch(self, market_id: str, timeframe: str, period: Period, *, family: str = "spot",
              price: str = "trade") -> ArchiveFile:
        """The verified file of one series; a header row (futures files have one from some date
        on, spot none) is detected, and times are read in the unit they are in (spot moved to
        µs in 2025, futures stay in ms)."""
        return self.fetch_file(kline_path(market_id, timeframe, period, family=family,
                                          price=price), period)

    def fetch_file(self, path: str, period: Period) -> ArchiveFile:
        """Any archive file by its path (the monthly funding files), checked as `fetch` checks
        a kline file: its CHECKSUM, downloaded once more when bad, a time in its first field."""
        problem = ""
        for attempt in (1, 2):
            try:
                return self._fetch_once(path, period)
            except _Bad as exc:
                problem = str(exc)
                if attempt == 1:
                    log.warning("archive %s: %s; downloading it again", path, problem)
        self._count("rejected")
        raise ArchiveRejected(f"{path}: {problem} (twice)")

    # --- one attempt ----------------------------------------------------------------------------
    def _fetch_once(self, path: str, period: Period) -> ArchiveFile:
        expected = self._checksum(path)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        try:
            digest = self._download(path, spool)
            if digest != expected:
                raise _Bad(f"SHA-256 {digest[:12]}… does not match its CHECKSUM {expected[:12]}…")
            try:
                handle, member, first = self._open(spool)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
                raise _Bad(f"unreadable zip: {exc}") from None
        except BaseException:
            spool.close()
            raise
        header = not first[:1].isdigit()
        if header:
            first = self._second_line(handle)
        try:
            t = int(first.split(b",", 1)[0]) if first else 0
        except ValueError:
            handle.close()
            raise _Bad(f"first row is not a kline: {first[:60]!r}") from None
        return ArchiveFile(path.rsplit("/", 1)[1], period, header,
                           1000 if t >= _US_THRESHOLD else 1, handle)

    @staticmethod
    def _open(spool) -> tuple[_ZipHandle, str, bytes]:
        spool.seek(0)
        with zipfile.ZipFile(spool) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise ValueError(f"{len(names)} members, expected one CSV")
            with z.open(names[0]) as f:
                first = f.readline()
        handle = _ZipHandle(spool, names[0])
        return handle, names[0], first.strip()

    @staticmethod
    def _second_line(handle: _ZipHandle) -> bytes:
        with handle._zip.open(handle._member) as f:
            f.readline()
            return f.readline().strip()

    def _checksum(self, path: str) -> str:
        text = self._get(path + ".CHECKSUM").decode("utf-8", "replace").strip()
        digest = text.split()[0].lower() if text else ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise _Bad(f"malformed CHECKSUM file {text[:80]!r}")
        return digest

    def _get(self, path: str) -> bytes:
        return self._with_retries(path, lambda r: r.read())

    def _download(self, path: str, spool) -> str:
        def consume(response: httpx.Response) -> str:
            h = hashlib.sha256()
            spool.seek(0)
            spool.truncate()
            n = 0
            for block in response.iter_bytes(CHUNK):
                h.update(block)
                spool.write(block)
                n += len(block)
            self._count("bytes", n)
            return h.hexdigest()

        digest = self._with_retries(path, consume)
        self._count("downloads")
        return digest

    def _with_retries(self, path: str, consume):
        attempt = 0
        while True:
            try:
                with self._client.stream("GET", path) as response:
                    if response.status_code == 404:
                        self._count("missing")
                        raise ArchiveMissing(f"{path}: not in the archive (404)")
                    if response.status_code >= 500 or response.status_code == 429:
                        raise httpx.HTTPStatusError(f"HTTP {response.status_code}",
                                                    request=response.request, response=response)
                    if response.status_code != 200:
                        raise ArchiveUnavailable(
                            f"{self.base_url}{path}: HTTP {response.status_code}")
                    return consume(response)
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                attempt += 1
                if attempt > self._retries:
                    raise ArchiveUnavailable(
                        f"archive unreachable at {self.base_url}: {type(exc).__name__} "
                        f"after {attempt} attempts") from exc
                self._count("retries")
                wait = min(10.0, 0.2 * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
                log.debug("archive %s: %s; retry %d/%d in %.1fs", path, type(exc).__name__,
                            attempt, self._retries, wait)
                self._sleep(wait)
