"""Reading the store: one year of 1m candles of one symbol (525,600) into a DataFrame through the
read API against pandas.read_sql of the same rows in the same run; a year of 1h derived from the
1m in PostgreSQL; `ohlcv export` of the year to Parquet (candles/s, peak RSS against a quarter of
it, to show that memory stays flat).

`main()` is called by bench/run.py; `python bench/read_bench.py --days 60` runs a quick version.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402
from common import OHLCV, fresh_db, run_measured, start_pg  # noqa: E402

# varied values with 8 decimals, as the exchange renders them
_LOAD = """
INSERT INTO candles (exchange, symbol, timeframe, open_time, open, high, low, close, volume,
                     quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume, source)
SELECT 'binance', 'BTC/USDT', '1m', t, p, p + 3.25, p - 2.5, p + 1.125, v, round(v * p, 8), 42 + i % 100,
       round(v / 2, 8), round(v * p / 2, 8), 'backfill'
FROM (SELECT t, i, round((40000 + 500 * sin(i / 900.0) + (i % 37))::numeric, 2)::numeric(20, 8) AS p,
             round((5 + (i % 113) / 7.0)::numeric, 8) AS v
      FROM generate_series(0, :n - 1) AS i,
           LATERAL (SELECT timestamptz '2024-01-01 00:00+00' + i * interval '1 minute') AS x(t)) s
"""


def best(fn, runs: int = 3) -> tuple[float, object]:
    out, times = None, []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(days: int = 365) -> None:
    import pandas as pd

    from ohlcv_cli.api.read import open_store

    n = days * 1440
    cluster = start_pg()
    try:
        url = fresh_db(cluster, "readbench")
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(sa.text(_LOAD), {"n": n})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE candles"))
        # exports first: a child forked from a process holding big frames would count their
        # pages in its peak RSS
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
        with tempfile.TemporaryDirectory() as tmp:
            for part, label in ((4, "a quarter"), (1, "all")):
                args = [*OHLCV, "export", "--symbols", "BTC/USDT", "--format", "parquet",
                        "--out", f"{tmp}/x.parquet", "--database-url", url]
                if part != 1:
                    args += ["--start", "2024-01-01", "--end",
                             time.strftime("%Y-%m-%dT%H:%M", time.gmtime(
                                 1704067200 + n // part * 60))]
                r, wall, rss = run_measured(args, env)
                assert r.returncode == 0, r.stderr
                size = os.path.getsize(f"{tmp}/x.parquet") / 2**20
                print(f"ohlcv export parquet, {label} ({n // part:,} candles): {wall:.2f} s"
                      f" end to end ({n // part / wall:,.0f} candles/s), peak RSS {rss:.0f} MiB,"
                      f" file {size:.1f} MiB; {r.stderr.strip().splitlines()[-1]}")
        store = open_store(url)
        api_s, df = best(lambda: store.candles("BTC/USDT", "1m"))
        assert len(df) == n, len(df)
        sql = ("SELECT open_time, open, high, low, close, volume, quote_volume, trades,"
               " taker_buy_base_volume, taker_buy_quote_volume FROM candles WHERE exchange ="
               " 'binance' AND symbol = 'BTC/USDT' AND timeframe = '1m' ORDER BY open_time")
        naive_s, naive = best(lambda: pd.read_sql(sql, engine, index_col="open_time"), 2)
        assert len(naive) == n and float(naive["close"].iloc[-1]) == df["close"].iloc[-1]
        exact_s, _ = best(lambda: store.candles("BTC/USDT", "1m", exact=True), 1)
        hours_s, hours = best(lambda: store.candles("BTC/USDT", "1h"))
        assert len(hours) == n // 60, len(hours)
        print(f"read API, {n:,} 1m candles into pandas (float): {api_s:.3f} s"
              f" ({n / api_s:,.0f} candles/s); exact Decimal columns: {exact_s:.3f} s")
        print(f"pandas.read_sql of the same rows: {naive_s:.3f} s -> {naive_s / api_s:.1f}x faster")
        print(f"derived 1h from 1m in PostgreSQL, {len(hours):,} candles: {hours_s:.3f} s")
        store.close()
        engine.dispose()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    main(ap.parse_args().days)
