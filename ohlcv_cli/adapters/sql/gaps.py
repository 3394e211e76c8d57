"""Ranges the exchange has no candles for (table exchange_gaps) and summaries of the store.

Shares the engine with SqlCandleRepository; gap finding itself stays there (missing_ranges).
"""

from __future__ import annotations

import threading
import time
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ohlcv_cli.adapters.sql.errors import translate
from ohlcv_cli.adapters.sql.candles import from_db_time, to_db_time
from ohlcv_cli.core.ports import SeriesSummary

_KEY = "exchange = :e AND symbol = :s AND price = :p AND timeframe = :tf"


class SqlGapRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._write_lock = threading.Lock()

    # --- time codec: timestamptz in PostgreSQL, ISO text in SQLite (as in candles) -------------
    def ts(self, ms: int):
        return to_db_time(self.dialect, ms)

    @staticmethod
    def ms(value) -> int:
        return from_db_time(value)

    def _rows(self, sql, params: dict) -> list:
        with translate(self.engine):
            with self.engine.connect() as conn:
                return conn.execute(sql, params).all()

    # --- reads --------------------------------------------------------------------------------
    def first_open_time(self, exchange: str, symbol: str, timeframe: str, *,
                        price: str = "trade") -> int | None:
        sql = sa.text(f"SELECT min(open_time) FROM candles WHERE {_KEY}")
        value = self._rows(sql, {"e": exchange, "s": symbol, "p": price, "tf": timeframe})[0][0]
        return None if value is None else self.ms(value)

    def exchange_gaps(self, exchange: str, symbol: str, timeframe: str, start: int | None = None,
                      end: int | None = None, *, price: str = "trade") -> list[tuple[int, int]]:
        sql = f"SELECT start_time, end_time FROM exchange_gaps WHERE {_KEY}"
        params = {"e": exchange, "s": symbol, "p": price, "tf": timeframe}
        if start is not None:
            sql += " AND end_time > :a"
            params["a"] = self.ts(start)
        if end is not None:
            sql += " AND start_time < :b"
            params["b"] = self.ts(end)
        rows = self._rows(sa.text(sql + " ORDER BY start_time"), params)
        return [(self.ms(a), self.ms(b)) for a, b in rows]

    def series(self, symbols: Sequence[str] | None = None, timeframe: str | None = None, *,
               price: str | None = None) -> list[SeriesSummary]:
        """One summary per stored (exchange, symbol, price, timeframe), sorted by them; `price`
        None: every series (a symbol's trade and mark candles are two summaries)."""
        clauses, params = [], {}
        if symbols:
            clauses.append("symbol IN :syms")
            params["syms"] = list(symbols)
        if timeframe:
            clauses.append("timeframe = :tf")
            params["tf"] = timeframe
        if price:
            clauses.append("price = :p")
            params["p"] = price
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = sa.text(
            "SELECT exchange, symbol, price, timeframe, count(*), min(open_time), max(open_time)"
            f" FROM candles{where} GROUP BY exchange, symbol, price, timeframe"
            " ORDER BY exchange, symbol, price, timeframe"
        )
        if symbols:
            sql = sql.bindparams(sa.bindparam("syms", expanding=True))
        return [SeriesSummary(e, s, tf, int(n), self.ms(lo), self.ms(hi), p)
                for e, s, p, tf, n, lo, hi in self._rows(sql, params)]

    # --- writes -------------------------------------------------------------------------------
    def record_exchange_gaps(self, exchange: str, symbol: str, timeframe: str,
                             ranges: Iterable[tuple[int, int]], *, price: str = "trade") -> int:
        """Each range is merged with the recorded ones it overlaps or touches: those rows are
        replaced by one covering them all, so records never overlap and re-recording is a no-op."""
        # one after the other in one transaction: a range given twice, or two given ranges that
        # touch, end up in one record too
        ranges = sorted(r for r in ranges if r[1] > r[0])
        if not ranges:
            return 0
        key = {"e": exchange, "s": symbol, "p": price, "tf": timeframe}
        touching = f"{_KEY} AND start_time <= :b AND end_time >= :a"
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        select = sa.text(f"SELECT start_time, end_time FROM exchange_gaps WHERE {touching}{lock}")
        delete = sa.text(f"DELETE FROM exchange_gaps WHERE {touching}")
        insert = sa.text(
            "INSERT INTO exchange_gaps (exchange, symbol, price, timeframe, start_time, end_time,"
            " recorded_at) VALUES (:e, :s, :p, :tf, :a, :b, :now)"
            " ON CONFLICT (exchange, symbol, price, timeframe, start_time) DO UPDATE SET"
            " end_time = CASE WHEN excluded.end_time > exchange_gaps.end_time"
            " THEN excluded.end_time ELSE exchange_gaps.end_time END,"
            " recorded_at = excluded.recorded_at"
        )
        now = self.ts(int(time.time() * 1000))
        with translate(self.engine, values=True):
            with self._write_lock, self.engine.begin() as conn:
                for a, b in ranges:
                    params = {**key, "a": self.ts(a), "b": self.ts(b)}
                    found = conn.execute(select, params).all()
                    lo = min([a, *(self.ms(r[0]) for r in found)])
                    hi = max([b, *(self.ms(r[1]) for r in found)])
                    if found:
                        conn.execute(delete, params)
                    conn.execute(insert, {**key, "a": self.ts(lo), "b": self.ts(hi), "now": now})
        return len(ranges)
