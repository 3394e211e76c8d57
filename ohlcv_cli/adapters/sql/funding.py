"""Funding settlements in PostgreSQL or SQLite (table funding_rates, migration 0006).

Rates and mark prices are stored as exact decimals (numeric; text in SQLite) and read back as the
exchange's strings (`CAST(... AS TEXT)`); funding times keep their milliseconds (timestamptz; ISO
text with milliseconds in SQLite). Storing a settlement twice changes nothing: a row is rewritten
only where a value differs, and a missing mark price or interval never erases a known one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ohlcv_cli.adapters.sql.errors import translate
from ohlcv_cli.core.funding import Settlement
from ohlcv_cli.core.timeutil import dt_to_ms, ms_to_dt

_COLS = ("exchange", "symbol", "funding_time", "rate", "mark_price", "interval_hours", "source")
_KEY = "exchange = :e AND symbol = :s"
_CHUNK = 5000
# A row already stored is rewritten only where the new one says something different: the rate
# (REST is the reference), a mark price or interval it did not have (never erased by NULL).
_MERGED = {
    "rate": "excluded.rate",
    "mark_price": "COALESCE(excluded.mark_price, funding_rates.mark_price)",
    "interval_hours": "COALESCE(excluded.interval_hours, funding_rates.interval_hours)",
}


def _upsert(dialect: str) -> str:
    now = "now()" if dialect == "postgresql" else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    distinct = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    sets = ", ".join(f"{c} = {v}" for c, v in _MERGED.items())
    old = ", ".join(f"funding_rates.{c}" for c in _MERGED)
    new = ", ".join(_MERGED.values())
    return (f"INSERT INTO funding_rates ({', '.join(_COLS)}, ingested_at)"
            f" VALUES ({', '.join(':' + c for c in _COLS)}, {now})"
            f" ON CONFLICT (exchange, symbol, funding_time) DO UPDATE SET {sets},"
            f" source = excluded.source, ingested_at = excluded.ingested_at"
            f" WHERE ({old}) {distinct} ({new})")


# PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT with the same rule
_PG_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS funding_stage (
    exchange text, symbol text, t_ms bigint, rate numeric, mark_price numeric,
    interval_hours smallint, source text
) ON COMMIT DELETE ROWS
"""


def _pg_merge() -> str:
    sets = ", ".join(f"{c} = {v}" for c, v in _MERGED.items())
    old = ", ".join(f"funding_rates.{c}" for c in _MERGED)
    new = ", ".join(_MERGED.values())
    return (f"INSERT INTO funding_rates ({', '.join(_COLS)})"
            " SELECT exchange, symbol, timestamptz 'epoch' + t_ms * interval '1 millisecond',"
            " rate, mark_price, interval_hours, source FROM funding_stage"
            f" ON CONFLICT (exchange, symbol, funding_time) DO UPDATE SET {sets},"
            " source = excluded.source, ingested_at = now()"
            f" WHERE ({old}) IS DISTINCT FROM ({new})")


@dataclass(frozen=True)
class FundingSummary:
    """What is stored for one symbol."""

    exchange: str
    symbol: str
    count: int
    first: int
    last: int
    interval_hours: int | None  # of the newest settlement


class SqlFundingRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._write_lock = threading.Lock()
        self._upsert = sa.text(_upsert(self.dialect))

    # --- time codec: exact milliseconds in both dialects --------------------------------------
    def ts(self, ms: int):
        dt = ms_to_dt(ms)
        if self.dialect == "sqlite":
            return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"
        return dt

    @staticmethod
    def ms(value) -> int:
        if isinstance(value, str):
            return dt_to_ms(datetime.fromisoformat(value).replace(tzinfo=timezone.utc))
        return dt_to_ms(value)

    def _rows(self, sql: str, params: dict, expanding: Sequence[str] = ()) -> list:
        stmt = sa.text(sql)
        if expanding:
            stmt = stmt.bindparams(*(sa.bindparam(n, expanding=True) for n in expanding))
        with translate(self.engine):
            with self.engine.connect() as conn:
                return conn.execute(stmt, params).all()

    # --- writes -------------------------------------------------------------------------------
    def store(self, settlements: Iterable[Settlement]) -> int:
        """Upsert; returns how many rows were inserted or changed (0 for a repeat)."""
        rows = {}
        for s in settlements:  # one statement may not touch a key twice: the last one wins
            rows[(s.exchange, s.symbol, s.funding_time)] = {
                "exchange": s.exchange, "symbol": s.symbol, "funding_time": self.ts(s.funding_time),
                "rate": s.rate, "mark_price": s.mark_price, "interval_hours": s.interval_hours,
                "source": s.source, "t_ms": s.funding_time}
        if not rows:
            return 0
        if self.dialect == "postgresql":
            return self._store_pg(list(rows.values()))
        changed = 0
        params = list(rows.values())
        with translate(self.engine, values=True):
            with self._write_lock, self.engine.begin() as conn:
                for i in range(0, len(params), _CHUNK):  # executemany: pipelined by psycopg
                    changed += conn.execute(self._upsert, params[i:i + _CHUNK]).rowcount
        return changed

    def _store_pg(self, rows: list[dict]) -> int:
        with translate(self.engine, values=True):
            with self._write_lock, self.engine.begin() as conn:
                raw = conn.connection.driver_connection
                with raw.cursor() as cur:
                    cur.execute(_PG_STAGE)
                    with cur.copy("COPY funding_stage FROM STDIN") as copy:
                        for r in rows:
                            copy.write_row((r["exchange"], r["symbol"], r["t_ms"], r["rate"],
                                            r["mark_price"], r["interval_hours"], r["source"]))
                    cur.execute(_pg_merge())
                    return max(cur.rowcount, 0)

    # --- reads --------------------------------------------------------------------------------
    def _settlements(self, exchange: str, symbol: str, start: int | None, end: int | None,
                     order: str) -> list[Settlement]:
        """Settlements with start <= funding_time < end (either open), in `order`."""
        sql = ("SELECT funding_time, CAST(rate AS TEXT), CAST(mark_price AS TEXT),"
               f" interval_hours, source FROM funding_rates WHERE {_KEY}")
        params = {"e": exchange, "s": symbol}
        if start is not None:
            sql += " AND funding_time >= :a"
            params["a"] = self.ts(start)
        if end is not None:
            sql += " AND funding_time < :b"
            params["b"] = self.ts(end)
        return [Settlement(exchange, symbol, self.ms(t), rate, mark,
                           None if hours is None else int(hours), source)
                for t, rate, mark, hours, source in self._rows(f"{sql} ORDER BY {order}", params)]

    def read(self, exchange: str, symbol: str, start: int | None = None,
             end: int | None = None) -> list[Settlement]:
        """Settlements with start <= funding_time < end, ascending, strings as stored."""
        return self._settlements(exchange, symbol, start, end, "funding_time")

    def times(self, exchange: str, symbol: str, start: int | None = None,
              end: int | None = None) -> list[int]:
        return [s.funding_time for s in self.read(exchange, symbol, start, end)]

    def latest(self, exchange: str, symbol: str, before: int | None = None) -> Settlement | None:
        """The newest settlement stored (before `before`, if given)."""
        rows = self._settlements(exchange, symbol, None, before, "funding_time DESC LIMIT 1")
        return rows[0] if rows else None

    def summary(self, symbols: Sequence[str] | None = None) -> list[FundingSummary]:
        """Per symbol: how many settlements, the first and newest, the newest one's interval."""
        where, params, expanding = "", {}, ()
        if symbols:
            where, params, expanding = " WHERE f.symbol IN :syms", {"syms": list(symbols)}, ("syms",)
        sql = ("SELECT f.exchange, f.symbol, count(*), min(f.funding_time), max(f.funding_time),"
               " (SELECT l.interval_hours FROM funding_rates l WHERE l.exchange = f.exchange"
               "  AND l.symbol = f.symbol ORDER BY l.funding_time DESC LIMIT 1)"
               f" FROM funding_rates f{where} GROUP BY f.exchange, f.symbol"
               " ORDER BY f.exchange, f.symbol")
        return [FundingSummary(e, s, int(n), self.ms(lo), self.ms(hi),
                               None if h is None else int(h))
                for e, s, n, lo, hi, h in self._rows(sql, params, expanding)]
