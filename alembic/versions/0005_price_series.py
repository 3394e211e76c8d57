"""price series: candles and exchange_gaps keep trade, mark, index and premium candles apart

A futures contract has four kline series at Binance (trade prices, mark price, index price,
premium index); spot has trade only. The new column `price` (default 'trade', so every row
stored before is a trade candle) is part of both primary keys, after the symbol:
candles (exchange, symbol, price, timeframe, open_time) and
exchange_gaps (exchange, symbol, price, timeframe, start_time).

ohlcv_derived_candles() gets a last argument `p_price text DEFAULT 'trade'`: the calls of 0003
(six or seven arguments) keep meaning the trade series, and a bucket only ever aggregates rows
(and counts exchange gaps) of its own series.

Downgrade refuses while mark, index or premium rows are stored (the old key cannot hold them
beside the trade rows; nothing here deletes user data).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DECIMAL = sa.Numeric().with_variant(sa.Text(), "sqlite")
TIME = sa.TIMESTAMP(timezone=True).with_variant(sa.Text(), "sqlite")
PRICES = ("trade", "mark", "index", "premium")
PRICE_CHECK = "price IN ('trade', 'mark', 'index', 'premium')"
SOURCE_CHECK = "source IN ('backfill', 'stream', 'repair', 'archive')"

_CANDLE_VALUES = ("open", "high", "low", "close", "volume", "quote_volume", "trades",
                  "taker_buy_base_volume", "taker_buy_quote_volume", "source", "ingested_at")
_GAP_VALUES = ("end_time", "recorded_at")


def _candles(name: str, with_price: bool) -> sa.Table:
    """The candles table as 0004 left it, or with the price column and key (SQLite rebuilds)."""
    key = ("exchange", "symbol", "price", "timeframe", "open_time") if with_price else \
        ("exchange", "symbol", "timeframe", "open_time")
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        *([sa.Column("price", sa.String(8), nullable=False, server_default="trade")]
          if with_price else []),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("open_time", TIME, nullable=False),
        *(sa.Column(c, DECIMAL, nullable=False) for c in
          ("open", "high", "low", "close", "volume", "quote_volume")),
        sa.Column("trades", sa.BigInteger(), nullable=False),
        sa.Column("taker_buy_base_volume", DECIMAL, nullable=False),
        sa.Column("taker_buy_quote_volume", DECIMAL, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ingested_at", TIME, nullable=False, server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint(*key, name="candles_pkey"),
        sa.CheckConstraint(SOURCE_CHECK, name="candles_source_check"),
        *([sa.CheckConstraint(PRICE_CHECK, name="candles_price_check")] if with_price else []),
    )


def _gaps(name: str, with_price: bool) -> sa.Table:
    key = ("exchange", "symbol", "price", "timeframe", "start_time") if with_price else \
        ("exchange", "symbol", "timeframe", "start_time")
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        *([sa.Column("price", sa.String(8), nullable=False, server_default="trade")]
          if with_price else []),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("start_time", TIME, nullable=False),
        sa.Column("end_time", TIME, nullable=False),
        sa.Column("recorded_at", TIME, nullable=False, server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint(*key, name="exchange_gaps_pkey"),
        sa.CheckConstraint("end_time > start_time", name="exchange_gaps_range_check"),
        *([sa.CheckConstraint(PRICE_CHECK, name="exchange_gaps_price_check")]
          if with_price else []),
    )


def _sqlite_rebuild(table: str, build, values: tuple[str, ...], key: tuple[str, ...],
                    with_price: bool) -> None:
    """SQLite cannot change a primary key in place: a new table, the rows copied, renamed."""
    tmp = f"_{table}_0005"
    build(tmp, with_price).create(op.get_bind())
    cols = ", ".join((*key, *values))
    if with_price:
        op.execute(f"INSERT INTO {tmp} ({cols}, price) SELECT {cols}, 'trade' FROM {table}")
    else:
        op.execute(f"INSERT INTO {tmp} ({cols}) SELECT {cols} FROM {table}")
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {tmp} RENAME TO {table}")


_CANDLE_KEY = ("exchange", "symbol", "timeframe", "open_time")
_GAP_KEY = ("exchange", "symbol", "timeframe", "start_time")


def _pg_add(table: str, key: str, check: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD COLUMN price varchar(8) NOT NULL DEFAULT 'trade'")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({PRICE_CHECK})")
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})")


def _pg_drop(table: str, key: str, check: str) -> None:
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})")
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {check}")
    op.execute(f"ALTER TABLE {table} DROP COLUMN price")


_OLD_SIGNATURE = "text, text, text, text, timestamptz, timestamptz, boolean"
_NEW_SIGNATURE = f"{_OLD_SIGNATURE}, text"


def _derived_0003() -> str:
    """0003's function text (the downgrade puts it back; 0005 derives its own from it)."""
    path = Path(__file__).with_name("0003_derived_candles.py")
    spec = importlib.util.spec_from_file_location("_ohlcv_migration_0003", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._DERIVED


def _derived_0005() -> str:
    """0003's aggregation with `p_price`: candles and exchange gaps of that series only."""
    sql = _derived_0003()
    replacements = (
        ("p_include_incomplete boolean DEFAULT false)",
         "p_include_incomplete boolean DEFAULT false, p_price text DEFAULT 'trade')"),
        ("WHERE c.exchange = p_exchange AND c.symbol = p_symbol AND c.timeframe = p_source",
         "WHERE c.exchange = p_exchange AND c.symbol = p_symbol AND c.price = p_price\n"
         "      AND c.timeframe = p_source"),
        ("WHERE g.exchange = p_exchange AND g.symbol = p_symbol\n",
         "WHERE g.exchange = p_exchange AND g.symbol = p_symbol AND g.price = p_price\n"),
    )
    for old, new in replacements:
        if sql.count(old) != 1:
            raise RuntimeError(f"0005: 0003's ohlcv_derived_candles changed ({old!r})")
        sql = sql.replace(old, new)
    return sql


def _any_other_price() -> bool:
    bind = op.get_bind()
    return any(bind.execute(sa.text(
        f"SELECT EXISTS (SELECT 1 FROM {t} WHERE price <> 'trade')")).scalar()
        for t in ("candles", "exchange_gaps"))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild("candles", _candles, _CANDLE_VALUES, _CANDLE_KEY, True)
        _sqlite_rebuild("exchange_gaps", _gaps, _GAP_VALUES, _GAP_KEY, True)
        return
    _pg_add("candles", "exchange, symbol, price, timeframe, open_time", "candles_price_check")
    _pg_add("exchange_gaps", "exchange, symbol, price, timeframe, start_time",
            "exchange_gaps_price_check")
    op.execute(f"DROP FUNCTION IF EXISTS ohlcv_derived_candles({_OLD_SIGNATURE})")
    op.execute(_derived_0005())


def downgrade() -> None:
    if _any_other_price():
        raise RuntimeError("the store holds mark, index or premium candles or gaps, which "
                           "revision 0004 cannot keep apart from trade ones: delete them first")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuild("candles", _candles, _CANDLE_VALUES, _CANDLE_KEY, False)
        _sqlite_rebuild("exchange_gaps", _gaps, _GAP_VALUES, _GAP_KEY, False)
        return
    op.execute(f"DROP FUNCTION IF EXISTS ohlcv_derived_candles({_NEW_SIGNATURE})")
    op.execute(_derived_0003())
    _pg_drop("candles", "exchange, symbol, timeframe, open_time", "candles_price_check")
    _pg_drop("exchange_gaps", "exchange, symbol, timeframe, start_time",
             "exchange_gaps_price_check")
