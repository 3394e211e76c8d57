"""Binance's public archive as a source: which files cover which missing ranges (pure), and the
small interfaces the archive pass knows its collaborators by.

A file is used only for a period that lies wholly inside a missing range: a whole month from the
monthly file, a whole day from the daily file; everything else (partial days, the newest days whose
files are not published yet, timeframes that do not divide a day) is left to REST.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator, Protocol

from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.ranges import Range, merge, subtract
from ohlcv_cli.core.timeframes import DAY_MS, Timeframe
from ohlcv_cli.core.timeutil import dt_to_ms, ms_to_dt

BACKFILL_SOURCES = ("auto", "rest", "archive")


class ArchiveError(OhlcvError):
    """An archive file could not be used; its range is left to REST."""


class ArchiveMissing(ArchiveError):
    """The archive has no such file (HTTP 404): not published (yet), or not listed then."""


class ArchiveRejected(ArchiveError):
    """The file failed its checksum or could not be read, also when downloaded again."""


class ArchiveUnavailable(ArchiveError):
    """The archive host could not be reached or kept failing after retries."""


class ArchiveDisagrees(ArchiveError):
    """The file's rows differ from the REST API's candles where they were compared."""


# One candle as compared: open time (ms) and the kline's values as the exchange's strings.
Compared = tuple  # (open_time, open, high, low, close, volume, quote_volume, trades, tbb, tbq)


def compared(row: list) -> Compared:
    """A CSV row (Binance's 12 kline fields, open time already in ms) in the compared shape."""
    return (row[0], row[1], row[2], row[3], row[4], row[5], row[7], int(row[8]), row[9], row[10])


@dataclass(frozen=True, slots=True)
class SpotCheck:
    """The REST API's candles for [start, end) inside a file's period: the file is written only
    if its own rows there are the same open times with the same values."""

    start: int
    end: int
    expected: tuple[Compared, ...]

    def agrees(self, found: Iterable[Compared]) -> bool:
        return tuple(found) == self.expected


@dataclass(frozen=True, slots=True)
class Period:
    """One archive file's span: a calendar month ("monthly") or a UTC day ("daily")."""

    kind: str
    start: int
    end: int

    @property
    def label(self) -> str:
        d = ms_to_dt(self.start)
        return f"{d:%Y-%m}" if self.kind == "monthly" else f"{d:%Y-%m-%d}"

    def days(self) -> list["Period"]:
        return [Period("daily", t, t + DAY_MS) for t in range(self.start, self.end, DAY_MS)]


def supports(tf: Timeframe) -> bool:
    """Archive files split at UTC days, so only timeframes that divide a day fit them exactly."""
    return tf.offset == 0 and DAY_MS % tf.ms == 0


def month_start(t_ms: int) -> int:
    d = ms_to_dt(t_ms)
    return dt_to_ms(datetime(d.year, d.month, 1, tzinfo=timezone.utc))


def next_month(t_ms: int) -> int:
    d = ms_to_dt(t_ms)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return dt_to_ms(datetime(y, m, 1, tzinfo=timezone.utc))


def plan(tf: Timeframe, missing: Iterable[Range], now_ms: int) -> tuple[list[Period], list[Range]]:
    """(archive files to fetch, ranges left to REST) for the missing ranges.

    Months that ended by `now_ms` come from monthly files, days that ended from daily files (a file
    that turns out unpublished falls back further when fetched); the rest is REST's."""
    missing = merge(missing)
    if not supports(tf):
        return [], missing
    today = now_ms // DAY_MS * DAY_MS
    periods: list[Period] = []
    for a, b in missing:
        b = min(b, today)
        d = -(-a // DAY_MS) * DAY_MS  # first whole day
        while d + DAY_MS <= b:
            m0 = month_start(d)
            m1 = next_month(d)
            if m0 == d and m1 <= b:
                periods.append(Period("monthly", m0, m1))
                d = m1
            else:
                periods.append(Period("daily", d, d + DAY_MS))
                d += DAY_MS
    return periods, subtract(missing, [(p.start, p.end) for p in periods])


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    """A downloaded file whose checksum matched. `rows()` yields Binance's 12 kline fields as the
    CSV's strings, with the open time (field 0) as int ms whatever the file's unit."""

    name: str
    period: Period
    header: bool  # the CSV's first line names the columns
    time_divisor: int  # 1: open times in ms; 1000: in µs
    handle: "ArchiveHandle"

    def rows(self, start: int | None = None, end: int | None = None) -> Iterator[list]:
        """The rows, or only those with open times in [start, end) (ms), read no further."""
        return self.handle.rows(self, start, end)

    def chunks(self) -> Iterator[bytes]:
        """The CSV's bytes as stored (header included), a bounded chunk at a time."""
        return self.handle.chunks()

    def close(self) -> None:
        self.handle.close()


class ArchiveHandle(Protocol):
    def rows(self, file: ArchiveFile, start: int | None = None, end: int | None = None
             ) -> Iterator[list]: ...
    def chunks(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class ArchiveSource(Protocol):
    def fetch(self, market_id: str, timeframe: str, period: Period, *, family: str = "spot",
              price: str = "trade") -> ArchiveFile:
        """The verified file; ArchiveMissing on 404, ArchiveRejected after a second bad download,
        ArchiveUnavailable when the host keeps failing."""

    def stats(self) -> dict: ...


class ArchiveWriter(Protocol):
    def write_archive(self, file: ArchiveFile, exchange: str, symbol: str, tf: Timeframe,
                      check: SpotCheck | None = None) -> int:
        """Store the file's candles inside its period (source 'archive') in one transaction;
        returns rows written. ArchiveRejected if the database cannot parse the file;
        ArchiveDisagrees (and nothing written) if its rows fail `check`. The file is read once."""
