"""Archive files into the candles table: PostgreSQL parses the CSV itself.

PostgreSQL: COPY ... (FORMAT csv) of the file's bytes into a temporary staging table with
Binance's 12 columns, then one INSERT ... SELECT that converts the open time (ms or µs, per file),
adds exchange, symbol, timeframe, price series and source 'archive', keeps only the file's period, with the same
ON CONFLICT rule as the repository's upsert (a row changes only where a value differs). One
transaction per file: a file that PostgreSQL cannot parse leaves no row. SQLite: the rows are
parsed here and go through the repository's upsert.
"""

from __future__ import annotations

import logging

import psycopg
from sqlalchemy.engine import Engine

from ohlcv_cli.adapters.sql.candles import (
    ALL_COLS, PG_ON_CONFLICT, VALUE_COLS, SqlCandleRepository,
)
from ohlcv_cli.adapters.sql.errors import translate
from ohlcv_cli.core.archive import (
    ArchiveDisagrees, ArchiveFile, ArchiveRejected, SpotCheck, compared,
)
from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.timeutil import ms_to_dt

log = logging.getLogger(__name__)

SOURCE = "archive"
_BATCH = 20_000

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS archive_stage (
    open_time bigint, open numeric, high numeric, low numeric, close numeric, volume numeric,
    close_time bigint, quote_volume numeric, trades bigint, taker_buy_base_volume numeric,
    taker_buy_quote_volume numeric, ignore text
) ON COMMIT DELETE ROWS
"""
_SELECT = f"""
INSERT INTO candles ({", ".join(ALL_COLS)})
SELECT %(e)s, %(s)s, %(tf)s, timestamptz 'epoch' + (open_time / %(div)s) * interval '1 millisecond',
       {", ".join(VALUE_COLS)}, '{SOURCE}', %(p)s
FROM archive_stage
WHERE open_time >= %(a)s AND open_time < %(b)s AND open_time %% %(step)s = 0
"""
_MERGE = _SELECT + PG_ON_CONFLICT
# the spot-check's rows in the compared shape (Candle.values(): the decimals as their strings)
_SAMPLE = f"""
SELECT open_time / %(div)s, {", ".join(c if c == "trades" else f"{c}::text" for c in VALUE_COLS)}
FROM archive_stage WHERE open_time >= %(a)s AND open_time < %(b)s ORDER BY open_time
"""
# A period the store holds nothing of (the usual case: the planner asks only for missing ranges)
# takes a plain INSERT, about twice as fast as the speculative insertion ON CONFLICT needs.
_HOLDS_ANY = """
SELECT EXISTS (SELECT 1 FROM candles WHERE exchange = %(e)s AND symbol = %(s)s AND price = %(p)s
               AND timeframe = %(tf)s AND open_time >= %(ta)s AND open_time < %(tb)s)
"""


class SqlArchiveWriter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._repo = SqlCandleRepository(engine)

    def write_archive(self, file: ArchiveFile, exchange: str, symbol: str, tf: Timeframe,
                      check: SpotCheck | None = None, *, price: str = "trade") -> int:
        """The file's candles stored as the `price` series of the symbol (a mark price file of
        BTCUSDT: symbol BTC/USDT:USDT, price 'mark')."""
        if self.dialect == "postgresql":
            return self._write_pg(file, exchange, symbol, tf, check, price)
        return self._write_rows(file, exchange, symbol, tf, check, price)

    def _write_pg(self, file: ArchiveFile, exchange: str, symbol: str, tf: Timeframe,
                  check: SpotCheck | None, price: str) -> int:
        div = file.time_divisor
        params = {"e": exchange, "s": symbol, "p": price, "tf": tf.name, "div": div,
                  "a": file.period.start * div, "b": file.period.end * div, "step": tf.ms * div,
                  "ta": ms_to_dt(file.period.start), "tb": ms_to_dt(file.period.end)}
        header = "true" if file.header else "false"

        def rejected(why: str) -> ArchiveRejected:
            return ArchiveRejected(f"{file.name}: PostgreSQL cannot read it: {why}")

        with translate(self.engine, unreadable=rejected):
            with self.engine.begin() as conn:
                raw = conn.connection.driver_connection
                with raw.cursor() as cur:
                    cur.execute(_STAGE)
                    with cur.copy(f"COPY archive_stage FROM STDIN (FORMAT csv, HEADER {header})"
                                  ) as copy:
                        for block in file.chunks():
                            copy.write(block)
                    if check is not None:  # compared in the staging table: the zip is read once
                        cur.execute(_SAMPLE, {"a": check.start * div, "b": check.end * div,
                                              "div": div})
                        if not check.agrees(cur.fetchall()):
                            raise ArchiveDisagrees(f"{file.name} differs from the REST API")
                    return self._insert(cur, params, file)

    @staticmethod
    def _insert(cur, params: dict, file: ArchiveFile) -> int:
        """The staged rows into candles: a plain INSERT when the store holds nothing in the
        file's period, else (or when a concurrent writer got a row in first) the upsert."""
        cur.execute(_HOLDS_ANY, params)
        if not cur.fetchone()[0]:
            cur.execute("SAVEPOINT archive_plain")
            try:
                cur.execute(_SELECT, params)
                return max(cur.rowcount, 0)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT archive_plain")
                log.debug("%s: rows arrived in its period meanwhile; upserting", file.name)
        cur.execute(_MERGE, params)
        return max(cur.rowcount, 0)

    def _write_rows(self, file: ArchiveFile, exchange: str, symbol: str, tf: Timeframe,
                    check: SpotCheck | None, price: str) -> int:
        """SQLite: rows parsed here, written in batches (memory stays flat for 1s files). A row
        that cannot be read stops the file; what is missing after it is left to REST."""
        a, b = file.period.start, file.period.end
        written = 0
        batch: list[Candle] = []
        try:
            if check is not None and not check.agrees(
                    compared(r) for r in file.rows(check.start, check.end)):
                raise ArchiveDisagrees(f"{file.name} differs from the REST API")
            for r in file.rows():
                ot = r[0]
                if a <= ot < b and ot % tf.ms == 0:
                    batch.append(Candle(exchange, symbol, tf.name, ot, r[1], r[2], r[3], r[4],
                                        r[5], r[7], int(r[8]), r[9], r[10], SOURCE, price))
                    if len(batch) >= _BATCH:
                        written += self._repo.upsert(batch, expect_new=True)
                        batch = []
        except (ValueError, IndexError) as exc:
            raise ArchiveRejected(f"{file.name}: unreadable row: {exc}") from exc
        return written + self._repo.upsert(batch, expect_new=True)
