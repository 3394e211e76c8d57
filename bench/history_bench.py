"""One road for history (issue 16): `ohlcv run --days 30`'s backfill phase against `ohlcv backfill
--days 30` on the same window, side by side in one run, the simulator at 100 ms latency with its
archive (OHLCV_ARCHIVE_URL), into PostgreSQL.

`backfill` is timed from its start to its exit; `run` from its start to its "backfill done" log
line (then it is stopped with SIGTERM: the live part is not measured). Both include the process
start-up. Each command gets a fresh database and a fresh simulator (the same seed, so the same
candles), so the simulator's request counts and its peak of requests in flight are each command's
own; the two alternate which goes first. Target: run's phase at most 10 % longer than backfill.
HISTORY_BENCH_SYMBOLS (5) and HISTORY_BENCH_ROUNDS (3: the medians are compared) size it."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time

from common import OHLCV, Sim, fresh_db, run_measured, start_pg

DAYS = "30"
SYMBOLS = int(os.environ.get("HISTORY_BENCH_SYMBOLS", "5"))
ROUNDS = int(os.environ.get("HISTORY_BENCH_ROUNDS", "3"))
SIM_ARGS = ("--extra-symbols", str(SYMBOLS), "--latency-ms", "100")


def _env(url: str, sim: Sim) -> dict:
    syms = ",".join(f"SIM{i:03d}/USDT" for i in range(SYMBOLS))
    return {"DATABASE_URL": url, "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_ARCHIVE_URL": sim.url,
            "SYMBOLS": syms, "TIMEFRAME": "1m", "LOG_LEVEL": "INFO", "LOG_FORMAT": "text"}


def _backfill(cluster, name: str) -> tuple[float, dict]:
    sim = Sim(*SIM_ARGS)
    try:
        r, wall, _ = run_measured([*OHLCV, "backfill", "--days", DAYS],
                                  _env(fresh_db(cluster, name), sim))
        if r.returncode:
            raise RuntimeError(f"{name} failed: {r.stderr[-800:]}")
        return wall, sim.stats()
    finally:
        sim.stop()


def _run(cluster, name: str) -> tuple[float, dict]:
    """`ohlcv run` until it logs that its backfill is done; then SIGTERM."""
    sim = Sim(*SIM_ARGS)
    try:
        env = {**os.environ, **_env(fresh_db(cluster, name), sim)}
        t0 = time.perf_counter()
        proc = subprocess.Popen([*OHLCV, "run", "--days", DAYS], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = None
        tail: list[str] = []
        for line in proc.stderr:
            tail = (tail + [line])[-20:]
            if "backfill done" in line:
                wall = time.perf_counter() - t0
                break
        stats = sim.stats()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        if wall is None:
            raise RuntimeError(f"{name}: run never said its backfill was done: {''.join(tail)}")
        return wall, stats
    finally:
        sim.stop()


def _figures(stats: dict) -> str:
    return (f"{stats['paths'].get('/api/v3/klines', 0)} klines requests, "
            f"{stats['archive_downloads']} archive files, "
            f"{stats['paths'].get('/api/v3/exchangeInfo', 0)} exchangeInfo, "
            f"peak {stats['max_in_flight']} requests in flight")


def main() -> dict:
    cluster = start_pg()
    runs: list[float] = []
    backfills: list[float] = []
    try:
        for k in range(ROUNDS):
            if k % 2:  # alternate the order: neither always gets the warmer cluster
                r, rs = _run(cluster, f"hist_run_{k}")
                b, bs = _backfill(cluster, f"hist_backfill_{k}")
            else:
                b, bs = _backfill(cluster, f"hist_backfill_{k}")
                r, rs = _run(cluster, f"hist_run_{k}")
            backfills.append(b)
            runs.append(r)
            print(f"round {k + 1}: backfill {b:.2f} s ({_figures(bs)}); run's backfill phase "
                  f"{r:.2f} s ({_figures(rs)})")
    finally:
        cluster.destroy()
    b, r = statistics.median(backfills), statistics.median(runs)
    ratio = r / b
    print(f"{SYMBOLS} symbols x {DAYS} days of 1m at 100 ms latency, archive on: `ohlcv run` "
          f"backfill phase {r:.2f} s vs `ohlcv backfill` {b:.2f} s (medians of {ROUNDS}) -> "
          f"ratio {ratio:.2f} ({'within' if ratio <= 1.10 else 'NOT within'} the 10 % target)")
    return {"run_s": r, "backfill_s": b, "ratio": ratio}


if __name__ == "__main__":
    main()
