"""`ohlcv gaps check` / `gaps repair` end to end: real processes, the simulator over HTTP, real
PostgreSQL and SQLite. Plus the pure range arithmetic and the exchange_gaps adapter."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from conftest import run_cli
from ohlcv_cli.adapters.sql.gaps import SqlGapRepository
from ohlcv_cli.core.candle import from_kline
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import iso, parse_iso
from ohlcv_cli.core.window import HistoryWindow
from ohlcv_cli.services.gaps import merge, subtract, uncovered
from ohlcv_sim import default_symbols
from helpers import kline_rows as as_rows

M = 60_000
M1 = parse_timeframe("1m")
T0 = parse_iso("2024-03-01")
T1 = T0 + 360 * M  # a six-hour window
WINDOW = ["--start", "2024-03-01", "--end", "2024-03-01T06:00"]


def store(repo, sim, symbol, start=T0, end=T1, tf="1m"):
    rows = sim.final_rows(symbol, tf, start, end)
    repo.upsert([from_kline(r, exchange="binance", symbol=symbol, timeframe=tf, source="backfill")
                 for r in rows])
    return rows


def delete(repo, symbol, start, end, tf="1m"):
    with repo.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM candles WHERE symbol = :s AND timeframe = :tf"
                             " AND open_time >= :a AND open_time < :b"),
                     {"s": symbol, "tf": tf, "a": repo.ts(start), "b": repo.ts(end)})




def check(url, *args, env=None):
    r = run_cli("gaps", "check", "--database-url", url, *args, env=env)
    return r, (json.loads(r.stdout) if "--json" in args and r.stdout.strip() else None)


def z(ms):
    return iso(ms).replace(" ", "T") + "Z"


def ranges_of(report, symbol):
    sym = next(s for s in report["symbols"] if s["symbol"] == symbol)
    return [(x["first"], x["last"], x["candles"]) for x in sym["missing"]]


def exchange_gap_rows(url):
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT symbol, timeframe, start_time, end_time FROM exchange_gaps"
                                    " ORDER BY symbol, start_time")).all()
    engine.dispose()
    return [(s, tf, str(a)[:19], str(b)[:19]) for s, tf, a, b in rows]


# --- check ------------------------------------------------------------------------------------
def test_deleted_rows_found_exactly(db_url, repo_for, sim):
    repo = repo_for(db_url)
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        store(repo, sim, sym)
    delete(repo, "BTC/USDT", T0 + 10 * M, T0 + 11 * M)  # one candle
    delete(repo, "BTC/USDT", T0 + 100 * M, T0 + 130 * M)  # thirty adjacent ones: one range
    delete(repo, "BTC/USDT", T1 - 5 * M, T1)  # the window's last five
    delete(repo, "ETH/USDT", T0 + 200 * M, T0 + 202 * M)
    r, report = check(db_url, *WINDOW, "--symbols", "BTC/USDT,ETH/USDT,SOL/USDT", "--json")
    assert r.returncode == 1, r.stderr
    assert ranges_of(report, "BTC/USDT") == [
        ("2024-03-01T00:10:00Z", "2024-03-01T00:10:00Z", 1),
        ("2024-03-01T01:40:00Z", "2024-03-01T02:09:00Z", 30),
        ("2024-03-01T05:55:00Z", "2024-03-01T05:59:00Z", 5),
    ]
    assert ranges_of(report, "ETH/USDT") == [("2024-03-01T03:20:00Z", "2024-03-01T03:21:00Z", 2)]
    assert ranges_of(report, "SOL/USDT") == []
    btc = report["symbols"][0]
    assert (btc["status"], btc["expected"], btc["missing_candles"]) == ("gaps", 360, 36)
    assert btc["coverage"] == pytest.approx(100 * 324 / 360)
    assert report["ok"] is False and report["missing_candles"] == 38
    assert (report["start"], report["end"]) == (z(T0), z(T1))

    table, _ = check(db_url, *WINDOW, "--symbols", "BTC/USDT,ETH/USDT,SOL/USDT", "--wide")
    assert table.returncode == 1
    assert "2024-03-01 01:40:00 → 2024-03-01 02:09:00 (30)" in table.stdout
    sol = next(ln for ln in table.stdout.splitlines() if "SOL/USDT" in ln)
    assert " ok " in sol and "100.00" in sol
    assert "gaps: 38 candles missing in 2 of 3 symbols" in table.stdout


def test_complete_store_exits_0_without_the_exchange(db_url, repo_for, sim):
    repo = repo_for(db_url)
    store(repo, sim, "BNB/USDT")
    # a dead exchange URL: the check never talks to the exchange
    r, report = check(db_url, *WINDOW, "--symbols", "BNB/USDT", "--json",
                      env={"OHLCV_EXCHANGE_URL": "http://127.0.0.1:9"})
    assert r.returncode == 0, r.stderr
    assert report["ok"] is True and report["symbols"][0]["coverage"] == 100.0
    table, _ = check(db_url, *WINDOW, "--symbols", "BNB/USDT")
    assert table.returncode == 0 and "complete: no closed candle missing in 1 symbols" in table.stdout


def test_grid_covers_the_whole_window_and_empty_symbol_is_all_missing(db_url, repo_for, sim):
    repo = repo_for(db_url)
    store(repo, sim, "ADA/USDT", T0 + 60 * M, T1)  # the store begins an hour into the window
    r, report = check(db_url, *WINDOW, "--symbols", "ADA/USDT,LTC/USDT", "--json")
    assert r.returncode == 1
    ada, ltc = report["symbols"]
    # issue 17.3: the head before the first stored candle is missing (nothing says the exchange
    # has no candles there)
    assert (ada["status"], ada["start"], ada["expected"]) == ("gaps", z(T0), 360)
    assert ranges_of(report, "ADA/USDT") == [("2024-03-01T00:00:00Z", "2024-03-01T00:59:00Z", 60)]
    assert ltc["status"] == "no candles stored" and ltc["coverage"] == 0.0
    assert ranges_of(report, "LTC/USDT") == [("2024-03-01T00:00:00Z", "2024-03-01T05:59:00Z", 360)]
    table, _ = check(db_url, *WINDOW, "--symbols", "ADA/USDT,LTC/USDT", "--wide")
    ltc_line = next(ln for ln in table.stdout.splitlines() if "LTC/USDT" in ln)
    assert "no candles stored" in ltc_line and "all, 2024-03-01 00:00:00 → 2024-03-01 05:59:00 (360)" in ltc_line
    assert "no candles stored at all for LTC/USDT" in table.stdout


def test_a_missing_head_of_a_days_window_is_reported_and_repaired(pg_url, repo_for, sim):
    """Issue 17.3: the first 314 candles of a --days window deleted; check sees them, repair
    fills them, and the same --days for backfill and check cover the same candles."""
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url}
    if time.time() % 60 > 30:  # every step within one minute: the same --days window
        time.sleep(61 - time.time() % 60)
    r = run_cli("backfill", "--days", "2", "--symbols", "XRP/USDT", "--source", "rest", env=env)
    assert r.returncode == 0, r.stderr
    r, report = check(pg_url, "--days", "2", "--symbols", "XRP/USDT", "--json")
    assert r.returncode == 0 and report["ok"], r.stdout  # a fresh backfill: nothing missing
    repo = repo_for(pg_url)
    first = min(c.open_time for c in repo.candles("binance", "XRP/USDT", "1m"))
    delete(repo, "XRP/USDT", first, first + 314 * M)
    r, report = check(pg_url, "--days", "2", "--symbols", "XRP/USDT", "--json")
    assert r.returncode == 1
    assert ranges_of(report, "XRP/USDT") == [(z(first), z(first + 313 * M), 314)]
    assert report["symbols"][0]["coverage"] < 100
    r = run_cli("gaps", "repair", "--days", "2", "--symbols", "XRP/USDT", "--source", "rest",
                env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "repaired: 314 candles written, 0 confirmed missing at the exchange" in r.stdout
    r, report = check(pg_url, "--days", "2", "--symbols", "XRP/USDT", "--json")
    assert r.returncode == 0 and report["ok"], r.stdout


def test_a_head_before_the_listing_is_recorded_empty_by_repair(sqlite_url, repo_for, sim_factory):
    """Issue 17.3: a head the exchange has nothing for (before the listing) is missing until a
    repair confirms it, then recorded as an exchange gap and never asked again."""
    listed = T0 + 120 * M
    specs = [replace(s, listed_at=listed) if s.symbol == "DOGE/USDT" else s for s in default_symbols()]
    sim = sim_factory(symbols=specs)
    repo = repo_for(sqlite_url)
    store(repo, sim, "DOGE/USDT", listed + 60 * M, T1)  # the store begins an hour after listing
    r, report = check(sqlite_url, *WINDOW, "--symbols", "DOGE/USDT", "--json")
    assert r.returncode == 1 and ranges_of(report, "DOGE/USDT") == [
        ("2024-03-01T00:00:00Z", "2024-03-01T02:59:00Z", 180)]
    env = {"DATABASE_URL": sqlite_url, "OHLCV_EXCHANGE_URL": sim.url}
    r = run_cli("gaps", "repair", *WINDOW, "--symbols", "DOGE/USDT", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "repaired: 60 candles written, 120 confirmed missing at the exchange" in r.stdout
    assert exchange_gap_rows(sqlite_url) == [
        ("DOGE/USDT", "1m", "2024-03-01 00:00:00", "2024-03-01 02:00:00")]
    r, report = check(sqlite_url, *WINDOW, "--symbols", "DOGE/USDT", "--json")
    assert r.returncode == 0 and report["symbols"][0]["start"] == z(listed)


def test_in_progress_candle_and_grace_never_missing(pg_url, repo_for, sim):
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "REALTIME_DELAY_SECONDS": "0.2"}
    # The newest closed candle stays in its grace for one minute after it closed (plus the
    # delay): start early in a minute so that every step below runs within that minute.
    if time.time() % 60 > 30:
        time.sleep(61 - time.time() % 60)
    r = run_cli("backfill", "--days", "1", "--symbols", "XRP/USDT", env=env)
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    newest = repo.latest_open_time("binance", "XRP/USDT", "1m")
    delete(repo, "XRP/USDT", newest, newest + M)  # the last closed candle: still in its grace
    r = run_cli("gaps", "check", "--days", "1", "--symbols", "XRP/USDT", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["end"] <= z(newest)
    before = sim.stats()["klines"]
    r = run_cli("gaps", "repair", "--days", "1", "--symbols", "XRP/USDT", env=env)
    assert r.returncode == 0, r.stderr
    assert sim.stats()["klines"] == before  # nothing missing: nothing fetched
    assert exchange_gap_rows(pg_url) == []  # the grace period is never recorded as empty
    delete(repo, "XRP/USDT", newest - 5 * M, newest - 4 * M)  # older: past its grace
    r = run_cli("gaps", "check", "--days", "1", "--symbols", "XRP/USDT", "--json", env=env)
    assert r.returncode == 1
    assert ranges_of(json.loads(r.stdout), "XRP/USDT") == [(z(newest - 5 * M), z(newest - 5 * M), 1)]


# --- repair -----------------------------------------------------------------------------------
def test_repair_restores_exact_values(db_url, repo_for, sim_factory):
    sim = sim_factory(zero_volume_share=0.05)
    repo = repo_for(db_url)
    for sym in ("BTC/USDT", "ETH/BTC"):
        store(repo, sim, sym)
    delete(repo, "BTC/USDT", T0 + 30 * M, T0 + 95 * M)
    delete(repo, "BTC/USDT", T0 + 300 * M, T0 + 301 * M)
    delete(repo, "ETH/BTC", T1 - 3 * M, T1)
    env = {"DATABASE_URL": db_url, "OHLCV_EXCHANGE_URL": sim.url}
    r = run_cli("gaps", "repair", *WINDOW, "--symbols", "BTC/USDT,ETH/BTC", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "repaired: 69 candles written, 0 confirmed missing at the exchange" in r.stdout
    for sym in ("BTC/USDT", "ETH/BTC"):
        stored = repo.candles("binance", sym, "1m")
        assert as_rows(stored) == sim.final_rows(sym, "1m", T0, T1)
    sources = {c.open_time: c.source for c in repo.candles("binance", "BTC/USDT", "1m")}
    assert sources[T0 + 30 * M] == sources[T0 + 300 * M] == "repair" and sources[T0] == "backfill"
    assert exchange_gap_rows(db_url) == []
    r, _ = check(db_url, *WINDOW, "--symbols", "BTC/USDT,ETH/BTC")
    assert r.returncode == 0, r.stdout


def test_exchange_gaps_reported_once_then_remembered(db_url, repo_for, sim_factory):
    listed = T0 + 120 * M
    specs = [replace(s, listed_at=listed) if s.symbol == "DOGE/USDT" else s for s in default_symbols()]
    sim = sim_factory(symbols=specs, maintenance=[(T0 + 200 * M, T0 + 230 * M)])
    env = {"DATABASE_URL": db_url, "OHLCV_EXCHANGE_URL": sim.url}
    # the candles reached the store without a backfill (which would learn the maintenance window
    # itself): e.g. from the stream
    repo_for(db_url).upsert(from_kline(x, exchange="binance", symbol="BTC/USDT", timeframe="1m",
                                       source="stream") for x in sim.final_rows("BTC/USDT", "1m", T0, T1))
    # the maintenance window is a gap the store can't tell from a lost range: reported once
    r, report = check(db_url, *WINDOW, "--symbols", "BTC/USDT,DOGE/USDT", "--json")
    assert r.returncode == 1
    assert ranges_of(report, "BTC/USDT") == [("2024-03-01T03:20:00Z", "2024-03-01T03:49:00Z", 30)]
    assert report["symbols"][1]["status"] == "no candles stored"

    r = run_cli("gaps", "repair", *WINDOW, "--symbols", "BTC/USDT,DOGE/USDT", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = {s["symbol"]: s for s in json.loads(r.stdout)["symbols"]}
    assert out["BTC/USDT"]["written"] == 0
    assert [(x["first"], x["last"]) for x in out["BTC/USDT"]["exchange_empty"]] == [
        ("2024-03-01T03:20:00Z", "2024-03-01T03:49:00Z")]
    assert out["DOGE/USDT"]["written"] == 360 - 120 - 30
    assert [(x["first"], x["last"]) for x in out["DOGE/USDT"]["exchange_empty"]] == [
        ("2024-03-01T00:00:00Z", "2024-03-01T01:59:00Z"), ("2024-03-01T03:20:00Z", "2024-03-01T03:49:00Z")]
    assert exchange_gap_rows(db_url) == [
        ("BTC/USDT", "1m", "2024-03-01 03:20:00", "2024-03-01 03:50:00"),
        ("DOGE/USDT", "1m", "2024-03-01 00:00:00", "2024-03-01 02:00:00"),
        ("DOGE/USDT", "1m", "2024-03-01 03:20:00", "2024-03-01 03:50:00"),
    ]
    repo = repo_for(db_url)
    assert as_rows(repo.candles("binance", "DOGE/USDT", "1m")) == sim.final_rows("DOGE/USDT", "1m", T0, T1)

    r, report = check(db_url, *WINDOW, "--symbols", "BTC/USDT,DOGE/USDT", "--json")
    assert r.returncode == 0, r.stdout
    btc, doge = report["symbols"]
    assert (btc["expected"], btc["coverage"], btc["exchange_gaps"][0]["candles"]) == (330, 100.0, 30)
    # DOGE's grid starts at its first stored candle (the listing); the maintenance is known
    assert (doge["start"], doge["expected"], doge["missing"]) == (z(listed), 210, [])

    # a second repair: nothing to fetch, nothing new recorded
    before = sim.stats()["klines"]
    r = run_cli("gaps", "repair", *WINDOW, "--symbols", "BTC/USDT,DOGE/USDT", env=env)
    assert r.returncode == 0, r.stderr
    assert "repaired: 0 candles written, 0 confirmed missing at the exchange" in r.stdout
    assert sim.stats()["klines"] == before
    assert len(exchange_gap_rows(db_url)) == 3


def test_repair_that_cannot_reach_klines_exits_1_naming_the_symbol(sqlite_url, repo_for, sim_factory):
    sim = sim_factory(share_5xx=1.0)  # exchangeInfo answers, every klines request fails
    repo = repo_for(sqlite_url)
    store(repo, sim, "BTC/USDT")
    delete(repo, "BTC/USDT", T0 + 10 * M, T0 + 20 * M)
    r = run_cli("gaps", "repair", *WINDOW, "--symbols", "BTC/USDT",
                env={"DATABASE_URL": sqlite_url, "OHLCV_EXCHANGE_URL": sim.url, "EXCHANGE_RETRY_SECONDS": "1"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error: BTC/USDT: binance unreachable" in r.stderr
    assert "FAILED" in r.stdout
    assert repo.count(symbol="BTC/USDT") == 350 and exchange_gap_rows(sqlite_url) == []


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["check", "repair"])
@pytest.mark.parametrize("args,message", [
    (["--timeframe", "7m"], "error: unsupported timeframe '7m'"),
    (["--days", "0"], "error: --days must be a positive whole number, got 0"),
    (["--start", "someday"], "error: invalid --start 'someday'"),
    (["--start", "2024-02-02", "--end", "2024-02-01"], "error: --start 2024-02-02 is not before --end 2024-02-01"),
    (["--days", "1", "--start", "2024-02-01"], "error: use either --days or --start/--end, not both"),
    (["--symbols", "BTC-USDT"], "error: malformed symbol 'BTC-USDT'"),
    (["--database-url", "postgresql://bob:hunter2@127.0.0.1:9/db"],
     "error: database error at postgresql+psycopg://bob:***@127.0.0.1:9/db"),
])
def test_bad_inputs_one_line_exit_2(command, args, message, sim):
    r = run_cli("gaps", command, *args, env={"OHLCV_EXCHANGE_URL": sim.url})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip() == r.stderr.strip().splitlines()[-1]  # one line
    assert r.stderr.startswith(message), r.stderr
    assert "Traceback" not in r.stderr and "hunter2" not in r.stderr + r.stdout


def test_repair_with_unreachable_exchange_exits_2(sqlite_url):
    r = run_cli("gaps", "repair", *WINDOW, "--symbols", "BTC/USDT", "--database-url", sqlite_url,
                env={"OHLCV_EXCHANGE_URL": "http://127.0.0.1:9", "EXCHANGE_MAX_RETRIES": "0"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: binance unreachable at http://127.0.0.1:9")


def test_schema_without_exchange_gaps_asks_for_upgrade(pg_cluster):
    from ohlcv_cli.adapters.sql.schema import make_engine, upgrade

    url = pg_cluster.create_database("at_0001_gaps")
    engine = make_engine(url)
    upgrade(engine, "0001")
    engine.dispose()
    r = run_cli("gaps", "check", "--days", "1", "--database-url", url)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: database schema is at revision 0001, expected 0005: run `ohlcv db upgrade`"
    up = run_cli("db", "upgrade", "--database-url", url)
    assert up.returncode == 0 and "upgraded: 0001 -> 0005" in up.stdout
    assert run_cli("gaps", "check", "--days", "1", "--database-url", url).returncode == 1


def test_ranges_cut_by_chunk_boundaries_come_back_whole(db_url, repo_for, sim):
    from ohlcv_cli.adapters.sql.candles import SqlCandleRepository
    from ohlcv_cli.services.gaps import GapCheck

    repo = repo_for(db_url)
    store(repo, sim, "BTC/USDT")
    for a, b in ((5, 9), (13, 30), (41, 42), (48, 49), (349, 360)):
        delete(repo, "BTC/USDT", T0 + a * M, T0 + b * M)
    SqlGapRepository(repo.engine).record_exchange_gaps("binance", "BTC/USDT", "1m", [(T0 + 42 * M, T0 + 48 * M)])
    results = []
    for chunk in (7, 10, 65_536):
        check = GapCheck(SqlCandleRepository(repo.engine), SqlGapRepository(repo.engine), chunk=chunk)
        report = check.run(["BTC/USDT"], M1, int(time.time() * 1000), HistoryWindow(start=T0, end=T1))
        results.append(report.symbols[0].missing)
    # 41 and 48 lie on either side of the known gap 42..47: two ranges, not one
    assert results[0] == results[1] == results[2] == [
        (T0 + a * M, T0 + b * M) for a, b in ((5, 9), (13, 30), (41, 42), (48, 49), (349, 360))]


# --- the exchange_gaps adapter ----------------------------------------------------------------
def test_recorded_gaps_merge_overlapping_and_adjacent(db_url, repo_for):
    gaps = SqlGapRepository(repo_for(db_url).engine)
    key = ("binance", "BTC/USDT", "1m")
    assert gaps.record_exchange_gaps(*key, [(T0 + 10 * M, T0 + 20 * M)]) == 1
    gaps.record_exchange_gaps(*key, [(T0 + 10 * M, T0 + 20 * M)])  # again: a no-op
    gaps.record_exchange_gaps(*key, [(T0 + 40 * M, T0 + 50 * M), (T0 + 60 * M, T0 + 70 * M)])
    assert gaps.exchange_gaps(*key) == [(T0 + 10 * M, T0 + 20 * M), (T0 + 40 * M, T0 + 50 * M),
                                        (T0 + 60 * M, T0 + 70 * M)]
    gaps.record_exchange_gaps(*key, [(T0 + 20 * M, T0 + 45 * M)])  # touches one, overlaps another
    gaps.record_exchange_gaps(*key, [(T0 + 65 * M, T0 + 80 * M), (T0 + 80 * M, T0 + 81 * M)])
    assert gaps.exchange_gaps(*key) == [(T0 + 10 * M, T0 + 50 * M), (T0 + 60 * M, T0 + 81 * M)]
    assert gaps.exchange_gaps(*key, T0 + 50 * M, T0 + 60 * M) == []
    assert gaps.exchange_gaps(*key, T0 + 49 * M, T0 + 61 * M) == gaps.exchange_gaps(*key)
    assert gaps.exchange_gaps("binance", "BTC/USDT", "1s") == []


# --- range arithmetic -------------------------------------------------------------------------
def test_range_arithmetic_examples():
    assert merge([(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]) == [(0, 3), (5, 9)]
    assert subtract([(0, 10)], [(2, 3), (5, 7)]) == [(0, 2), (3, 5), (7, 10)]
    assert subtract([(0, 10)], [(0, 10)]) == []
    assert subtract([(0, 10)], [(-5, 2), (8, 20)]) == [(2, 8)]
    assert uncovered(M1, 0, 10 * M, [2 * M, 3 * M, 7 * M]) == [(0, 2 * M), (4 * M, 7 * M), (8 * M, 10 * M)]
    assert uncovered(M1, 0, 2 * M, []) == [(0, 2 * M)]


_ranges = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)).map(sorted).map(tuple), max_size=8)


@given(_ranges, _ranges)
def test_subtract_leaves_exactly_the_points_outside_the_holes(ranges, holes):
    def points(rs):
        return {p for a, b in rs for p in range(a, b)}

    out = subtract(ranges, holes)
    assert points(out) == points(ranges) - points(holes)
    assert out == merge(out)  # sorted, disjoint, not touching
