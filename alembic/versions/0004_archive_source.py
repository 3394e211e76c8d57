"""candles.source may be 'archive': candles stored from Binance's public archive files

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DECIMAL = sa.Numeric().with_variant(sa.Text(), "sqlite")
TIME = sa.TIMESTAMP(timezone=True).with_variant(sa.Text(), "sqlite")
NEW = "source IN ('backfill', 'stream', 'repair', 'archive')"
OLD = "source IN ('backfill', 'stream', 'repair')"


def _table(check: str) -> sa.Table:
    """The candles table as 0001 made it, with the given source check (SQLite rebuilds it)."""
    return sa.Table(
        "candles", sa.MetaData(),
        sa.Column("exchange", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("open_time", TIME, nullable=False),
        *(sa.Column(c, DECIMAL, nullable=False) for c in
          ("open", "high", "low", "close", "volume", "quote_volume")),
        sa.Column("trades", sa.BigInteger(), nullable=False),
        sa.Column("taker_buy_base_volume", DECIMAL, nullable=False),
        sa.Column("taker_buy_quote_volume", DECIMAL, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ingested_at", TIME, nullable=False, server_default=sa.func.current_timestamp()),
        sa.PrimaryKeyConstraint("exchange", "symbol", "timeframe", "open_time", name="candles_pkey"),
        sa.CheckConstraint(check, name="candles_source_check"),
    )


def _set(check: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("candles", copy_from=_table(check), recreate="always"):
            pass
        return
    op.drop_constraint("candles_source_check", "candles", type_="check")
    op.create_check_constraint("candles_source_check", "candles", check)


def upgrade() -> None:
    _set(NEW)


def downgrade() -> None:
    _set(OLD)
