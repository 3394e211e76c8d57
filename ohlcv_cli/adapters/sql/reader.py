"""Reading candles out of the store as Arrow tables: the only module with the read API's SQL.

Values leave the database as the decimal text it holds (exact); frames.py turns them into floats
or decimals. PostgreSQL streams rows with COPY ... TO STDOUT (CSV) into pyarrow's CSV reader,
several times faster than a cursor; SQLite goes through its cursor. Derived timeframes are
aggregated in the database: PostgreSQL calls ohlcv_derived_candles() (migration 0003); SQLite
runs the same aggregation as one query over integer units of 1e-8 (its NUMERIC would be a float),
so a value with more than 8 decimals cannot be aggregated there and is refused.

Every read is of one price series (`price`, default "trade"): a contract's mark candles are
read, and derived, apart from its trade candles; the premium index's prices may be negative.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ohlcv_cli.adapters.sql.candles import from_db_time, to_db_time
from ohlcv_cli.adapters.sql.errors import translate
from ohlcv_cli.core.errors import StorageError
from ohlcv_cli.core.markets import PRICES
from ohlcv_cli.core.timeframes import SUPPORTED, Timeframe

DECIMALS = ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_base_volume",
            "taker_buy_quote_volume")
COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades",
           "taker_buy_base_volume", "taker_buy_quote_volume")
SCHEMA = pa.schema([("open_time", pa.int64())]
                   + [(c, pa.int64() if c == "trades" else pa.string()) for c in COLUMNS[1:]])
_KEY = "exchange = :e AND symbol = :s AND price = :p AND timeframe = :tf"
_UNIT = 100_000_000


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def _int_part(col: str) -> str:
    return f"CAST(substr({col}, 1, instr({col} || '.', '.') - 1) AS INTEGER)"


def _frac_units(col: str) -> str:
    """SQLite: the first 8 decimals of a decimal string as an integer count of 1e-8."""
    return (f"CAST(substr(substr({col}, instr({col} || '.', '.') + 1) || '00000000', 1, 8)"
            " AS INTEGER)")


def _units(col: str) -> str:
    """A price as an integer count of 1e-8 (fits below 92 billion)."""
    return f"({_int_part(col)} * {_UNIT} + {_frac_units(col)})"


def _scale(col: str) -> str:
    return f"length(substr({col}, instr({col} || '.', '.') + 1))"


def _signed_units(col: str) -> str:
    """A price that may be negative (the premium index) as an integer count of 1e-8."""
    return (f"(CASE WHEN substr({col}, 1, 1) = '-' THEN -{_units(f'substr({col}, 2)')}"
            f" ELSE {_units(col)} END)")


def _text(units: str) -> str:
    return (f"(CASE WHEN {units} < 0 THEN '-' ELSE '' END"
            f" || printf('%d.%08d', abs({units}) / {_UNIT}, abs({units}) % {_UNIT}))")


def _sum_text(name: str) -> str:
    """Sums are kept as whole and fractional parts summed apart: a week of quote volume in
    units of 1e-8 would overflow SQLite's 64-bit integers."""
    return (f"printf('%d.%08d', {name}_i + {name}_f / {_UNIT}, {name}_f % {_UNIT})")


class SqlCandleReader:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def _ts(self, ms: int):
        return to_db_time(self.dialect, ms)

    def _all(self, sql: str, params: dict) -> list:
        with translate(self.engine), self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()

    # --- what is stored ------------------------------------------------------------------------
    def stored_timeframes(self, exchange: str, symbol: str, *, price: str = "trade"
                          ) -> list[str]:
        """Timeframes with at least one candle of the symbol's series: one index probe each."""
        probes = " UNION ALL ".join(
            f"SELECT '{tf}' WHERE EXISTS (SELECT 1 FROM candles WHERE exchange = :e"
            f" AND symbol = :s AND price = :p AND timeframe = '{tf}')" for tf in SUPPORTED)
        return [r[0] for r in self._all(probes, {"e": exchange, "s": symbol, "p": price})]

    def stored_prices(self, exchange: str, symbol: str) -> list[str]:
        """Price series with at least one candle of the symbol, in PRICES order."""
        probes = " UNION ALL ".join(
            f"SELECT '{p}' WHERE EXISTS (SELECT 1 FROM candles WHERE exchange = :e"
            f" AND symbol = :s AND price = '{p}')" for p in PRICES)
        return [r[0] for r in self._all(probes, {"e": exchange, "s": symbol})]

    def stored_symbols(self, exchange: str) -> list[str]:
        """Symbols with at least one candle: a skip scan of the key, one probe per symbol."""
        sql = ("WITH RECURSIVE s(symbol) AS (SELECT min(symbol) FROM candles WHERE exchange = :e"
               " UNION ALL SELECT (SELECT min(symbol) FROM candles WHERE exchange = :e"
               " AND symbol > s.symbol) FROM s WHERE s.symbol IS NOT NULL)"
               " SELECT symbol FROM s WHERE symbol IS NOT NULL")
        return [r[0] for r in self._all(sql, {"e": exchange})]

    def bounds(self, exchange: str, symbol: str, timeframe: str, *, price: str = "trade"
               ) -> tuple[int, int] | None:
        """Open times of the first and the last stored candle of the series."""
        row = self._all(f"SELECT min(open_time), max(open_time) FROM candles WHERE {_KEY}",
                        {"e": exchange, "s": symbol, "p": price, "tf": timeframe})[0]
        return None if row[0] is None else (from_db_time(row[0]), from_db_time(row[1]))

    # --- stored candles ------------------------------------------------------------------------
    def native(self, exchange: str, symbol: str, timeframe: str, start: int, end: int,
               limit: int | None = None, *, price: str = "trade") -> pa.Table:
        """Stored candles of the series with open time in [start, end), oldest first, at most
        `limit`."""
        params = {"e": exchange, "s": symbol, "p": price, "tf": timeframe, "a": self._ts(start),
                  "b": self._ts(end)}
        tail = f" LIMIT {int(limit)}" if limit else ""
        where = f"WHERE {_KEY} AND open_time >= :a AND open_time < :b ORDER BY open_time{tail}"
        if self.dialect == "postgresql":
            return self._pg_copy(
                "SELECT (extract(epoch FROM open_time) * 1000)::bigint, open, high, low, close,"
                " volume, quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume"
                f" FROM candles {where}", params)
        rows = self._all(
            "SELECT CAST(strftime('%s', open_time) AS INTEGER) * 1000, open, high, low, close,"
            " volume, quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume"
            f" FROM candles {where}", params)
        return _table(rows)

    def _pg_copy(self, select: str, params: dict, extra: tuple = ()) -> pa.Table:
        """COPY (select) TO STDOUT as CSV, parsed by pyarrow; values stay decimal text."""
        names = (*COLUMNS, *(n for n, _ in extra))
        types = {**{f.name: f.type for f in SCHEMA}, **dict(extra)}
        with translate(self.engine):
            raw = self.engine.raw_connection()
            try:
                cur = raw.driver_connection.cursor()
                buf = io.BytesIO()
                with cur.copy(f"COPY ({_pyformat(select)}) TO STDOUT (FORMAT csv)",
                              params) as copy:
                    for chunk in copy:
                        buf.write(chunk)
                raw.driver_connection.rollback()
            finally:
                raw.close()
        if buf.tell() == 0:
            return pa.schema([(n, types[n]) for n in names]).empty_table()
        buf.seek(0)
        return pacsv.read_csv(
            buf,
            read_options=pacsv.ReadOptions(column_names=list(names), block_size=1 << 24),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False,
                                                 true_values=["t"], false_values=["f"]),
        )

    # --- derived candles -----------------------------------------------------------------------
    def derived(self, exchange: str, symbol: str, target: Timeframe, source: Timeframe,
                lo: int, hi: int, gaps: list[tuple[int, int]], *, price: str = "trade"
                ) -> tuple[pa.Table, list[int]]:
        """Buckets of `target` opening in [lo, hi) (both aligned) aggregated from `source`
        candles of the same price series:
        (complete buckets, open times of the buckets left out because candles are missing).
        `gaps` are the source's known exchange gaps of that series (SQLite counts them here;
        PostgreSQL reads them itself)."""
        if self.dialect == "postgresql":
            table = self._pg_copy(
                "SELECT (extract(epoch FROM open_time) * 1000)::bigint, open, high, low, close,"
                " volume, quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume,"
                " complete FROM ohlcv_derived_candles(:e, :s, :tf, :src, :a, :b, true, :p)",
                {"e": exchange, "s": symbol, "p": price, "tf": target.name, "src": source.name,
                 "a": self._ts(lo), "b": self._ts(hi)},
                extra=(("complete", pa.bool_()),))
            complete = table.column("complete")
            incomplete = table.filter(pc.invert(complete)).column("open_time").to_pylist()
            return table.filter(complete).drop_columns(["complete"]), incomplete
        return self._sqlite_derived(exchange, symbol, target, source, lo, hi, gaps, price)

    def _sqlite_derived(self, exchange, symbol, target, source, lo, hi, gaps, price):
        step, off = target.ms // 1000, target.offset // 1000
        u = {c: _signed_units(c) for c in ("open", "high", "low", "close")}
        sums = (("volume", "v"), ("quote_volume", "q"), ("taker_buy_base_volume", "tb"),
                ("taker_buy_quote_volume", "tq"))
        sql = f"""
        WITH b AS (
          SELECT (CAST(strftime('%s', open_time) AS INTEGER) - {off}) / {step} * {step} + {off}
                   AS bucket,
                 open_time, {u['open']} AS o, {u['high']} AS h, {u['low']} AS l,
                 {u['close']} AS c, trades,
                 {", ".join(f"{_int_part(c)} AS {a}_i, {_frac_units(c)} AS {a}_f"
                            for c, a in sums)},
                 max({', '.join(_scale(c) for c in DECIMALS)}) AS scale
          FROM candles WHERE {_KEY} AND open_time >= :a AND open_time < :b
        ), w AS (
          SELECT b.*, first_value(o) OVER (PARTITION BY bucket ORDER BY open_time) AS fo,
                 first_value(c) OVER (PARTITION BY bucket ORDER BY open_time DESC) AS lc
          FROM b
        ), g AS (
          SELECT bucket, max(fo) AS o, max(h) AS h, min(l) AS l, max(lc) AS c,
                 {", ".join(f"sum({a}_i) AS {a}_i, sum({a}_f) AS {a}_f" for _, a in sums)},
                 sum(trades) AS n, count(*) AS k, max(scale) AS scale
          FROM w GROUP BY bucket
        )
        SELECT bucket * 1000, {_text('o')}, {_text('h')}, {_text('l')}, {_text('c')},
               {_sum_text('v')}, {_sum_text('q')}, n, {_sum_text('tb')}, {_sum_text('tq')}, k,
               scale
        FROM g ORDER BY bucket
        """
        rows = self._all(sql, {"e": exchange, "s": symbol, "p": price, "tf": source.name,
                               "a": self._ts(lo), "b": self._ts(hi)})
        if any(r[11] > 8 for r in rows):
            raise StorageError(
                f"{symbol} {source.name}: values with more than 8 decimals cannot be aggregated"
                " exactly in SQLite; read the stored timeframe instead")
        per_bucket = target.ms // source.ms
        done, incomplete = [], []
        for r in rows:
            expected = per_bucket - _slots_in(gaps, r[0], r[0] + target.ms, source.ms)
            (done if r[10] == expected else incomplete).append(r)
        return _table([r[:10] for r in done]), [r[0] for r in incomplete]

    # --- coverage ------------------------------------------------------------------------------
    def histogram(self, exchange: str, symbol: str, timeframe: str, start: int, end: int,
                  bin_ms: int, *, price: str = "trade") -> list[tuple[int, int]]:
        """(bin start, candles stored) for bins of bin_ms from start (bins without any left out)."""
        params = {"e": exchange, "s": symbol, "p": price, "tf": timeframe, "a": self._ts(start),
                  "b": self._ts(end), "o": start, "w": bin_ms}
        if self.dialect == "postgresql":
            ms = "(extract(epoch FROM open_time) * 1000)::bigint"
        else:
            ms = "CAST(strftime('%s', open_time) AS INTEGER) * 1000"
        rows = self._all(
            f"SELECT ({ms} - :o) / :w, count(*) FROM candles WHERE {_KEY}"
            " AND open_time >= :a AND open_time < :b GROUP BY 1 ORDER BY 1", params)
        return [(start + int(i) * bin_ms, int(n)) for i, n in rows]


def compose(parts: list[tuple[pa.Table, set[int]]]) -> pa.Table:
    """One table, oldest first, of the rows of each part whose open time is in its set (the
    buckets each source was chosen for)."""
    kept = [t.filter(pc.is_in(t.column("open_time"), pa.array(sorted(keep), pa.int64())))
            for t, keep in parts if keep]
    if not kept:
        return empty_table()
    table = kept[0] if len(kept) == 1 else pa.concat_tables(kept)
    return table.sort_by("open_time") if len(kept) > 1 else table


def _slots_in(gaps: list[tuple[int, int]], a: int, b: int, base_ms: int) -> int:
    return sum(max(0, min(g1, b) - max(g0, a)) // base_ms for g0, g1 in gaps if g0 < b and g1 > a)


def _pyformat(sql: str) -> str:
    """:name placeholders as psycopg's %(name)s (it binds them client-side for COPY)."""
    import re

    return re.sub(r"(?<!:):([a-z]+)\b", r"%(\1)s", sql.replace("%", "%%"))


def _table(rows: list) -> pa.Table:
    if not rows:
        return empty_table()
    cols = list(zip(*rows))
    return pa.table([pa.array(c, type=f.type) for c, f in zip(cols, SCHEMA)], schema=SCHEMA)
