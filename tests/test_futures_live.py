"""Live futures on real sockets: the simulator's USD-M (2026 `/market` route) and COIN-M
websockets beside spot, `stream` -> Kafka -> `consume` -> PostgreSQL, `--price mark` (COIN-M over
its mark-price kline stream, USD-M over REST at each close), and live funding from the
mark-price stream confirmed over REST, across a restart of the stream.

Futures kline streams have no 1s interval, so these run on 1m: the simulator's clock is set a few
seconds before a boundary (one that is also a funding settlement: 00:00, 08:00, 16:00 UTC), so
each test waits for one close only."""

from __future__ import annotations

import queue
import re
import time

import pytest

from helpers import kline_rows as rows
from ohlcv_cli.adapters.binance.ws import BinanceWsFeed
from ohlcv_cli.adapters.sql.funding import SqlFundingRepository
from ohlcv_cli.adapters.sql.schema import make_engine
from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.feed import MarkPrice
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_sim import SimConfig, SimServer
from test_live import Proc, live_env, wait_for

TF = parse_timeframe("1m")
EIGHT_H = 8 * 3_600_000
SPOT, USDM, COINM = "BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC"
IDS = {USDM: ("BTCUSDT", "usdm"), COINM: ("BTCUSD_PERP", "coinm")}


@pytest.fixture
def sim_before_settlement():
    """A simulator (with websockets) whose clock is `lead_s` before the next 8h boundary B;
    returns (sim, B)."""
    servers = []

    def make(lead_s: float) -> tuple[SimServer, int]:
        now = int(time.time() * 1000)
        boundary = (now // EIGHT_H + 1) * EIGHT_H
        sim = SimServer(SimConfig(clock_offset_ms=boundary - int(lead_s * 1000) - now),
                        ws_port=0).start()
        servers.append(sim)
        return sim, boundary

    yield make
    for s in servers:
        s.stop()


def sim_left_ms(sim: SimServer, t: int) -> float:
    return (t - sim.now_ms()) / 1000


def futures_rows(sim: SimServer, symbol: str, price: str, start: int, end: int) -> list[list]:
    mid, family = IDS[symbol]
    return [r[:11] + ["0"] for r in sim.futures_final_rows(mid, family, price, "1m", start, end)]


def collect(feeds, seconds: float) -> list[list]:
    out = []
    qs = []
    for f in feeds:
        q: queue.SimpleQueue = queue.SimpleQueue()
        f.start(q.put)
        qs.append(q)
    time.sleep(seconds)
    for f, q in zip(feeds, qs):
        f.close()
        got = []
        while not q.empty():
            got.append(q.get())
        out.append(got)
    return out


def test_each_family_streams_on_its_own_route_and_the_legacy_usdm_url_gets_nothing(
        sim_before_settlement):
    sim, b = sim_before_settlement(lead_s=5)
    usdm = BinanceWsFeed(sim.usdm_ws_url, {USDM: "BTCUSDT"}, TF, family="usdm",
                         mark_price=[USDM])
    coinm = BinanceWsFeed(sim.coinm_ws_url, {COINM: "BTCUSD_PERP"}, TF, family="coinm")
    coinm_mark = BinanceWsFeed(sim.coinm_ws_url, {COINM: "BTCUSD_PERP"}, TF, family="coinm",
                               price="mark")
    coinm_index = BinanceWsFeed(sim.coinm_ws_url, {COINM: "BTCUSD_PERP"}, TF, family="coinm",
                                price="index", pairs={COINM: "BTCUSD"})
    # the pre-2026 layout: the same streams on the unrouted <usdm>/stream
    legacy = BinanceWsFeed(sim.usdm_ws_url, {USDM: "BTCUSDT"}, TF, family="spot")
    assert usdm.url_of(0).startswith(f"{sim.usdm_ws_url}/market/stream?streams=btcusdt@kline_1m")
    assert legacy.url_of(0).startswith(f"{sim.usdm_ws_url}/stream?")
    # USD-M has no mark-price kline stream: nothing subscribed, REST fetches it at each close
    assert BinanceWsFeed(sim.usdm_ws_url, {USDM: "BTCUSDT"}, TF, family="usdm",
                         price="mark").candle_streams == 0
    events = collect([usdm, coinm, coinm_mark, coinm_index, legacy], sim_left_ms(sim, b) + 2.5)
    t = b - TF.ms
    for got, symbol, price in ((events[0], USDM, "trade"), (events[1], COINM, "trade"),
                               (events[2], COINM, "mark"), (events[3], COINM, "index")):
        candles = [e for e in got if isinstance(e, Candle)]
        assert [c.open_time for c in candles] == [t], (symbol, price, got)
        c = candles[0]
        assert (c.symbol, c.price, c.source) == (symbol, price, "stream")
        assert rows(candles) == futures_rows(sim, symbol, price, t, b)
    marks = [e for e in events[0] if isinstance(e, MarkPrice)]
    assert marks and marks[0].symbol == USDM
    # every 3 s: the rate that settles next, and when (B until it has passed)
    assert {m.next_funding_time for m in marks if m.event_time < b} == {b}
    assert all(m.next_funding_time > b for m in marks if m.event_time > b)
    assert [e for e in events[4] if isinstance(e, Candle)] == []
    assert sim.ws.stats()["legacy_connections"] >= 1


def funding_repo(pg_url) -> SqlFundingRepository:
    return SqlFundingRepository(make_engine(pg_url))


def stored_funding_at(fund: SqlFundingRepository, symbol: str, b: int):
    return fund.read("binance", symbol, b, b + 60_000)


def sim_funding_at(sim: SimServer, symbol: str, b: int) -> list[tuple]:
    mid, family = IDS[symbol]
    return [(r["fundingTime"], r["fundingRate"], r.get("markPrice"))
            for r in sim.funding_settlements(mid, family, b, b + 60_000)]


def socket_counts(text: str) -> tuple[int, int]:
    """(from the socket, from REST) of the stream's last report line."""
    found = re.findall(r"(\d+) candles from the socket, (\d+) from REST", text)
    assert found, text[-2000:]
    return int(found[-1][0]), int(found[-1][1])


@pytest.mark.kafka
def test_futures_beside_spot_through_kafka_into_postgres_with_mark_prices_and_live_funding(
        pg_url, repo_for, kafka, topic, tmp_path, sim_before_settlement):
    broker, _ = kafka
    sim, b = sim_before_settlement(lead_s=30)  # three processes start on two cores
    env = live_env(pg_url, sim, broker, topic, TIMEFRAME="1m",
                   SYMBOLS=f"{SPOT},{USDM},{COINM}", OHLCV_STREAM_URL=sim.ws_url,
                   OHLCV_USDM_STREAM_URL=sim.usdm_ws_url, OHLCV_COINM_STREAM_URL=sim.coinm_ws_url)
    consume = Proc(tmp_path, "consume", "consume", env=env)
    trade = Proc(tmp_path, "stream", "stream", env=env)
    mark = Proc(tmp_path, "stream-mark", "stream", "--price", "mark", "--symbols",
                f"{USDM},{COINM}", env=env)
    repo, fund = repo_for(pg_url), funding_repo(pg_url)
    last = b - TF.ms  # the candle closing at B

    def done() -> bool:
        return (all((repo.latest_open_time("binance", s, "1m") or 0) >= last
                    for s in (SPOT, USDM, COINM))
                and all((repo.latest_open_time("binance", s, "1m", price="mark") or 0) >= last
                        for s in (USDM, COINM))
                and all(stored_funding_at(fund, s, b) for s in (USDM, COINM)))
    try:
        assert wait_for(done, timeout=sim_left_ms(sim, b) + 30), (
            trade.text()[-3000:] + mark.text()[-2000:] + consume.text()[-2000:])
    finally:
        assert trade.stop() == 143 and mark.stop() == 143
        time.sleep(1)
        consume.stop()
    log = trade.text()
    assert "(usdm): 1 kline and 1 mark-price streams" in log, log[-3000:]
    assert "(coinm): 1 kline and 1 mark-price streams" in log
    assert socket_counts(log)[0] >= 3  # the close at B came over the three sockets
    # the spot pair and the two perpetuals never collide: each its own exact series
    spot = repo.candles("binance", SPOT, "1m")
    assert rows(spot) == sim.final_rows(SPOT, "1m", spot[0].open_time, b)
    for s in (USDM, COINM):
        for price in ("trade", "mark"):
            got = repo.candles("binance", s, "1m", price=price)
            assert got and got[-1].open_time == last
            assert {c.price for c in got} == {price}
            assert rows(got) == futures_rows(sim, s, price, got[0].open_time, b), (s, price)
    # COIN-M mark candles came over its markPriceKline stream, USD-M's over REST at the close
    mark_log = mark.text()
    assert "BTC/USDT:USDT: no websocket stream of mark candles on usdm" in mark_log
    assert "(coinm): 1 kline and 1 mark-price streams" in mark_log
    from_socket, from_rest = socket_counts(mark_log)
    assert from_socket >= 1 and from_rest >= 2
    # the settlement at B: announced by the mark-price stream, the REST record stored
    for s in (USDM, COINM):
        stored = [(x.funding_time, x.rate, x.mark_price) for x in stored_funding_at(fund, s, b)]
        assert stored == sim_funding_at(sim, s, b), s
    assert "settlement" in log and "confirmed over REST" in log


def test_a_stream_restarted_across_a_settlement_stores_it(pg_url, tmp_path,
                                                         sim_before_settlement):
    """`run` straight into PostgreSQL: stopped before B, started again after it."""
    sim, b = sim_before_settlement(lead_s=16)
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "TIMEFRAME": "1m",
           "SYMBOLS": USDM, "OHLCV_USDM_STREAM_URL": sim.usdm_ws_url,
           "REALTIME_DELAY_SECONDS": "0.5", "BACKFILL_SOURCE": "rest"}
    fund = funding_repo(pg_url)
    before = b - 4 * 3_600_000  # BTCUSDT settles every 4 hours here
    first = Proc(tmp_path, "run-1", "run", "--days", "1", env=env)
    try:
        assert wait_for(lambda: fund.read("binance", USDM, before, before + 60_000),
                        timeout=max(1.0, sim_left_ms(sim, b) - 2)), first.text()[-3000:]
    finally:
        first.stop()
    assert sim.now_ms() < b and not stored_funding_at(fund, USDM, b)
    time.sleep(max(0.0, sim_left_ms(sim, b)) + 1.5)  # B passes while nothing runs
    second = Proc(tmp_path, "run-2", "run", "--days", "1", env=env)
    try:
        assert wait_for(lambda: stored_funding_at(fund, USDM, b), timeout=30), \
            second.text()[-3000:]
    finally:
        second.stop()
    stored = [(x.funding_time, x.rate, x.mark_price) for x in stored_funding_at(fund, USDM, b)]
    assert stored == sim_funding_at(sim, USDM, b)  # fundingTime exactly as sent (ms after B)


def test_without_a_websocket_each_settlement_is_polled_and_confirmed_over_rest(
        pg_url, tmp_path, sim_before_settlement):
    """`run` with no futures websocket URL (REST only): the next settlement of each perpetual
    comes from premiumIndex, the settlement itself from fundingRate once it has passed."""
    sim, b = sim_before_settlement(lead_s=20)
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "TIMEFRAME": "1m",
           "SYMBOLS": f"{USDM},{COINM}", "REALTIME_DELAY_SECONDS": "0.5",
           "BACKFILL_SOURCE": "rest", "STREAM_SOURCE": "rest"}
    fund = funding_repo(pg_url)
    proc = Proc(tmp_path, "run", "run", "--days", "1", env=env)
    try:
        assert wait_for(lambda: all(stored_funding_at(fund, s, b) for s in (USDM, COINM)),
                        timeout=sim_left_ms(sim, b) + 30), proc.text()[-3000:]
    finally:
        assert proc.stop() == 143
    for s in (USDM, COINM):
        stored = [(x.funding_time, x.rate, x.mark_price, x.source)
                  for x in stored_funding_at(fund, s, b)]
        assert [row[:3] for row in stored] == sim_funding_at(sim, s, b), s
        assert {row[3] for row in stored} == {"stream"}
    premium = sum(n for path, n in sim.stats()["paths"].items() if path.endswith("/premiumIndex"))
    assert 2 <= premium <= 8, sim.stats()["paths"]  # about one per symbol per settlement
