"""Futures over REST: the one client against the simulator's /fapi and /dapi (real HTTP, real
ccxt), and the pages into the real PostgreSQL store."""

from __future__ import annotations

import pytest

from ohlcv_cli.adapters.binance.rest import CcxtFetcher, futures_weight
from ohlcv_cli.adapters.sql.gaps import SqlGapRepository
from ohlcv_cli.core.errors import BadSymbol
from ohlcv_cli.core.markets import BadPrice, USDM, COINM
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.services.history import FillHistory

DAY, HOUR, MIN = 86_400_000, 3_600_000, 60_000
H1, D1, M1 = parse_timeframe("1h"), parse_timeframe("1d"), parse_timeframe("1m")


def client(sim, *families) -> CcxtFetcher:
    return CcxtFetcher(exchange_url=sim.url, families=families or ("spot", "usdm", "coinm"))


def rows(f, symbol, tf, start, end, price="trade"):
    return [c for page in f.fetch_range(symbol, tf, start, end, price=price) for c in page]


def test_limit_499_gives_the_most_candles_per_weight():
    best = max(range(1, 1501), key=lambda n: (n / futures_weight(n), -n))
    assert best == 499 == USDM.page == COINM.page
    assert [futures_weight(n) for n in (99, 100, 499, 500, 1000, 1001, 1500)] == [1, 2, 2, 5, 5, 10, 10]


@pytest.mark.parametrize("symbol,family,mid", [("BTC/USDT:USDT", "usdm", "BTCUSDT"),
                                               ("BTC/USD:BTC", "coinm", "BTCUSD_PERP")])
def test_every_price_series_is_the_exchange_rows_exactly(sim, symbol, family, mid):
    f = client(sim)
    end = H1.floor(f.now_ms()) - HOUR
    start = end - 3 * DAY
    for price in ("trade", "mark", "index", "premium"):
        got = rows(f, symbol, H1, start, end, price)
        pair = mid.split("_")[0]
        want = sim.futures_final_rows(pair if price == "index" else mid, family, price, "1h",
                                      start, end)
        assert len(got) == 72 == len(want)
        assert all(c.price == price and c.symbol == symbol for c in got)
        assert [(c.open_time, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades,
                 c.taker_buy_base_volume, c.taker_buy_quote_volume) for c in got] == \
            [(r[0], r[1], r[2], r[3], r[4], r[5], r[7], r[8], r[9], r[10]) for r in want]
    mark = rows(f, symbol, H1, start, start + HOUR, "mark")[0]
    assert (mark.volume, mark.quote_volume, mark.taker_buy_base_volume) == ("0", "0", "0")


def test_futures_weigh_on_their_own_budget_at_499_rows_a_request(sim_factory):
    sim = sim_factory(futures_weight_limit=2400)
    f = client(sim)
    end = M1.floor(f.now_ms()) - MIN
    got = rows(f, "ETH/USDT:USDT", M1, end - 2000 * MIN, end)
    assert len(got) == 2000
    usdm = sim.stats()["usdm"]
    assert usdm["klines"] == 5  # 499 + 499 + 499 + 499 + 4
    assert sim.stats()["paths"].get("/api/v3/klines", 0) == 0
    assert f.budget_of("usdm").limit == 2400 != f.budget_of("spot").limit
    assert f.budget_of("coinm").limit == 2400 and f.budget_of("coinm") is not f.budget_of("usdm")


def test_coin_m_pages_a_600_day_window_without_its_200_day_error_or_a_lost_candle(sim):
    f = client(sim, "coinm")
    end = D1.floor(f.now_ms()) - DAY
    start = end - 600 * DAY
    got = rows(f, "BTC/USD:BTC", D1, start, end)
    want = sim.futures_final_rows("BTCUSD_PERP", "coinm", "trade", "1d", start, end)
    assert [c.open_time for c in got] == [r[0] for r in want]
    assert len(got) == 600  # a -4088 answer would have raised ExchangeRejected
    assert sim.stats()["coinm"]["klines"] == 3  # 200 days a request


def test_a_delivered_contract_has_no_candle_at_or_after_delivery(sim):
    f = client(sim, "usdm")
    delivered = next(s for s in f.markets() if s.startswith("BTC/USDT:USDT-")
                     and f.trading_span(s)[1] < f.now_ms())
    onboard, delivery = f.trading_span(delivered)
    got = rows(f, delivered, H1, delivery - 2 * DAY, delivery + 2 * DAY)
    assert got and max(c.open_time for c in got) < delivery
    assert max(c.open_time for c in got) == H1.floor(delivery - 1)
    assert onboard is not None and onboard < delivery


def test_a_perpetual_has_no_end_and_spot_no_span(sim):
    f = client(sim)
    assert f.trading_span("BTC/USDT") == (None, None)
    first, end = f.trading_span("BTC/USDT:USDT")
    assert first is not None and end is None


def test_unknown_contracts_and_prices_are_one_line_errors(sim):
    f = client(sim)
    with pytest.raises(BadSymbol, match="USD-M futures does not list"):
        f.check_symbols(["NOPE/USDT:USDT"])
    with pytest.raises(BadSymbol, match="COIN-M futures does not list"):
        f.check_symbols(["NOPE/USD:NOPE"])
    with pytest.raises(BadPrice, match="spot market"):
        next(f.fetch_range("BTC/USDT", H1, 0, HOUR, price="mark"))


def test_a_family_not_loaded_is_loaded_when_first_needed(sim):
    f = client(sim, "spot")
    f.load()
    assert sim.stats()["paths"].get("/fapi/v1/exchangeInfo", 0) == 0
    end = H1.floor(f.now_ms()) - HOUR
    assert len(rows(f, "BTC/USDT:USDT", H1, end - 5 * HOUR, end)) == 5
    assert sim.stats()["paths"]["/fapi/v1/exchangeInfo"] == 1
    assert sim.stats()["paths"]["/api/v3/exchangeInfo"] == 1


def test_backfill_of_a_perpetual_and_its_mark_prices_beside_spot_in_postgresql(sim, pg_url,
                                                                                 repo_for):
    repo = repo_for(pg_url)
    f = client(sim)
    end = H1.floor(f.now_ms()) - HOUR
    start = end - 2 * DAY
    road = FillHistory(f, repo, SqlGapRepository(repo.engine))
    road.run(["BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC"], H1, start, end, source="rest")
    road.run(["BTC/USDT:USDT"], H1, start, end, source="rest", price="mark")
    for symbol, price in (("BTC/USDT", "trade"), ("BTC/USDT:USDT", "trade"),
                          ("BTC/USD:BTC", "trade"), ("BTC/USDT:USDT", "mark")):
        assert repo.missing_ranges("binance", symbol, H1, start, end, price=price) == []
    assert repo.missing_ranges("binance", "BTC/USD:BTC", H1, start, end, price="mark") == \
        [(start, end)]


def test_a_contract_listed_inside_the_window_is_asked_from_its_listing_only(sim):
    f = client(sim, "usdm")
    onboard, _ = f.trading_span("WLD/USDT:USDT")
    end = M1.floor(f.now_ms()) - MIN
    got = rows(f, "WLD/USDT:USDT", M1, end - 4 * DAY, end)
    assert got[0].open_time == M1.floor(onboard) and len(got) == (end - M1.floor(onboard)) // MIN
    # 499 minutes a request from the listing on: no request for the days before it
    assert sim.stats()["usdm"]["klines"] == -(-len(got) // 499)
