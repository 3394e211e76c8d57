"""funding_rates: every funding settlement of every perpetual, exactly as Binance sends it

One row per (exchange, symbol, funding_time): symbol is ccxt's unified symbol (BTC/USDT:USDT,
BTC/USD:BTC); funding_time is the settlement's time to the millisecond as Binance records it
(it trails the boundary by a few ms); rate and mark_price are the exchange's decimal strings,
exact (mark_price is NULL where Binance gives none: COIN-M REST, the archive files);
interval_hours is the funding interval in force for that settlement (the archive's
funding_interval_hours, or the spacing of the settlements), NULL where it is not known; source
says where the row came from.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DECIMAL = sa.Numeric().with_variant(sa.Text(), "sqlite")
TIME = sa.TIMESTAMP(timezone=True).with_variant(sa.Text(), "sqlite")
SOURCE_CHECK = "source IN ('archive', 'rest', 'stream', 'repair')"


def upgrade() -> None:
    op.create_table(
        "funding_rates",
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("funding_time", TIME, nullable=False),
        sa.Column("rate", DECIMAL, nullable=False),
        sa.Column("mark_price", DECIMAL, nullable=True),
        sa.Column("interval_hours", sa.SmallInteger(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ingested_at", TIME, nullable=False, server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint("exchange", "symbol", "funding_time", name="funding_rates_pkey"),
        sa.CheckConstraint(SOURCE_CHECK, name="funding_rates_source_check"),
        sa.CheckConstraint("interval_hours IS NULL OR interval_hours > 0",
                           name="funding_rates_interval_check"),
    )


def downgrade() -> None:
    op.drop_table("funding_rates")
