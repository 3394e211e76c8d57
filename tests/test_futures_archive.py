"""Futures from the archive: data/futures/um|cm files of every price series, with and without a
header row, through `ohlcv backfill` into the real PostgreSQL, exact, and REST where a file is
missing or bad."""

from __future__ import annotations

import time

from conftest import run_cli

from ohlcv_cli.adapters.binance.archive import kline_path
from ohlcv_cli.core.archive import Period

DAY, HOUR = 86_400_000, 3_600_000


def _env(db, sim, **more):
    return {"DATABASE_URL": db, "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_ARCHIVE_URL": sim.url,
            "REALTIME_DELAY_SECONDS": "0.2", **more}


def _window(days_back: int, days: int) -> tuple[int, int, list[str]]:
    today = int(time.time() * 1000) // DAY * DAY
    start, end = today - days_back * DAY, today - (days_back - days) * DAY
    iso = lambda t: time.strftime("%Y-%m-%d", time.gmtime(t / 1000))  # noqa: E731
    return start, end, ["--start", iso(start), "--end", iso(end), "-t", "1h"]


def _as_rows(stored):
    return [[c.open_time, c.open, c.high, c.low, c.close, c.volume, c.open_time + HOUR - 1,
             c.quote_volume, c.trades, c.taker_buy_base_volume, c.taker_buy_quote_volume, "0"]
            for c in stored]


def test_the_futures_paths_follow_binance_layout():
    p = Period("daily", 1793664000000, 1793664000000 + DAY)  # 2026-11-03
    assert kline_path("BTCUSDT", "1h", p, family="usdm", price="mark") == \
        "/data/futures/um/daily/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2026-11-03.zip"
    assert kline_path("BTCUSD", "1m", p, family="coinm", price="index") == \
        "/data/futures/cm/daily/indexPriceKlines/BTCUSD/1m/BTCUSD-1m-2026-11-03.zip"
    assert kline_path("BTCUSDT", "1h", p) == \
        "/data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-11-03.zip"


def test_files_with_and_without_a_header_give_the_exchange_rows_of_each_series(sim_factory,
                                                                                 pg_url, repo_for):
    # files of days before the cutoff have no header row, later ones have one
    start, end, window = _window(8, 5)
    sim = sim_factory(futures_header_from=start + 2 * DAY)
    env = _env(pg_url, sim)
    repo = repo_for(pg_url)
    for price in ("trade", "mark", "index", "premium"):
        r = run_cli("backfill", *window, "--symbols", "BTC/USDT:USDT,BTC/USD:BTC", "--price",
                    price, "--source", "archive", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        for symbol, family, mid in (("BTC/USDT:USDT", "usdm", "BTCUSDT"),
                                    ("BTC/USD:BTC", "coinm", "BTCUSD_PERP")):
            stored = repo.candles("binance", symbol, "1h", start, end, price=price)
            want_id = mid.split("_")[0] if price == "index" else mid
            assert _as_rows(stored) == sim.futures_final_rows(want_id, family, price, "1h",
                                                              start, end)
            assert {c.source for c in stored} == {"archive"}, (symbol, price)
    paths = sim.stats()["paths"]
    assert paths.get("/api/v3/klines", 0) == 0


def test_a_missing_or_corrupt_futures_file_comes_from_rest(sim_factory, pg_url, repo_for):
    start, end, window = _window(6, 3)
    day = lambda k: time.strftime("%Y-%m-%d", time.gmtime((start + k * DAY) / 1000))  # noqa
    sim = sim_factory(archive_faults=[f"missing:um.premiumIndexKlines@BTCUSDT:{day(0)}",
                                      f"corrupt:um.premiumIndexKlines@BTCUSDT:{day(1)}"])
    repo = repo_for(pg_url)
    r = run_cli("backfill", *window, "--symbols", "BTC/USDT:USDT", "--price", "premium",
                env=_env(pg_url, sim))
    assert r.returncode == 0, r.stdout + r.stderr
    stored = repo.candles("binance", "BTC/USDT:USDT", "1h", start, end, price="premium")
    assert _as_rows(stored) == sim.futures_final_rows("BTCUSDT", "usdm", "premium", "1h",
                                                      start, end)
    by_day = {k: {c.source for c in stored if start + k * DAY <= c.open_time
                  < start + (k + 1) * DAY} for k in range(3)}
    assert by_day == {0: {"backfill"}, 1: {"backfill"}, 2: {"archive"}}
