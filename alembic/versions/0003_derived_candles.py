"""derived timeframes: SQL functions that aggregate stored candles into coarser ones (PostgreSQL)

`ohlcv_derived_candles(exchange, symbol, timeframe, source, start, end [, include_incomplete])`
returns the candles of `timeframe` with open time in [start, end) built from the stored candles
of the finer `source` with Binance's bucket alignment (multiples of the interval since the epoch;
1w from Monday 00:00 UTC). A bucket is complete when every source candle in it is stored or lies
in a range of exchange_gaps; by default only complete buckets are returned. SQLite has no such
function: ohlcv runs the same aggregation as a query there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INTERVAL = """
CREATE OR REPLACE FUNCTION ohlcv_timeframe_interval(tf text) RETURNS interval
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE tf
    WHEN '1s' THEN interval '1 second' WHEN '1m' THEN interval '1 minute'
    WHEN '3m' THEN interval '3 minutes' WHEN '5m' THEN interval '5 minutes'
    WHEN '15m' THEN interval '15 minutes' WHEN '30m' THEN interval '30 minutes'
    WHEN '1h' THEN interval '1 hour' WHEN '2h' THEN interval '2 hours'
    WHEN '4h' THEN interval '4 hours' WHEN '6h' THEN interval '6 hours'
    WHEN '8h' THEN interval '8 hours' WHEN '12h' THEN interval '12 hours'
    WHEN '1d' THEN interval '1 day' WHEN '3d' THEN interval '3 days'
    WHEN '1w' THEN interval '7 days'
  END
$$
"""

# date_bin needs PostgreSQL 14+. Weeks are binned from Monday 1970-01-05.
_DERIVED = """
CREATE OR REPLACE FUNCTION ohlcv_derived_candles(
    p_exchange text, p_symbol text, p_timeframe text, p_source text,
    p_start timestamptz, p_end timestamptz, p_include_incomplete boolean DEFAULT false)
RETURNS TABLE (
    open_time timestamptz, open numeric, high numeric, low numeric, close numeric,
    volume numeric, quote_volume numeric, trades bigint, taker_buy_base_volume numeric,
    taker_buy_quote_volume numeric, source_candles integer, expected_candles integer,
    complete boolean)
LANGUAGE sql STABLE AS $$
  WITH p AS (
    SELECT ohlcv_timeframe_interval(p_timeframe) AS step,
           ohlcv_timeframe_interval(p_source) AS base,
           CASE WHEN p_timeframe = '1w' THEN timestamptz '1970-01-05 00:00:00+00'
                ELSE timestamptz '1970-01-01 00:00:00+00' END AS origin
  ), w AS (
    -- buckets opening in [p_start, p_end): source candles from ceil(p_start) to ceil(p_end)
    SELECT p.*,
           CASE WHEN date_bin(step, p_start, origin) = p_start THEN p_start
                ELSE date_bin(step, p_start, origin) + step END AS lo,
           CASE WHEN date_bin(step, p_end, origin) = p_end THEN p_end
                ELSE date_bin(step, p_end, origin) + step END AS hi
    FROM p
  ), agg AS (
    SELECT date_bin(w.step, c.open_time, w.origin) AS bucket,
           (array_agg(c.open ORDER BY c.open_time))[1] AS open,
           max(c.high) AS high, min(c.low) AS low,
           (array_agg(c.close ORDER BY c.open_time DESC))[1] AS close,
           sum(c.volume) AS volume, sum(c.quote_volume) AS quote_volume,
           sum(c.trades)::bigint AS trades,
           sum(c.taker_buy_base_volume) AS taker_buy_base_volume,
           sum(c.taker_buy_quote_volume) AS taker_buy_quote_volume,
           count(*)::integer AS n
    FROM candles c, w
    WHERE c.exchange = p_exchange AND c.symbol = p_symbol AND c.timeframe = p_source
      AND c.open_time >= w.lo AND c.open_time < w.hi
    GROUP BY 1
  ), counted AS (
    SELECT a.*,
           (extract(epoch FROM w.step) / extract(epoch FROM w.base))::integer
             - coalesce((
                 SELECT sum(extract(epoch FROM least(g.end_time, a.bucket + w.step)
                                    - greatest(g.start_time, a.bucket))
                            / extract(epoch FROM w.base))::integer
                 FROM exchange_gaps g
                 WHERE g.exchange = p_exchange AND g.symbol = p_symbol
                   AND g.timeframe = p_source
                   AND g.start_time < a.bucket + w.step AND g.end_time > a.bucket), 0)
             AS expected
    FROM agg a, w
  )
  SELECT bucket, open, high, low, close, volume, quote_volume, trades, taker_buy_base_volume,
         taker_buy_quote_volume, n, expected, n = expected
  FROM counted
  WHERE p_include_incomplete OR n = expected
  ORDER BY bucket
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_INTERVAL)
    op.execute(_DERIVED)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS ohlcv_derived_candles(text, text, text, text, "
               "timestamptz, timestamptz, boolean)")
    op.execute("DROP FUNCTION IF EXISTS ohlcv_timeframe_interval(text)")
