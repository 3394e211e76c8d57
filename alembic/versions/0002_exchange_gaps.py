"""exchange_gaps: ranges the exchange confirmed it has no candles for

`ohlcv gaps repair` records them so later checks do not report them as missing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# As in 0001: timestamptz in PostgreSQL, ISO text (YYYY-MM-DD HH:MM:SS, UTC) in SQLite.
TIME = sa.TIMESTAMP(timezone=True).with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "exchange_gaps",
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("start_time", TIME, nullable=False),  # first open time without a candle
        sa.Column("end_time", TIME, nullable=False),  # exclusive: the next possible open time
        sa.Column("recorded_at", TIME, nullable=False, server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint("exchange", "symbol", "timeframe", "start_time",
                                name="exchange_gaps_pkey"),
        sa.CheckConstraint("end_time > start_time", name="exchange_gaps_range_check"),
    )


def downgrade() -> None:
    op.drop_table("exchange_gaps")
