"""Backfill benchmarks: end-to-end throughput vs the seed's one-INSERT-one-commit way, the share of
a weight budget used without a 429, and peak memory as the history grows."""

from __future__ import annotations

import time

import psycopg

from common import OHLCV, Sim, fresh_db, run_measured, start_pg

from ohlcv_cli.adapters.sql.candles import SqlCandleRepository
from ohlcv_cli.adapters.sql.schema import make_engine

SYMBOLS = 20
DAYS = 18
START = "2024-01-01"
END = "2024-01-19"
SEED_SAMPLE = 20_000


def _seed_way(url: str, candles) -> float:
    """The seed's writer: one INSERT and one commit per candle. Returns candles/s."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    sql = (
        "INSERT INTO candles (exchange, symbol, timeframe, open_time, open, high, low, close, volume,"
        " quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume, source)"
        " VALUES (%s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING"
    )
    with psycopg.connect(dsn) as conn:
        t0 = time.perf_counter()
        for c in candles:
            conn.execute(sql, tuple(c))
            conn.commit()
        return len(candles) / (time.perf_counter() - t0)


def main() -> dict:
    cluster = start_pg()
    results = {}
    try:
        symbols = ",".join(f"SIM{i:03d}/USDT" for i in range(SYMBOLS))
        sim = Sim("--extra-symbols", str(SYMBOLS), "--precompute", f"1m:{START}/2024-02-06")
        try:
            url = fresh_db(cluster, "bench_backfill")
            env = {"DATABASE_URL": url, "OHLCV_EXCHANGE_URL": sim.url, "LOG_LEVEL": "WARNING"}
            r, wall, rss = run_measured([*OHLCV, "backfill", "--start", START, "--end", END,
                                         "--symbols", symbols], env)
            if r.returncode:
                raise RuntimeError(f"backfill failed: {r.stderr[-500:]}")
            engine = make_engine(url)
            repo = SqlCandleRepository(engine)
            n = repo.count()
            rate = n / wall
            print(f"backfill end to end (CLI, {SYMBOLS} symbols x {DAYS} days of 1m, simulator unthrottled, "
                  f"PostgreSQL with fsync on): {n} candles in {wall:.1f} s = {rate:,.0f} candles/s, peak RSS {rss:.0f} MiB")
            sample = repo.candles("binance", "SIM000/USDT", "1m")[:SEED_SAMPLE]
            engine.dispose()
            seed_url = fresh_db(cluster, "bench_seed")
            seed_rate = _seed_way(seed_url, sample)
            print(f"the seed's way (one INSERT + one commit per candle, {len(sample)} of the same candles): "
                  f"{seed_rate:,.0f} candles/s -> backfill is {rate / seed_rate:.1f}x the seed's way")
            results.update(backfill_rate=rate, seed_rate=seed_rate, ratio=rate / seed_rate)

            # peak memory as the history grows: 4 days vs 16 days of 5 symbols
            few = ",".join(f"SIM{i:03d}/USDT" for i in range(5))
            peaks = []
            for days, end in ((9, "2024-01-10"), (36, "2024-02-06")):
                u = fresh_db(cluster, f"bench_mem_{days}")
                r, _, rss = run_measured([*OHLCV, "backfill", "--start", START, "--end", end, "--symbols", few],
                                         {**env, "DATABASE_URL": u})
                if r.returncode:
                    raise RuntimeError(r.stderr[-500:])
                peaks.append((days, rss))
            print("peak RSS of the backfill process: " + ", ".join(f"{d} days {m:.0f} MiB" for d, m in peaks)
                  + f" (x{peaks[1][1] / peaks[0][1]:.2f} for 4x the history: memory is bounded by"
                  " BACKFILL_BATCH_SIZE x BACKFILL_CONCURRENCY, not by the window)")
            results["rss"] = peaks
        finally:
            sim.stop()

        # weight budget: the simulator enforces 160 weight per 2 s window (80 klines requests)
        sim = Sim("--extra-symbols", "10", "--weight-limit", "160", "--weight-window", "2")
        try:
            url = fresh_db(cluster, "bench_budget")
            ten = ",".join(f"SIM{i:03d}/USDT" for i in range(10))
            r, wall, _ = run_measured([*OHLCV, "backfill", "--start", START, "--end", "2024-01-31",
                                       "--symbols", ten],
                                      {"DATABASE_URL": url, "OHLCV_EXCHANGE_URL": sim.url, "LOG_LEVEL": "WARNING"})
            if r.returncode:
                raise RuntimeError(r.stderr[-500:])
            stats = sim.stats()
            windows = sorted((int(k), v) for k, v in stats["windows"].items())
            full = [v for _, v in windows[1:-1]]  # the first and last windows are partial
            share = sum(full) / (len(full) * stats["weight_limit"]) if full else 0.0
            print(f"weight budget (160 per 2 s window, {len(full)} full windows): {share:.1%} of the budget used, "
                  f"{stats['rejected_429']} answers 429, {stats['rejected_418']} answers 418")
            results.update(budget_share=share, budget_429=stats["rejected_429"])
        finally:
            sim.stop()
    finally:
        cluster.destroy()
    return results


if __name__ == "__main__":
    main()
