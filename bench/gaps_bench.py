"""`gaps check` on a big store: ours (count fast path, then a lag window over the primary key)
against the naive generate_series anti-join, measured in the same run on the same data.

Starts a throwaway durable PostgreSQL cluster, loads N symbols x 1 year of 1m candles (10.5M rows
at --rows-scale 1), deletes a few scattered ranges, VACUUM ANALYZE, then times both and checks they
find the same gaps. `main()` is called by bench/run.py; `python bench/gaps_bench.py --rows-scale
0.1` runs a quick version.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "pg"))
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from cluster import PgCluster  # noqa: E402

from ohlcv_cli.adapters.sql.gaps import SqlGapRepository  # noqa: E402
from ohlcv_cli.adapters.sql.candles import SqlCandleRepository  # noqa: E402
from ohlcv_cli.adapters.sql.schema import make_engine, upgrade  # noqa: E402
from ohlcv_cli.core.timeframes import parse_timeframe  # noqa: E402
from ohlcv_cli.core.timeutil import iso, parse_iso  # noqa: E402
from ohlcv_cli.core.window import HistoryWindow  # noqa: E402
from ohlcv_cli.services.gaps import GapCheck  # noqa: E402

M = 60_000
START = parse_iso("2024-01-01")
TF = parse_timeframe("1m")

_LOAD = """
INSERT INTO candles (exchange, symbol, timeframe, open_time, open, high, low, close, volume,
                     quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume, source)
SELECT 'binance', :sym, '1m', t, 100.50, 101.25, 99.75, 100.75, 12.34567890, 1243.9, 42,
       6.17283945, 621.95, 'backfill'
FROM generate_series(CAST(:a AS timestamptz), CAST(:b AS timestamptz) - interval '1 minute',
                     interval '1 minute') AS t
"""

_NAIVE = """
SELECT s.sym, g.t
FROM unnest(CAST(:syms AS text[])) AS s(sym)
CROSS JOIN generate_series(CAST(:a AS timestamptz), CAST(:b AS timestamptz) - interval '1 minute',
                           interval '1 minute') AS g(t)
WHERE NOT EXISTS (
    SELECT 1 FROM candles c
    WHERE c.exchange = 'binance' AND c.symbol = s.sym AND c.timeframe = '1m' AND c.open_time = g.t
)
ORDER BY s.sym, g.t
"""


def holes(symbols: list[str], end: int) -> dict[str, list[tuple[int, int]]]:
    """A few scattered ranges to delete: single candles, hours, a day, a trailing run."""
    n = (end - START) // M
    spec = [(1, 0.25, 30), (4, 0.5, 1), (4, 0.8, 120), (7, 0.33, 7), (11, None, 5),
            (15, 0.6, 1440), (18, 0.05, 2)]
    out: dict[str, list[tuple[int, int]]] = {}
    for i, where, length in spec:
        sym = symbols[i % len(symbols)]
        first = n - length if where is None else int(n * where)
        a = START + first * M
        out.setdefault(sym, []).append((a, a + length * M))
    return {s: sorted(r) for s, r in out.items()}


def load(engine, symbols: list[str], end: int) -> None:
    def one(sym: str) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(_LOAD), {"sym": sym, "a": iso(START) + "Z", "b": iso(end) + "Z"})

    with ThreadPoolExecutor(2) as pool:  # two backends: the machine has two cores
        list(pool.map(one, symbols))


def punch(engine, gaps: dict[str, list[tuple[int, int]]]) -> None:
    sql = sa.text("DELETE FROM candles WHERE exchange = 'binance' AND symbol = :s"
                  " AND timeframe = '1m' AND open_time >= :a AND open_time < :b")
    repo = SqlCandleRepository(engine)
    with engine.begin() as conn:
        for sym, ranges in gaps.items():
            for a, b in ranges:
                conn.execute(sql, {"s": sym, "a": repo.ts(a), "b": repo.ts(b)})


def naive(engine, symbols: list[str], end: int) -> dict[str, list[tuple[int, int]]]:
    """The obvious SQL: every expected open time, anti-joined with the table."""
    repo = SqlCandleRepository(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(_NAIVE), {"syms": symbols, "a": iso(START) + "Z",
                                               "b": iso(end) + "Z"}).all()
    out: dict[str, list[tuple[int, int]]] = {}
    for sym, t in rows:
        ms = repo.ms(t)
        ranges = out.setdefault(sym, [])
        if ranges and ranges[-1][1] == ms:
            ranges[-1] = (ranges[-1][0], ms + M)
        else:
            ranges.append((ms, ms + M))
    return out


def ours(engine, symbols: list[str], end: int) -> dict[str, list[tuple[int, int]]]:
    check = GapCheck(SqlCandleRepository(engine), SqlGapRepository(engine))
    report = check.run(symbols, TF, int(time.time() * 1000), HistoryWindow(start=START, end=end))
    return {g.symbol: g.missing for g in report.symbols if g.missing}


def via_cli(url: str, symbols: list[str], end: int) -> tuple[float, dict]:
    args = [sys.executable, "-m", "ohlcv_cli", "gaps", "check", "--json", "--database-url", url,
            "--symbols", ",".join(symbols), "--start", iso(START).replace(" ", "T") + "Z",
            "--end", iso(end).replace(" ", "T") + "Z"]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SYMBOLS")}
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise RuntimeError(f"gaps check failed ({r.returncode}): {r.stderr.strip()}")
    found = {}
    for g in json.loads(r.stdout)["symbols"]:
        if g["missing"]:
            found[g["symbol"]] = [(parse_iso(x["first"]), parse_iso(x["last"]) + M)
                                  for x in g["missing"]]
    return seconds, found


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows-scale", type=float, default=1.0,
                    help="share of a year loaded per symbol (1.0: 10.5M rows for 20 symbols)")
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="runs of our check (median reported)")
    a = ap.parse_args(argv)
    minutes = max(10_000, int(366 * 1440 * a.rows_scale))
    end = START + minutes * M
    symbols = [f"SIM{i:03d}/USDT" for i in range(a.symbols)]
    rows = minutes * len(symbols)

    cluster = PgCluster(durable=True).start()
    try:
        url = cluster.create_database("gaps_bench")
        engine = make_engine(url)
        upgrade(engine)
        t0 = time.perf_counter()
        load(engine, symbols, end)
        expected = holes(symbols, end)
        punch(engine, expected)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE candles"))
        print(f"loaded {rows / 1e6:.1f}M rows ({len(symbols)} symbols x {minutes} 1m candles) "
              f"in {time.perf_counter() - t0:.0f} s", flush=True)

        times, found = [], {}
        for _ in range(max(1, a.repeat)):
            t0 = time.perf_counter()
            found = ours(engine, symbols, end)
            times.append(time.perf_counter() - t0)
        t_ours = statistics.median(times)
        t_cli, found_cli = via_cli(url, symbols, end)
        t0 = time.perf_counter()
        found_naive = naive(engine, symbols, end)
        t_naive = time.perf_counter() - t0
        engine.dispose()
    finally:
        cluster.destroy()

    same = found == found_naive == found_cli == expected
    label = f"{rows / 1e6:.1f}M rows"
    print(f"gaps check {label}: {t_ours:.2f} s (naive generate_series anti-join: {t_naive:.2f} s, "
          f"{t_naive / t_ours:.1f}x faster)")
    print(f"gaps check {label} through the CLI, process start included: {t_cli:.2f} s")
    n_ranges = sum(len(r) for r in expected.values())
    print(f"gaps found: {n_ranges} ranges in {len(expected)} symbols; ours, CLI and naive agree "
          f"with what was deleted: {'yes' if same else 'NO'}")
    if not same:
        print(f"  deleted {expected}\n  ours    {found}\n  cli     {found_cli}\n"
              f"  naive   {found_naive}")
    return {"rows": rows, "ours_s": t_ours, "ours_runs_s": times, "cli_s": t_cli,
            "naive_s": t_naive, "ratio": t_naive / t_ours, "same": same}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["same"] else 1)
