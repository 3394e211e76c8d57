"""Futures through every command: unified symbols beside spot, --price series, delivery and
listing, against the simulator over HTTP and real PostgreSQL (issue 18 points 1, 2 and 6)."""

from __future__ import annotations

import json
import time

import pytest

from conftest import run_cli
from helpers import kline_rows
from ohlcv_cli.core.timeutil import iso

H = 3_600_000
DAY = 86_400_000


def _env(url: str, sim) -> dict:
    return {"DATABASE_URL": url, "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_ARCHIVE_URL": sim.url,
            "REALTIME_DELAY_SECONDS": "0.2"}


def _one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr)
    return lines[0]


def _iso(ms: int) -> str:
    return iso(ms).replace(" ", "T") + "Z"


def _contract(sim, family: str, delivered: bool):
    """The simulator's delivered (or current) quarterly of BTC in a family."""
    now = int(time.time() * 1000)
    specs = [s for s in sim.config.futures if s.family == family and s.base == "BTC"
             and s.delivery is not None]
    return next(s for s in specs if (s.delivery <= now) == delivered)


def test_spot_and_its_perpetual_are_stored_side_by_side(pg_url, repo_for, sim):
    r = run_cli("backfill", "--symbols", "BTC/USDT,BTC/USDT:USDT", "--days", "1", "--timeframe",
                "1h", env=_env(pg_url, sim))
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    spot = repo.candles("binance", "BTC/USDT", "1h")
    perp = repo.candles("binance", "BTC/USDT:USDT", "1h")
    assert len(spot) == len(perp) == 24
    a, b = spot[0].open_time, spot[-1].open_time + H
    assert kline_rows(spot) == sim.final_rows("BTC/USDT", "1h", a, b)
    assert kline_rows(perp) == sim.futures_final_rows("BTCUSDT", "usdm", "trade", "1h", a, b)
    assert kline_rows(spot) != kline_rows(perp)  # two markets, not one written twice
    assert {c.price for c in spot + perp} == {"trade"}
    for sym in ("BTC/USDT", "BTC/USDT:USDT"):
        assert any(ln.startswith(f"│ {sym} ") and "ok" in ln for ln in r.stdout.splitlines())


def test_mark_price_series_is_its_own_checked_shown_and_read(pg_url, repo_for, sim):
    env = _env(pg_url, sim)
    r = run_cli("backfill", "--symbols", "BTC/USDT:USDT", "--price", "mark", "--days", "1",
                "--timeframe", "1h", env=env)
    assert r.returncode == 0, r.stderr
    assert "1h mark" in r.stdout  # the summary names the series
    repo = repo_for(pg_url)
    mark = repo.candles("binance", "BTC/USDT:USDT", "1h", price="mark")
    assert len(mark) == 24 and repo.candles("binance", "BTC/USDT:USDT", "1h") == []
    a, b = mark[0].open_time, mark[-1].open_time + H
    want = sim.futures_final_rows("BTCUSDT", "usdm", "mark", "1h", a, b)
    assert kline_rows(mark) == want  # the placeholders exactly as sent: volume "0", ...
    assert {c.volume for c in mark} == {"0"}

    check = run_cli("gaps", "check", "--symbols", "BTC/USDT:USDT", "--price", "mark", "--days",
                    "1", "--timeframe", "1h", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    out = json.loads(check.stdout)
    assert out["price"] == "mark" and out["ok"] and out["symbols"][0]["expected"] >= 23
    # the trade series of the same contract is another series: nothing of it is stored
    trade = run_cli("gaps", "check", "--symbols", "BTC/USDT:USDT", "--days", "1", "--timeframe",
                    "1h", env=env)
    assert trade.returncode == 1 and "no candles stored" in trade.stdout

    st = run_cli("status", "--json", env=env)
    assert st.returncode == 0, st.stderr
    assert [(x["symbol"], x["price"], x["stored"]) for x in json.loads(st.stdout)] == [
        ("BTC/USDT:USDT", "mark", 24)]
    table = run_cli("status", env=env)
    header = next(ln for ln in table.stdout.splitlines() if "symbol" in ln)
    assert "price" in header
    row = next(ln for ln in table.stdout.splitlines() if "BTC/USDT:USDT" in ln)
    assert "│ mark " in row

    from ohlcv_cli import open_store

    with open_store(pg_url) as store:
        df = store.candles("BTC/USDT:USDT", "1h", price="mark", exact=True)
        assert [str(v) for v in df["close"]] == [row[4] for row in want]
        assert len(df) == 24 and df.index[0].value // 1_000_000 == a
        with pytest.raises(Exception, match="no candles stored for BTC/USDT:USDT"):
            store.candles("BTC/USDT:USDT", "1h")  # trade: not stored


@pytest.mark.parametrize("command", [
    ["backfill", "--symbols", "BTC/USDT", "--price", "mark"],
    ["backfill", "--symbols", "BTC/USDT:USDT,ETH/USDT", "--price", "index"],
    ["gaps", "check", "--symbols", "BTC/USDT", "--price", "premium"],
    ["gaps", "repair", "--symbols", "ETH/USDT", "--price", "mark"],
    ["export", "--symbols", "BTC/USDT", "--price", "mark", "--out", "x.csv"],
])
def test_another_price_than_trade_on_spot_is_one_line_exit_2(command, sqlite_url, sim):
    r = run_cli(*command, env=_env(sqlite_url, sim))
    line = _one_error_line(r)
    assert line.startswith("error: ") and "is a spot market: it has only trade candles, not" in line
    assert sim.stats().get("klines", 0) == 0


def test_candle_price_setting_and_a_bad_price(sqlite_url, sim):
    env = {**_env(sqlite_url, sim), "CANDLE_PRICE": "mark", "SYMBOLS": "BTC/USDT"}
    line = _one_error_line(run_cli("backfill", "--days", "1", env=env))
    assert line == "error: BTC/USDT is a spot market: it has only trade candles, not mark"
    line = _one_error_line(run_cli("backfill", "--days", "1", "--price", "last", env=env))
    assert line == ("error: unknown price series 'last': use one of trade, mark, index, "
                    "premium")
    r = run_cli("backfill", "--help", env={"COLUMNS": "250"})
    assert "[default: trade] [env: CANDLE_PRICE]" in r.stdout


def test_delivered_contract_stops_at_delivery(pg_url, repo_for, sim):
    spec = _contract(sim, "usdm", delivered=True)
    symbol = f"BTC/USDT:USDT-{spec.expiry}"
    start, end = spec.delivery - 2 * DAY, spec.delivery + DAY  # a window across the delivery
    env = _env(pg_url, sim)
    window = ("--start", _iso(start), "--end", _iso(end), "--timeframe", "1h")
    r = run_cli("backfill", "--symbols", symbol, *window, env=env)
    assert r.returncode == 0, r.stderr
    stored = repo_for(pg_url).candles("binance", symbol, "1h")
    assert stored[-1].open_time == spec.delivery - H and len(stored) == 48
    assert kline_rows(stored) == sim.futures_final_rows(spec.market_id, "usdm", "trade", "1h",
                                                        start, end)
    check = run_cli("gaps", "check", "--symbols", symbol, *window, "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    g = json.loads(check.stdout)["symbols"][0]
    assert g["missing"] == [] and g["end"] == _iso(spec.delivery) and g["expected"] == 48
    # the same by its id form, on COIN-M too
    cm = _contract(sim, "coinm", delivered=True)
    r = run_cli("backfill", "--symbols", cm.market_id, *window, env=env)
    assert r.returncode == 0, r.stderr
    coin = repo_for(pg_url).candles("binance", f"BTC/USD:BTC-{cm.expiry}", "1h")
    assert coin[-1].open_time == cm.delivery - H


def test_contract_listed_mid_window_starts_at_its_listing(pg_url, repo_for, sim):
    spec = next(s for s in sim.config.futures if s.market_id == "WLDUSDT")
    env = _env(pg_url, sim)
    r = run_cli("backfill", "--symbols", "WLD/USDT:USDT", "--days", "3", "--timeframe", "1h",
                env=env)
    assert r.returncode == 0, r.stderr
    stored = repo_for(pg_url).candles("binance", "WLD/USDT:USDT", "1h")
    assert stored[0].open_time == spec.onboard
    check = run_cli("gaps", "check", "--symbols", "WLD/USDT:USDT", "--days", "3", "--timeframe",
                    "1h", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    g = json.loads(check.stdout)["symbols"][0]
    assert g["missing"] == [] and g["start"] == _iso(spec.onboard)
    assert g["exchange_gaps"][0]["last"] == _iso(spec.onboard - H)  # the head, recorded empty


def test_ids_and_listing_of_futures(sqlite_url, sim):
    env = _env(sqlite_url, sim)
    line = _one_error_line(run_cli("backfill", "--symbols", "BTCUSDT,ETH/USDT:USDT", "--days",
                                   "1", env=env))
    assert "'BTCUSDT' is ambiguous" in line and "BTC/USDT (spot)" in line
    assert "BTC/USDT:USDT (USD-M futures)" in line
    r = run_cli("symbols", "BTC/.*", "--market", "usdm", env=env)
    assert r.returncode == 0, r.stderr
    listed = r.stdout.split()
    assert "BTC/USDT:USDT" in listed and "BTC/USDT" not in listed
    assert any(s.startswith("BTC/USDT:USDT-") for s in listed)
    r = run_cli("symbols", "BTCUSD_PERP,ETHUSDT", env=env)
    assert r.returncode == 0 and r.stdout.split() == ["BTC/USD:BTC", "ETH/USDT"], r.stderr


def _stored(repo, symbol: str, start: int, n: int, price: str = "trade") -> None:
    from ohlcv_cli.core.candle import Candle

    repo.upsert([Candle("binance", symbol, "1h", start + i * H, "1.5", "2", "1", "1.75", "0",
                        "0", 60, "0", "0", "backfill", price) for i in range(n)])


def test_id_forms_against_the_store_and_a_delivery_without_the_exchange(sqlite_url, repo_for):
    """Commands that read only the database resolve ids by Binance's conventions, refuse an id
    two stored markets share, and expect nothing of a delivery contract after its delivery."""
    repo = repo_for(sqlite_url)
    t0 = (int(time.time() * 1000) // DAY - 3) * DAY
    _stored(repo, "BTC/USDT", t0, 24)
    _stored(repo, "BTC/USDT:USDT", t0, 24)
    _stored(repo, "BTC/USD:BTC", t0, 24, price="index")
    env = {"DATABASE_URL": sqlite_url}
    window = ("--start", _iso(t0), "--end", _iso(t0 + DAY), "--timeframe", "1h")
    line = _one_error_line(run_cli("gaps", "check", "--symbols", "BTCUSDT", *window, env=env))
    assert line == ("error: symbol 'BTCUSDT' is ambiguous in the store (binance): BTC/USDT "
                    "(spot), BTC/USDT:USDT (USD-M futures); write the ccxt form, e.g. "
                    "--symbols BTC/USDT")
    r = run_cli("gaps", "check", "--symbols", "BTCUSD_PERP", "--price", "index", *window,
                "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [g["symbol"] for g in json.loads(r.stdout)["symbols"]] == ["BTC/USD:BTC"]
    r = run_cli("status", "--symbols", "BTCUSD_PERP", "--json", env=env)
    assert [(x["symbol"], x["price"]) for x in json.loads(r.stdout)] == [("BTC/USD:BTC", "index")]

    # a quarterly delivered at 08:00 on its date, stored up to its delivery
    day = time.strftime("%y%m%d", time.gmtime((t0 + DAY) / 1000))
    quarterly = f"BTC/USDT:USDT-{day}"
    _stored(repo, quarterly, t0, 32)  # 00:00 of the day before .. 08:00 of the delivery day
    r = run_cli("gaps", "check", "--symbols", quarterly, "--start", _iso(t0), "--end",
                _iso(t0 + 3 * DAY), "--timeframe", "1h", "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    g = json.loads(r.stdout)["symbols"][0]
    assert (g["expected"], g["missing"], g["end"]) == (32, [], _iso(t0 + DAY + 8 * H))
    # the perpetual over the same window is missing what follows its last candle
    r = run_cli("gaps", "check", "--symbols", "BTC/USDT:USDT", "--start", _iso(t0), "--end",
                _iso(t0 + 3 * DAY), "--timeframe", "1h", env=env)
    assert r.returncode == 1
