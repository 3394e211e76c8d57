"""REST backfill with pages in flight: against the simulator with latency, and with in-memory fakes
for an interrupted run (no patching)."""

from __future__ import annotations

import threading

import pytest

from conftest import run_cli
from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.ranges import merge, uncovered
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import parse_iso
from ohlcv_cli.core.window import HistoryWindow
from ohlcv_cli.services.backfill import Backfill
from ohlcv_cli.services.history import FillHistory

M = 60_000
M1 = parse_timeframe("1m")
T0 = parse_iso("2024-03-01")


def as_rows(stored):
    return [[c.open_time, c.open, c.high, c.low, c.close, c.volume, c.open_time + M - 1,
             c.quote_volume, c.trades, c.taker_buy_base_volume, c.taker_buy_quote_volume, "0"]
            for c in stored]


@pytest.mark.parametrize("in_flight", ["1", "16"])
def test_one_symbols_pages_are_in_flight_together(pg_url, repo_for, sim_factory, in_flight):
    sim = sim_factory(latency_ms=40)
    r = run_cli("backfill", "--start", "2024-03-01", "--end", "2024-03-09T08:00", "--symbols",
                "BTC/USDT", "--source", "rest",
                env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url,
                     "BACKFILL_IN_FLIGHT": in_flight})
    assert r.returncode == 0, r.stderr
    end = parse_iso("2024-03-09T08:00")
    assert as_rows(repo_for(pg_url).candles("binance", "BTC/USDT", "1m")) == sim.final_rows(
        "BTC/USDT", "1m", T0, end)
    assert sim.stats()["klines"] == 12  # one request per page of 1000
    peak = sim.stats()["max_in_flight"]
    assert peak == 1 if in_flight == "1" else peak >= 4  # 16 asked; >= 4 holds on a loaded machine


def test_in_flight_pages_record_exactly_the_ranges_the_exchange_has_none_for(
        sqlite_url, repo_for, sim_factory):
    gap = (parse_iso("2024-03-01T16:00"), parse_iso("2024-03-01T17:30"))  # across a page boundary
    sim = sim_factory(maintenance=[gap])
    args = ("backfill", "--start", "2024-03-01T10:00", "--end", "2024-03-02T10:00",
            "--symbols", "BTC/USDT,ETH/USDT", "--source", "rest")
    env = {"DATABASE_URL": sqlite_url, "OHLCV_EXCHANGE_URL": sim.url, "BACKFILL_IN_FLIGHT": "4"}
    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    from ohlcv_cli.adapters.sql.gaps import SqlGapRepository

    repo = repo_for(sqlite_url)
    gaps = SqlGapRepository(repo.engine)
    for sym in ("BTC/USDT", "ETH/USDT"):
        assert gaps.exchange_gaps("binance", sym, "1m") == [gap]
        assert len(repo.candles("binance", sym, "1m")) == 1440 - 90
    klines = sim.stats()["klines"]
    assert run_cli(*args, env=env).returncode == 0
    assert sim.stats()["klines"] == klines


@pytest.mark.parametrize("in_flight", ["1", "16"])
def test_gaps_repair_fetches_every_symbols_holes_with_pages_in_flight(
        pg_url, repo_for, sim_factory, in_flight):
    import sqlalchemy as sa

    from ohlcv_cli.core.candle import from_kline

    sim = sim_factory(latency_ms=40)
    repo = repo_for(pg_url)
    end = T0 + 4320 * M
    symbols = ("BTC/USDT", "ETH/USDT")
    for sym in symbols:
        repo.upsert([from_kline(r, exchange="binance", symbol=sym, timeframe="1m", source="backfill")
                     for r in sim.final_rows(sym, "1m", T0, end)])
        for a, b in ((100, 1300), (2000, 2500), (3000, 4200)):  # 2 + 1 + 2 pages
            with repo.engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM candles WHERE symbol = :s AND open_time >= :a"
                                     " AND open_time < :b"),
                             {"s": sym, "a": repo.ts(T0 + a * M), "b": repo.ts(T0 + b * M)})
    r = run_cli("gaps", "repair", "--start", "2024-03-01", "--end", "2024-03-04", "--symbols",
                ",".join(symbols), "--source", "rest",
                env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url,
                     "BACKFILL_IN_FLIGHT": in_flight})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "repaired: 5800 candles written, 0 confirmed missing at the exchange" in r.stdout
    for sym in symbols:
        stored = repo.candles("binance", sym, "1m")
        assert as_rows(stored) == sim.final_rows(sym, "1m", T0, end)
        assert {c.source for c in stored if T0 + 100 * M <= c.open_time < T0 + 1300 * M} == {"repair"}
    assert sim.stats()["klines"] == 10  # one request per page of 1000
    peak = sim.stats()["max_in_flight"]
    assert peak == 1 if in_flight == "1" else peak >= 4


# --- an interrupted run, with fakes ---------------------------------------------------------
def candle(symbol: str, t: int) -> Candle:
    return Candle("binance", symbol, "1m", t, "1.0", "2.0", "0.5", "1.5", "3.0", "4.5", 2, "1.0",
                  "1.5", "backfill")


class Crash(Exception):
    """Not an OhlcvError: the process dies."""


class FakeFetcher:
    exchange_id = "binance"

    def __init__(self, empty: list[tuple[int, int]], crash_after: int | None = None) -> None:
        self.empty = empty
        self.crash_after = crash_after
        self.calls = 0
        self.lock = threading.Lock()

    def now_ms(self) -> int:
        return T0 + 30 * 86_400_000

    def check_symbols(self, symbols) -> None:
        pass

    def closed_end(self, tf) -> int:
        return tf.floor(self.now_ms())

    def trading_span(self, symbol) -> tuple[None, None]:
        return None, None  # spot markets only: no listing or delivery bound

    def fetch_range(self, symbol, tf, start, end, source="backfill", price="trade"):
        with self.lock:
            self.calls += 1
            if self.crash_after is not None and self.calls > self.crash_after:
                raise Crash("killed")
        yield [candle(symbol, t) for t in range(start, end, tf.ms)
               if not any(a <= t < b for a, b in self.empty)]


class FakeRepo:
    def __init__(self) -> None:
        self.rows: dict = {}
        self.lock = threading.Lock()

    def upsert(self, candles, expect_new=False) -> int:
        with self.lock:
            n = 0
            for c in candles:
                key = (c.symbol, c.open_time)
                n += self.rows.get(key) != c
                self.rows[key] = c
            return n

    def missing_ranges(self, exchange, symbol, tf, start, end, *, price="trade"):
        times = sorted(t for s, t in self.rows if s == symbol and start <= t < end)
        return uncovered(tf, start, end, times)


class FakeGaps:
    def __init__(self) -> None:
        self.ranges: dict = {}

    def exchange_gaps(self, exchange, symbol, timeframe, start=None, end=None, *,
                      price="trade"):
        return list(self.ranges.get(symbol, []))

    def record_exchange_gaps(self, exchange, symbol, timeframe, ranges, *, price="trade"):
        ranges = list(ranges)
        self.ranges[symbol] = merge(self.ranges.get(symbol, []) + ranges)
        return len(ranges)


def test_an_interrupted_in_flight_run_resumes_exactly():
    start, end = T0, T0 + 20_000 * M  # 20 pages per symbol
    empty = [(T0 + 4_500 * M, T0 + 5_200 * M)]
    repo, gaps = FakeRepo(), FakeGaps()
    symbols = ["BTC/USDT", "ETH/USDT"]
    with pytest.raises(Crash):
        Backfill(FillHistory(FakeFetcher(empty, crash_after=13), repo, gaps, in_flight=6,
                             batch_size=2500)).run(symbols, M1, HistoryWindow(start=start, end=end))
    first = dict(repo.rows)
    assert 0 < len(first) < 2 * (20_000 - 700)
    # what a crash leaves: only whole pages, the rest missing; nothing recorded as empty yet
    assert gaps.ranges == {}
    fetcher = FakeFetcher(empty)
    result = Backfill(FillHistory(fetcher, repo, gaps, in_flight=6, batch_size=2500)).run(
        symbols, M1, HistoryWindow(start=start, end=end))
    assert result.ok
    want = {(s, t): candle(s, t) for s in symbols for t in range(start, end, M)
            if not empty[0][0] <= t < empty[0][1]}
    assert repo.rows == want
    assert {s: gaps.ranges[s] for s in symbols} == {s: empty for s in symbols}
    assert sum(r.written for r in result.symbols) == len(want) - len(first)
    assert fetcher.calls == sum(-(-(b - a) // (1000 * M))
                                for s in symbols for a, b in uncovered(
                                    M1, start, end, sorted(t for k, t in first if k == s)))
