"""Archive benchmarks: 1 year x 5 symbols of 1m candles (2.6M) into PostgreSQL from the
simulator's archive vs the REST path on the same window (unthrottled, and at Binance's budget of
6,000 weight a minute), and REST at 100 ms latency under that budget with pages in flight vs the
one-page-at-a-time code.

Rates are candles/s end to end (the `ohlcv backfill` process's wall time, start-up included); the
latency runs also give the fetch phase alone (first to last klines request at the simulator), since
a 30-day run of one symbol is over in about a second and a process start-up (interpreter, imports,
markets and clock at 100 ms each) is most of its wall time. ARCHIVE_BENCH_END=2024-04-01 runs a
quarter of the size."""

from __future__ import annotations

import os
import urllib.request

from common import OHLCV, Sim, fresh_db, run_measured, start_pg

from ohlcv_cli.adapters.sql.candles import SqlCandleRepository
from ohlcv_cli.adapters.sql.schema import make_engine

SYMBOLS = 5
START, END = "2024-01-01", os.environ.get("ARCHIVE_BENCH_END", "2025-01-01")  # a year
BUDGET = 50_000  # candles/s that 6,000 weight a minute allows (1,000 candles per weight 2)


def _run(cluster, name: str, sim: Sim, args: list[str], env: dict) -> tuple[float, int, dict]:
    url = fresh_db(cluster, name)
    urllib.request.urlopen(f"{sim.url}/sim/phase").read()
    before = sim.stats()
    r, wall, rss = run_measured([*OHLCV, "backfill", *args], {
        "DATABASE_URL": url, "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_ARCHIVE_URL": sim.url,
        "LOG_LEVEL": "WARNING", **env})
    if r.returncode:
        raise RuntimeError(f"{name} failed: {r.stderr[-800:]}")
    engine = make_engine(url)
    n = SqlCandleRepository(engine).count()
    engine.dispose()
    after = sim.stats()
    spent = {k: after[k] - before[k] for k in ("klines", "archive_downloads", "rejected_429")}
    phase = (after.get("klines_last_ms", 0) - after.get("klines_first_ms", 0)) / 1000
    return n / wall, n, {**spent, "wall": wall, "rss": rss, "phase": phase}


def main() -> dict:
    cluster = start_pg()
    out: dict = {}
    syms = ",".join(f"SIM{i:03d}/USDT" for i in range(SYMBOLS))
    window = ["--start", START, "--end", END, "--symbols", syms]
    try:
        sim = Sim("--extra-symbols", str(SYMBOLS), "--precompute-archive", f"1m:{START}/{END}",
                  "--precompute", f"1m:{START}/{END}")
        try:
            rate, n, x = _run(cluster, "arch_auto", sim, window, {})
            print(f"archive -> PostgreSQL ({SYMBOLS} symbols x {START}..{END} of 1m, simulator's "
                  f"archive, spot-check on): {n} candles in {x['wall']:.1f} s = {rate:,.0f} "
                  f"candles/s, {x['archive_downloads']} files, REST weight spent "
                  f"{2 * x['klines']} ({x['klines']} spot-check requests), peak RSS {x['rss']:.0f} MiB")
            rest, n2, y = _run(cluster, "arch_rest", sim, [*window, "--source", "rest"], {})
            print(f"REST on the same window, simulator unthrottled: {n2} candles in {y['wall']:.1f} s "
                  f"= {rest:,.0f} candles/s -> archive is {rate / rest:.1f}x")
            out.update(archive=rate, rest_unthrottled=rest)
        finally:
            sim.stop()
        # Binance's rate (6,000 weight a minute) in 1 s windows, so that a run of seconds is
        # bound by it: with 60 s windows a short run fits inside the first window's burst.
        sim = Sim("--extra-symbols", str(SYMBOLS), "--precompute", f"1m:{START}/{END}",
                  "--weight-limit", "100", "--weight-window", "1")
        try:
            budget, n3, z = _run(cluster, "arch_budget", sim, [*window, "--source", "rest"], {})
            print(f"REST at Binance's rate (100 weight per 1 s window = 6,000/min, ceiling {BUDGET:,} candles/s): "
                  f"{n3} candles in {z['wall']:.1f} s = {budget:,.0f} candles/s "
                  f"({z['rejected_429']} requests refused) -> archive is "
                  f"{rate / budget:.1f}x the budget-bound REST path")
            out["rest_budget"] = budget
        finally:
            sim.stop()
        sim = Sim("--extra-symbols", "10", "--precompute", "1m:2024-01-01/2024-01-31",
                  "--weight-limit", "100", "--weight-window", "1", "--latency-ms", "100")
        try:
            for k in (1, 10):
                names = ",".join(f"SIM{i:03d}/USDT" for i in range(k))
                args = ["--start", "2024-01-01", "--end", "2024-01-31", "--symbols", names,
                        "--source", "rest"]
                new, n4, a = _run(cluster, f"lat_new_{k}", sim, args, {})
                old, _, b = _run(cluster, f"lat_old_{k}", sim, args, {"BACKFILL_IN_FLIGHT": "1"})
                fetch_new = n4 / (a["phase"] + 0.1)  # + the last answer's 100 ms
                fetch_old = n4 / (b["phase"] + 0.1)
                print(f"REST at 100 ms latency under the budget, {k} x 30 days ({n4} candles, "
                      f"{a['klines']} requests, {a['rejected_429']} refused): end to end "
                      f"{new:,.0f} candles/s with 16 pages in flight ({new / BUDGET:.0%} of the "
                      f"ceiling; {a['wall']:.2f} s wall) vs {old:,.0f} one page at a time per "
                      f"symbol -> {new / old:.1f}x; fetch phase {fetch_new:,.0f} candles/s "
                      f"({fetch_new / BUDGET:.0%}) vs {fetch_old:,.0f} -> {fetch_new / fetch_old:.1f}x")
                out[f"latency_{k}"] = (new, old, fetch_new, fetch_old)
        finally:
            sim.stop()
    finally:
        cluster.destroy()
    return out


if __name__ == "__main__":
    main()
