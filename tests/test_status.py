"""`ohlcv status` end to end on real PostgreSQL and SQLite."""

from __future__ import annotations

import json
import time

from conftest import run_cli
from ohlcv_cli.adapters.sql.gaps import SqlGapRepository
from test_gaps import T0, T1, M, delete, store


def status(url, *args):
    return run_cli("status", "--database-url", url, *args)


def test_status_per_symbol_and_timeframe(db_url, repo_for, sim):
    repo = repo_for(db_url)
    store(repo, sim, "BTC/USDT")
    store(repo, sim, "BTC/USDT", tf="5m")
    store(repo, sim, "ETH/USDT")
    delete(repo, "BTC/USDT", T0 + 10 * M, T0 + 14 * M)  # lost rows: coverage drops
    delete(repo, "ETH/USDT", T0 + 100 * M, T0 + 110 * M)  # the exchange has none: coverage stays
    SqlGapRepository(repo.engine).record_exchange_gaps(
        "binance", "ETH/USDT", "1m", [(T0 + 100 * M, T0 + 110 * M)])

    r = status(db_url, "--json")
    assert r.returncode == 0, r.stderr
    rows = {(x["symbol"], x["timeframe"]): x for x in json.loads(r.stdout)}
    assert sorted(rows) == [("BTC/USDT", "1m"), ("BTC/USDT", "5m"), ("ETH/USDT", "1m")]
    btc = rows["BTC/USDT", "1m"]
    assert (btc["first"], btc["last"], btc["stored"], btc["expected"]) == (
        "2024-03-01T00:00:00Z", "2024-03-01T05:59:00Z", 356, 360)
    assert btc["coverage"] == 100 * 356 / 360 and btc["exchange_gap_ranges"] == 0
    eth = rows["ETH/USDT", "1m"]
    assert (eth["stored"], eth["expected"], eth["coverage"]) == (350, 350, 100.0)
    assert (eth["exchange_gap_ranges"], eth["exchange_gap_candles"]) == (1, 10)
    five = rows["BTC/USDT", "5m"]
    assert (five["last"], five["stored"], five["expected"]) == ("2024-03-01T05:55:00Z", 72, 72)
    age = time.time() - (T1 / 1000)
    assert abs(btc["age_seconds"] - age) < 60

    table = status(db_url, "--wide")
    assert table.returncode == 0
    line = next(ln for ln in table.stdout.splitlines() if "ETH/USDT" in ln)
    for part in ("2024-03-01 00:00:00", "2024-03-01 05:59:00", "350", "100.00", "1 / 10"):
        assert part in line
    assert "98.88" in next(ln for ln in table.stdout.splitlines() if "BTC/USDT" in ln and "1m" in ln)

    only = json.loads(status(db_url, "--json", "--symbols", "ETH/USDT").stdout)
    assert [(x["symbol"], x["timeframe"]) for x in only] == [("ETH/USDT", "1m")]
    only = json.loads(status(db_url, "--json", "--timeframe", "5m").stdout)
    assert [(x["symbol"], x["timeframe"]) for x in only] == [("BTC/USDT", "5m")]


def test_status_of_an_empty_store(sqlite_url):
    r = status(sqlite_url)
    assert r.returncode == 0 and "no candles stored" in r.stdout
    r = status(sqlite_url, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_status_errors_are_one_line():
    r = run_cli("status", "--database-url", "postgresql://bob:hunter2@127.0.0.1:9/db")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: database error at postgresql+psycopg://bob:***@127.0.0.1:9/db")
    assert "\n" not in r.stderr.strip() and "hunter2" not in r.stderr
    r = run_cli("status", "--timeframe", "7m")
    assert r.returncode == 2 and r.stderr.startswith("error: unsupported timeframe '7m'")
