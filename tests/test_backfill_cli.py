"""`ohlcv backfill` end to end: a real process, the simulator over HTTP, real databases."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from conftest import run_cli
from ohlcv_cli.core.timeutil import iso, parse_iso
from helpers import kline_rows as as_rows

M = 60_000




def test_backfill_days_stores_exact_candles_within_boundaries(pg_url, repo_for, sim_factory):
    sim = sim_factory(zero_volume_share=0.02)
    r = run_cli("backfill", "--days", "1", "--symbols", "BTC/USDT,ETH/USDT",
                env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "REALTIME_DELAY_SECONDS": "0.2"})
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    now = int(time.time() * 1000)
    for sym in ("BTC/USDT", "ETH/USDT"):
        stored = repo.candles("binance", sym, "1m")
        end = stored[-1].open_time + M
        assert len(stored) == 1440
        assert end <= now and end > now - 2 * M  # the current, open minute is never stored
        assert stored[0].open_time == end - 1440 * M  # start = end - days, inclusive
        assert as_rows(stored) == sim.final_rows(sym, "1m", end - 1440 * M, end)
        assert {c.source for c in stored} == {"backfill"}
    assert "BTC/USDT" in r.stdout and "1440" in r.stdout


def test_start_end_window_and_rerun_writes_nothing(sqlite_url, repo_for, sim):
    args = ("backfill", "--start", "2024-02-01T00:00:00Z", "--end", "2024-02-01T12:00", "--symbols", "SOL/USDT")
    env = {"DATABASE_URL": sqlite_url, "OHLCV_EXCHANGE_URL": sim.url}
    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    repo = repo_for(sqlite_url)
    stored = repo.candles("binance", "SOL/USDT", "1m")
    start, end = parse_iso("2024-02-01"), parse_iso("2024-02-01T12:00")
    assert [c.open_time for c in stored] == list(range(start, end, M))
    assert as_rows(stored) == sim.final_rows("SOL/USDT", "1m", start, end)
    requests_before = sim.stats()["klines"]
    again = run_cli(*args, env=env)
    assert again.returncode == 0
    assert "SOL/USDT" in again.stdout and " 0 " in again.stdout.split("SOL/USDT")[1].split("\n")[0]
    assert sim.stats()["klines"] == requests_before  # nothing missing: nothing fetched
    assert repo.candles("binance", "SOL/USDT", "1m") == stored


def test_settling_candle_is_waited_for_never_stored_moving(pg_url, repo_for, sim_factory):
    sim = sim_factory(settle_lag_ms=600)
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "REALTIME_DELAY_SECONDS": "0.8"}
    start = iso(int(time.time() * 1000) - 90_000).replace(" ", "T")
    r = run_cli("backfill", "--start", start, "--symbols", "XRP/USDT", "--timeframe", "1s", env=env)
    assert r.returncode == 0, r.stderr
    stored = repo_for(pg_url).candles("binance", "XRP/USDT", "1s")
    assert len(stored) >= 88
    assert as_rows(stored) == sim.final_rows("XRP/USDT", "1s", stored[0].open_time, stored[-1].open_time + 1000)


def test_exchange_gaps_and_listing_are_not_errors(pg_url, repo_for, sim_factory):
    from dataclasses import replace

    from ohlcv_sim import default_symbols

    t0 = parse_iso("2024-04-01")
    specs = [replace(s, listed_at=t0 + 300 * M) if s.symbol == "DOGE/USDT" else s for s in default_symbols()]
    sim = sim_factory(symbols=specs, maintenance=[(t0 + 600 * M, t0 + 700 * M)])
    r = run_cli("backfill", "--start", "2024-04-01", "--end", "2024-04-02", "--symbols", "DOGE/USDT,BTC/USDT",
                env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url})
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    assert repo.count(symbol="DOGE/USDT") == 1440 - 300 - 100
    assert repo.count(symbol="BTC/USDT") == 1440 - 100
    line = next(ln for ln in r.stdout.splitlines() if "DOGE/USDT" in ln)
    assert "400" in line  # minutes the exchange has no candles for
    # the empty ranges are remembered (table exchange_gaps): a rerun asks the exchange nothing
    requests = sim.stats()["klines"]
    again = run_cli("backfill", "--start", "2024-04-01", "--end", "2024-04-02", "--symbols", "DOGE/USDT,BTC/USDT",
                    env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url})
    assert again.returncode == 0 and sim.stats()["klines"] == requests


def test_faults_survived_nothing_missing(pg_url, repo_for, sim_factory):
    sim = sim_factory(share_429=0.15, share_5xx=0.15)
    r = run_cli("backfill", "--start", "2024-01-01", "--end", "2024-01-05", "--symbols", "BNB/USDT,LTC/USDT",
                env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "EXCHANGE_MAX_RETRIES": "10"})
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    start, end = parse_iso("2024-01-01"), parse_iso("2024-01-05")
    for sym in ("BNB/USDT", "LTC/USDT"):
        assert as_rows(repo.candles("binance", sym, "1m")) == sim.final_rows(sym, "1m", start, end)
    assert sim.stats()["injected_429"] + sim.stats()["injected_5xx"] > 0


def test_interrupted_backfill_resumes_where_it_stopped(pg_url, repo_for, sim_factory):
    sim = sim_factory(latency_ms=40)
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "BACKFILL_BATCH_SIZE": "2000"}
    args = ["backfill", "--start", "2024-01-01", "--end", "2024-01-15", "--symbols", "ETH/USDT,ADA/USDT"]
    import os

    full_env = {**{k: v for k, v in os.environ.items()}, **env}
    proc = subprocess.Popen([sys.executable, "-m", "ohlcv_cli", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    repo = repo_for(pg_url)
    deadline = time.time() + 60
    while repo.count() < 4000 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = repo.count()
    total = 2 * 14 * 1440
    assert 0 < partial < total
    requests_before = sim.stats()["klines"]
    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    start, end = parse_iso("2024-01-01"), parse_iso("2024-01-15")
    for sym in ("ETH/USDT", "ADA/USDT"):
        assert as_rows(repo.candles("binance", sym, "1m")) == sim.final_rows(sym, "1m", start, end)
    written = sum(int(ln.split("│")[2]) for ln in r.stdout.splitlines() if "/USDT" in ln and "│" in ln)
    assert written == total - partial  # only what was missing
    assert sim.stats()["klines"] - requests_before < total // 1000 + 4


@pytest.mark.parametrize("args,message", [
    (["--symbols", "NOPE/USDT"], "error: unknown symbol 'NOPE/USDT'"),
    (["--timeframe", "7m"], "error: unsupported timeframe '7m'"),
    (["--days", "0"], "error: --days must be a positive whole number, got 0"),
    (["--days", "-3"], "error: --days must be a positive whole number, got -3"),
    (["--days", "abc"], "error: Invalid value for '--days': Input should be a valid integer"),
    (["--start", "2024-02-02", "--end", "2024-02-01"], "error: --start 2024-02-02 is not before --end 2024-02-01"),
    (["--start", "someday"], "error: invalid --start 'someday'"),
    (["--symbols", "BTC-USDT"], "error: malformed symbol 'BTC-USDT'"),
    (["--database-url", "nosuchdb://x/y"], "error: invalid database URL 'nosuchdb://x/y'"),
    (["--database-url", "postgresql://bob:hunter2@127.0.0.1:9/db"], "error: database error at postgresql+psycopg://bob:***@127.0.0.1:9/db"),
    (["--exchange-url", "http://127.0.0.1:9"], "error: binance unreachable at http://127.0.0.1:9"),
])
def test_bad_inputs_one_line_nonzero_nothing_written(args, message, sim, tmp_path):
    env = {"OHLCV_EXCHANGE_URL": sim.url, "EXCHANGE_MAX_RETRIES": "1"}
    r = run_cli("backfill", "--days", "1", *args, env=env) if "--days" not in args and "--start" not in args \
        else run_cli("backfill", *args, env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    # one error line, last; before it at most the log lines of retries
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith(message), r.stderr
    assert all(" WARNING " in ln for ln in lines[:-1]), r.stderr
    assert "Traceback" not in r.stderr and "hunter2" not in r.stderr + r.stdout
    assert not (tmp_path / "ohlcv.db").exists() or _empty(tmp_path / "ohlcv.db")


def _empty(path) -> bool:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM candles").fetchone()[0] == 0


def test_embedded_default_needs_no_setup(sim, tmp_path):
    r = run_cli("backfill", "--days", "1", "--symbols", "BTC/USDT", env={"OHLCV_EXCHANGE_URL": sim.url}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "ohlcv.db") as conn:
        n, opn = conn.execute("SELECT count(*), min(open) FROM candles WHERE symbol = 'BTC/USDT'").fetchone()
    assert n == 1440 and isinstance(opn, str) and opn.endswith("000000")


def test_schema_missing_on_postgres_is_one_line(pg_cluster, sim):
    url = pg_cluster.create_database("no_schema_cli")
    r = run_cli("backfill", "--days", "1", env={"DATABASE_URL": url, "OHLCV_EXCHANGE_URL": sim.url})
    assert r.returncode == 2
    assert r.stderr.strip() == "error: database schema is missing: run `ohlcv db upgrade`"
    up = run_cli("db", "upgrade", "--database-url", url)
    assert up.returncode == 0 and "upgraded: empty -> 0005" in up.stdout
    cur = run_cli("db", "current", env={"DATABASE_URL": url})
    assert cur.returncode == 0 and cur.stdout.strip() == "0005 (head)"
