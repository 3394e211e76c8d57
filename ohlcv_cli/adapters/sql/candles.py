"""The repository: candles in PostgreSQL or SQLite through SQLAlchemy.

PostgreSQL writes go COPY -> temporary table -> INSERT ... ON CONFLICT DO UPDATE (only where a value
differs); SQLite uses an executemany upsert. Nothing here ever deletes or truncates user data.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Iterable

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ohlcv_cli.adapters.sql.errors import translate
from ohlcv_cli.core.candle import MAX_OPEN_TIME, Candle
from ohlcv_cli.core.errors import StorageRejected
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.timeutil import dt_to_ms, ms_to_dt

VALUE_COLS = (
    "open", "high", "low", "close", "volume", "quote_volume", "trades",
    "taker_buy_base_volume", "taker_buy_quote_volume",
)
# Candle's field order; `price` (migration 0005) is the last field, as in Candle
ALL_COLS = ("exchange", "symbol", "timeframe", "open_time", *VALUE_COLS, "source", "price")
KEY_COLS = ("exchange", "symbol", "price", "timeframe", "open_time")

# one series: what every read of the repositories filters by (the primary key's prefix)
SERIES = "exchange = :e AND symbol = :s AND price = :p AND timeframe = :tf"

_PG_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS candles_stage (
    exchange text, symbol text, timeframe text, open_ms bigint,
    open numeric, high numeric, low numeric, close numeric, volume numeric, quote_volume numeric,
    trades bigint, taker_buy_base_volume numeric, taker_buy_quote_volume numeric, source text,
    price text
) ON COMMIT DELETE ROWS
"""
_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*VALUE_COLS, "source"))
_DIFF_OLD = ", ".join(f"candles.{c}" for c in VALUE_COLS)
_DIFF_NEW = ", ".join(f"EXCLUDED.{c}" for c in VALUE_COLS)
# PostgreSQL's rule for a row that is already there: rewrite it only where a value differs.
PG_ON_CONFLICT = f"""ON CONFLICT ({", ".join(KEY_COLS)}) DO UPDATE SET {_SET}, ingested_at = now()
WHERE ({_DIFF_OLD}) IS DISTINCT FROM ({_DIFF_NEW})"""
_PG_MERGE = f"""
INSERT INTO candles ({", ".join(ALL_COLS)})
SELECT exchange, symbol, timeframe, timestamptz 'epoch' + open_ms * interval '1 millisecond',
       {", ".join(VALUE_COLS)}, source, price
FROM candles_stage
{PG_ON_CONFLICT}
"""
_SQLITE_UPSERT = f"""
INSERT INTO candles ({", ".join(ALL_COLS)}, ingested_at)
VALUES ({", ".join("?" for _ in ALL_COLS)}, strftime('%Y-%m-%d %H:%M:%f', 'now'))
ON CONFLICT ({", ".join(KEY_COLS)}) DO UPDATE SET {_SET}, ingested_at = excluded.ingested_at
WHERE ({_DIFF_OLD}) IS NOT ({_DIFF_NEW})
"""


def _sqlite_time(ms: int) -> str:
    return ms_to_dt(ms).strftime("%Y-%m-%d %H:%M:%S")


def to_db_time(dialect: str, ms: int):
    """A time parameter for the schema's time columns: timestamptz, or ISO text in SQLite."""
    return _sqlite_time(ms) if dialect == "sqlite" else ms_to_dt(ms)


def from_db_time(value) -> int:
    """Epoch ms from a time column (a datetime, or SQLite's ISO text, UTC)."""
    if isinstance(value, str):
        return dt_to_ms(datetime.fromisoformat(value).replace(tzinfo=timezone.utc))
    return dt_to_ms(value)


_COPY_COLS = (
    "exchange, symbol, timeframe, {time}, open, high, low, close, volume, quote_volume, trades,"
    " taker_buy_base_volume, taker_buy_quote_volume, source, price"
)
_CHUNK = 5000


def _copy_rows(copy, rows: list[Candle], time_as_ms: bool) -> None:
    """Write rows in COPY's text format, a chunk at a time: several times faster than
    write_row. Values that would need escaping (never seen from an exchange) take write_row."""
    for i in range(0, len(rows), _CHUNK):
        part = rows[i:i + _CHUNK]
        if time_as_ms:
            lines = [
                f"{c[0]}\t{c[1]}\t{c[2]}\t{c[3]}\t{c[4]}\t{c[5]}\t{c[6]}\t{c[7]}\t{c[8]}\t{c[9]}"
                f"\t{c[10]}\t{c[11]}\t{c[12]}\t{c[13]}\t{c[14]}\n" for c in part
            ]
        else:
            lines = [
                f"{c[0]}\t{c[1]}\t{c[2]}\t{_pg_time(c[3])}\t{c[4]}\t{c[5]}\t{c[6]}\t{c[7]}\t{c[8]}"
                f"\t{c[9]}\t{c[10]}\t{c[11]}\t{c[12]}\t{c[13]}\t{c[14]}\n" for c in part
            ]
        chunk = "".join(lines)
        if "\\" in chunk or chunk.count("\t") != 14 * len(part) or chunk.count("\n") != len(part):
            for c in part:
                copy.write_row((*c[:3], c[3] if time_as_ms else ms_to_dt(c[3]), *c[4:]))
        else:
            copy.write(chunk)


_HOURS: dict[int, str] = {}


def _pg_time(ms: int) -> str:
    """timestamptz text for COPY; the date and hour are cached since strftime per row is slow."""
    hour, rem = divmod(ms, 3_600_000)
    prefix = _HOURS.get(hour)
    if prefix is None:
        if len(_HOURS) > 100_000:
            _HOURS.clear()
        prefix = _HOURS[hour] = f"{ms_to_dt(hour * 3_600_000):%Y-%m-%d %H}:"
    m, rem = divmod(rem, 60_000)
    return f"{prefix}{m:02d}:{rem // 1000:02d}.{rem % 1000:03d}+00"


def _dec(value) -> str:
    """A stored decimal as text, with its scale (format avoids Decimal's 0E-8 exponent form)."""
    return value if isinstance(value, str) else format(value, "f")


def dedupe(candles: Iterable[Candle]) -> list[Candle]:
    """One candle per key (the last one wins), sorted by key: one statement can't update a row twice."""
    by_key = {(c.exchange, c.symbol, c.price, c.timeframe, c.open_time): c for c in candles}
    return [by_key[k] for k in sorted(by_key)]


class SqlCandleRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite has one writer at a time; serialising here avoids "database is locked".
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    # --- time codec ---------------------------------------------------------------------------
    def ts(self, ms: int):
        return to_db_time(self.dialect, ms)

    @staticmethod
    def ms(value) -> int:
        return from_db_time(value)

    # --- writes -------------------------------------------------------------------------------
    def upsert(self, candles: Iterable[Candle], expect_new: bool = False) -> int:
        """Insert or update; returns rows written. `expect_new` (backfill of missing ranges) tries a
        direct COPY into the table first and falls back to the upsert if any row exists already."""
        rows = dedupe(candles)
        if not rows:
            return 0
        # PostgreSQL would take a year after 9999, but no reader could convert it back
        bad = next((c for c in rows if not 0 <= c.open_time <= MAX_OPEN_TIME), None)
        if bad is not None:
            raise StorageRejected(f"open_time {bad.open_time} is outside the years 1970-9999 "
                                  "that the store holds")
        # every error of the raw COPY paths too: StorageRejected (these rows can never be stored)
        # or StorageUnavailable (try again later)
        with translate(self.engine, values=True):
            if self.dialect == "postgresql":
                if expect_new:
                    written = self._copy_new_pg(rows)
                    if written is not None:
                        return written
                return self._upsert_pg(rows)
            with self._write_lock:
                return self._upsert_sqlite(rows)

    def _copy_new_pg(self, rows: list[Candle]) -> int | None:
        """COPY straight into candles (about twice as fast); None if a row already exists, in
        which case the transaction is rolled back whole."""
        try:
            with self.engine.begin() as conn:
                raw = conn.connection.driver_connection
                with raw.cursor() as cur, cur.copy(
                    f"COPY candles ({_COPY_COLS.format(time='open_time')}) FROM STDIN"
                ) as copy:
                    _copy_rows(copy, rows, time_as_ms=False)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            return None

    def _upsert_pg(self, rows: list[Candle]) -> int:
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                cur.execute(_PG_STAGE)
                with cur.copy(f"COPY candles_stage ({_COPY_COLS.format(time='open_ms')}) FROM STDIN") as copy:
                    _copy_rows(copy, rows, time_as_ms=True)
                cur.execute(_PG_MERGE)
                return max(cur.rowcount, 0)

    def _upsert_sqlite(self, rows: list[Candle]) -> int:
        params = [
            (c.exchange, c.symbol, c.timeframe, _sqlite_time(c.open_time), c.open, c.high, c.low,
             c.close, c.volume, c.quote_volume, c.trades, c.taker_buy_base_volume,
             c.taker_buy_quote_volume, c.source, c.price)
            for c in rows
        ]
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection
            cur = raw.cursor()
            before = raw.total_changes
            cur.executemany(_SQLITE_UPSERT, params)
            written = raw.total_changes - before
            cur.close()
            return written

    # --- reads --------------------------------------------------------------------------------
    def _key(self, exchange: str, symbol: str, timeframe: str, price: str = "trade") -> dict:
        return {"e": exchange, "s": symbol, "p": price, "tf": timeframe}

    def latest_open_time(self, exchange: str, symbol: str, timeframe: str, *,
                         price: str = "trade") -> int | None:
        sql = sa.text(f"SELECT max(open_time) FROM candles WHERE {SERIES}")
        value = self._scalar(sql, self._key(exchange, symbol, timeframe, price))
        return None if value is None else self.ms(value)

    def span(self, exchange: str, symbol: str, tf: Timeframe, start: int, end: int, *,
             price: str = "trade") -> tuple[int, int | None, int | None]:
        """(count, first open time, last open time) of stored candles in [start, end)."""
        sql = sa.text(
            f"SELECT count(*), min(open_time), max(open_time) FROM candles WHERE {SERIES}"
            " AND open_time >= :a AND open_time < :b"
        )
        params = {**self._key(exchange, symbol, tf.name, price), "a": self.ts(start),
                  "b": self.ts(end)}
        with translate(self.engine):
            with self.engine.connect() as conn:
                n, lo, hi = conn.execute(sql, params).one()
        return n, (None if lo is None else self.ms(lo)), (None if hi is None else self.ms(hi))

    def missing_ranges(self, exchange: str, symbol: str, tf: Timeframe, start: int, end: int,
                       *, price: str = "trade") -> list[tuple[int, int]]:
        """Holes in [start, end) found in SQL: a count on the primary key, then (only if the count
        falls short) a window function over the same index, never a per-candle loop."""
        start, end = tf.ceil(start), tf.ceil(end)
        if end <= start:
            return []
        n, first, last = self.span(exchange, symbol, tf, start, end, price=price)
        if n == 0:
            return [(start, end)]
        out: list[tuple[int, int]] = []
        if first > start:
            out.append((start, first))
        if n < tf.count(first, last + tf.ms):
            out.extend(self._inner_gaps(exchange, symbol, tf, first, last + tf.ms, price))
        if last + tf.ms < end:
            out.append((last + tf.ms, end))
        return out

    def _inner_gaps(self, exchange: str, symbol: str, tf: Timeframe, start: int, end: int,
                    price: str) -> list[tuple[int, int]]:
        if self.dialect == "postgresql":
            sql = sa.text(
                "SELECT prev, open_time FROM (SELECT open_time, lag(open_time) OVER (ORDER BY open_time)"
                f" AS prev FROM candles WHERE {SERIES}"
                " AND open_time >= :a AND open_time < :b) x"
                " WHERE open_time - prev > :step ORDER BY open_time"
            )
            step = ms_to_dt(tf.ms) - ms_to_dt(0)
        else:
            sql = sa.text(
                "SELECT prev, open_time FROM (SELECT open_time, lag(open_time) OVER (ORDER BY open_time)"
                f" AS prev FROM candles WHERE {SERIES}"
                " AND open_time >= :a AND open_time < :b) x"
                " WHERE (unixepoch(open_time) - unixepoch(prev)) * 1000 > :step ORDER BY open_time"
            )
            step = tf.ms
        params = {**self._key(exchange, symbol, tf.name, price), "a": self.ts(start),
                  "b": self.ts(end), "step": step}
        with translate(self.engine):
            with self.engine.connect() as conn:
                rows = conn.execute(sql, params).all()
        return [(self.ms(prev) + tf.ms, self.ms(cur)) for prev, cur in rows]

    def candles(self, exchange: str, symbol: str, timeframe: str, start: int | None = None,
                end: int | None = None, *, price: str = "trade") -> list[Candle]:
        """Stored candles of one series, oldest first, with their values as the exact decimal
        strings."""
        sql = f"SELECT {', '.join(ALL_COLS)} FROM candles WHERE {SERIES}"
        params = self._key(exchange, symbol, timeframe, price)
        if start is not None:
            sql += " AND open_time >= :a"
            params["a"] = self.ts(start)
        if end is not None:
            sql += " AND open_time < :b"
            params["b"] = self.ts(end)
        sql += " ORDER BY open_time"
        with translate(self.engine):
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text(sql), params).all()
        return [
            Candle(r[0], r[1], r[2], self.ms(r[3]), *(_dec(v) for v in r[4:10]), int(r[10]),
                   _dec(r[11]), _dec(r[12]), r[13], r[14])
            for r in rows
        ]

    def count(self, exchange: str | None = None, symbol: str | None = None,
              timeframe: str | None = None, *, price: str | None = None) -> int:
        """Stored candles, all or those matching the given key parts (price None: every
        series)."""
        clauses, params = [], {}
        for col, val in (("exchange", exchange), ("symbol", symbol), ("timeframe", timeframe),
                         ("price", price)):
            if val is not None:
                clauses.append(f"{col} = :{col}")
                params[col] = val
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return int(self._scalar(sa.text(f"SELECT count(*) FROM candles{where}"), params))

    def _scalar(self, sql, params: dict):
        with translate(self.engine):
            with self.engine.connect() as conn:
                return conn.execute(sql, params).scalar()
