"""candles: one row per exchange, symbol, timeframe and open time

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# PostgreSQL keeps the exchange's decimal exactly in NUMERIC; SQLite would turn NUMERIC into a
# float, so there the decimal string is kept as TEXT. Times: timestamptz, or ISO text in SQLite.
DECIMAL = sa.Numeric().with_variant(sa.Text(), "sqlite")
TIME = sa.TIMESTAMP(timezone=True).with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "candles",
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("open_time", TIME, nullable=False),
        sa.Column("open", DECIMAL, nullable=False),
        sa.Column("high", DECIMAL, nullable=False),
        sa.Column("low", DECIMAL, nullable=False),
        sa.Column("close", DECIMAL, nullable=False),
        sa.Column("volume", DECIMAL, nullable=False),
        sa.Column("quote_volume", DECIMAL, nullable=False),
        sa.Column("trades", sa.BigInteger(), nullable=False),
        sa.Column("taker_buy_base_volume", DECIMAL, nullable=False),
        sa.Column("taker_buy_quote_volume", DECIMAL, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ingested_at", TIME, nullable=False, server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint("exchange", "symbol", "timeframe", "open_time", name="candles_pkey"),
        sa.CheckConstraint("source IN ('backfill', 'stream', 'repair')", name="candles_source_check"),
    )


def downgrade() -> None:
    op.drop_table("candles")
