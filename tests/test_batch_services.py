"""Backfill, gap check and gap repair with in-memory fakes of their ports (no patching)."""

from __future__ import annotations

import logging
import threading

import pytest

from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.errors import ConfigError, ExchangeUnavailable
from ohlcv_cli.core.ports import SeriesSummary
from ohlcv_cli.core.ranges import merge, subtract
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.window import HistoryWindow, check_days, grace_end
from ohlcv_cli.services.backfill import Backfill
from ohlcv_cli.services.gaps import GapCheck, GapRepair
from ohlcv_cli.services.history import FillHistory


def backfill(ex, store, **kw) -> Backfill:
    """The backfill use case over the one history road; in_flight 1 unless asked otherwise."""
    return Backfill(FillHistory(ex, store, store, **{"in_flight": 1, **kw}))


def repair(ex, store, **kw) -> GapRepair:
    return GapRepair(FillHistory(ex, store, store, **{"in_flight": 1, "concurrency": 1, **kw}),
                     store)

M1 = parse_timeframe("1m")
M = 60_000
T0 = 1_800_000_000_000 - 1_800_000_000_000 % M  # aligned
NOW = T0 + 100 * M + 30_000


def candle(symbol: str, t: int, source: str = "backfill") -> Candle:
    return Candle("binance", symbol, "1m", t, "1.0", "2.0", "0.5", "1.5", "3.0", "4.5", 2, "1.0",
                  "1.5", source)


class FakeExchange:
    """Candles every minute except in `holes`; pages of `page` candles; `down` symbols fail."""

    exchange_id = "binance"

    def __init__(self, holes=(), page=7, down=()) -> None:
        self.holes = list(holes)
        self.page = page
        self.down = set(down)
        self.requests = 0

    def now_ms(self) -> int:
        return NOW

    def check_symbols(self, symbols) -> None:
        pass

    def closed_end(self, tf) -> int:
        return tf.floor(NOW)

    def trading_span(self, symbol) -> tuple[None, None]:
        return None, None  # spot markets only: no listing or delivery bound

    def fetch_range(self, symbol, tf, start, end, source="backfill", price="trade"):
        times = [t for t in range(start, min(end, self.closed_end(tf)), tf.ms)
                 if not any(a <= t < b for a, b in self.holes)]
        for i in range(0, len(times), self.page):
            self.requests += 1
            if symbol in self.down:
                raise ExchangeUnavailable(f"binance unreachable for {symbol}")
            yield [candle(symbol, t, source) for t in times[i:i + self.page]]
        if not times:
            self.requests += 1


class FakeStore:
    """The candle repository and the gap repository in one: dicts and lists."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], Candle] = {}
        self.gaps: dict[str, list[tuple[int, int]]] = {}

    def upsert(self, candles, expect_new=False) -> int:
        n = 0
        for c in candles:
            n += self.rows.get((c.symbol, c.open_time)) != c
            self.rows[(c.symbol, c.open_time)] = c
        return n

    def latest_open_time(self, exchange, symbol, timeframe, *, price="trade"):
        return max((t for s, t in self.rows if s == symbol), default=None)

    def missing_ranges(self, exchange, symbol, tf, start, end, *, price="trade"):
        have = [(t, t + tf.ms) for s, t in self.rows if s == symbol]
        return subtract([(start, end)], have)

    def exchange_gaps(self, exchange, symbol, timeframe, start=None, end=None, *,
                      price="trade"):
        return [g for g in self.gaps.get(symbol, [])
                if start is None or (g[1] > start and g[0] < end)]

    def record_exchange_gaps(self, exchange, symbol, timeframe, ranges, *,
                             price="trade") -> int:
        ranges = list(ranges)
        self.gaps[symbol] = merge(self.gaps.get(symbol, []) + ranges)
        return len(ranges)

    def first_open_time(self, exchange, symbol, timeframe, *, price="trade"):
        return min((t for s, t in self.rows if s == symbol), default=None)

    def series(self, symbols=None, timeframe=None, *, price=None):
        return [SeriesSummary("binance", s, "1m", 0, 0, 0) for s in sorted({s for s, _ in self.rows})]

    def times(self, symbol):
        return sorted(t for s, t in self.rows if s == symbol)


def test_backfill_fetches_what_is_missing_learns_exchange_gaps_then_skips_them():
    ex, store = FakeExchange(holes=[(T0 + 10 * M, T0 + 13 * M)]), FakeStore()
    store.upsert([candle("BTC/USDT", T0 + i * M) for i in range(40, 50)])
    calls = []
    result = backfill(ex, store, batch_size=5,
                      progress=lambda *a: calls.append(a)).run(["BTC/USDT"], M1, HistoryWindow(start=T0))
    r = result.symbols[0]
    assert (result.start, result.end) == (T0, T0 + 100 * M)
    assert r.missing == 90 and r.written == r.fetched == 87 and r.exchange_missing == 3
    assert store.times("BTC/USDT") == [T0 + i * M for i in range(100) if not 10 <= i < 13]
    assert store.gaps["BTC/USDT"] == [(T0 + 10 * M, T0 + 13 * M)]
    assert calls[0] == ("BTC/USDT", 0, 90) and calls[-1] == ("BTC/USDT", 90, 90)
    before = ex.requests
    again = backfill(ex, store).run(["BTC/USDT"], M1, HistoryWindow(start=T0))
    assert again.symbols[0].missing == 0 and ex.requests == before  # the known gap is skipped


def test_a_failing_symbol_is_named_in_the_result_not_logged_and_the_others_complete(caplog):
    ex, store = FakeExchange(down={"ETH/USDT"}), FakeStore()
    with caplog.at_level(logging.INFO):
        result = backfill(ex, store).run(["BTC/USDT", "ETH/USDT"], M1, HistoryWindow(days=1 / 24))
    assert not result.ok and [r.symbol for r in result.failed] == ["ETH/USDT"]
    assert result.failed[0].error == "binance unreachable for ETH/USDT"
    assert len(store.times("BTC/USDT")) == 60
    # reported once, by whoever renders the result: the service itself does not log it
    assert not [rec for rec in caplog.records if "ETH/USDT" in rec.getMessage()]


def test_backfill_stops_when_asked_and_records_no_gap_it_did_not_confirm():
    ex, store = FakeExchange(page=10, holes=[(T0 + 95 * M, T0 + 97 * M)]), FakeStore()
    stop = threading.Event()
    seen = []

    def progress(symbol, done, total):
        seen.append(done)
        if done >= 20:
            stop.set()

    result = backfill(ex, store, progress=progress, stop=stop, batch_size=1000).run(
        ["BTC/USDT"], M1, HistoryWindow(start=T0))
    assert result.symbols[0].error == "stopped before the end of the window"
    assert store.times("BTC/USDT") == [T0 + i * M for i in range(20)]  # what it got is stored
    assert store.gaps == {}


def test_gap_check_covers_the_whole_window_its_head_is_missing_unless_known_empty():
    # issue 17.3: the grid starts at the window's start, not at the first stored candle
    store = FakeStore()
    store.upsert([candle("BTC/USDT", T0 + i * M) for i in range(20, 99) if i not in (30, 31, 50)])
    store.record_exchange_gaps("binance", "BTC/USDT", "1m", [(T0 + 50 * M, T0 + 51 * M)])
    report = GapCheck(store, store).run(["BTC/USDT", "ETH/USDT"], M1, NOW,
                                        HistoryWindow(start=T0), delay_ms=1000)
    btc, eth = report.symbols
    # the grace end: the last closed candle (T0+99m) is given the delay and a timeframe to arrive
    assert report.end == grace_end(M1, NOW, 1000) == T0 + 99 * M
    assert (btc.start, btc.missing, btc.missing_candles) == (
        T0, [(T0, T0 + 20 * M), (T0 + 30 * M, T0 + 32 * M)], 22)
    assert btc.expected == 98 and btc.exchange_gaps == [(T0 + 50 * M, T0 + 51 * M)]
    assert eth.empty and eth.missing == [(T0, T0 + 99 * M)]
    assert not report.ok and report.missing_candles == 22 + 99
    # the head confirmed empty at the exchange (before the listing): the grid starts after it
    store.record_exchange_gaps("binance", "BTC/USDT", "1m", [(T0, T0 + 20 * M)])
    btc = GapCheck(store, store).run(["BTC/USDT"], M1, NOW, HistoryWindow(start=T0)).symbols[0]
    assert (btc.start, btc.missing, btc.missing_candles) == (T0 + 20 * M, [(T0 + 30 * M, T0 + 32 * M)], 2)
    assert btc.expected == 78


def test_repair_fills_a_missing_head_and_records_the_time_before_the_listing_as_empty():
    # issue 17.3: the exchange has candles from T0+10m on ("listed" then); the store from T0+20m
    ex, store = FakeExchange(holes=[(T0 - 10 * M, T0 + 10 * M)]), FakeStore()
    store.upsert([candle("BTC/USDT", T0 + i * M) for i in range(20, 99)])
    report = repair(ex, store).run(["BTC/USDT"], M1, HistoryWindow(start=T0))
    r = report.symbols[0]
    assert report.ok and r.missing == [(T0, T0 + 20 * M)] and r.written == 10
    assert r.exchange_empty == [(T0, T0 + 10 * M)] == store.gaps["BTC/USDT"]
    assert store.times("BTC/USDT") == [T0 + i * M for i in range(10, 99)]
    check = GapCheck(store, store).run(["BTC/USDT"], M1, NOW, HistoryWindow(start=T0))
    assert check.ok and check.symbols[0].start == T0 + 10 * M


def test_repair_fetches_the_missing_records_confirmed_empty_ranges_and_a_rerun_fetches_nothing():
    ex, store = FakeExchange(holes=[(T0 + 60 * M, T0 + 64 * M)]), FakeStore()
    store.upsert([candle("BTC/USDT", T0 + i * M) for i in range(99) if not 55 <= i < 70])
    report = repair(ex, store, batch_size=3).run(["BTC/USDT"], M1, HistoryWindow(start=T0))
    r = report.symbols[0]
    assert report.ok and r.missing == [(T0 + 55 * M, T0 + 70 * M)]
    assert r.written == r.fetched == 11 and r.exchange_empty == [(T0 + 60 * M, T0 + 64 * M)]
    assert {c.source for c in store.rows.values() if 55 * M <= c.open_time - T0 < 70 * M} == {"repair"}
    assert store.gaps["BTC/USDT"] == [(T0 + 60 * M, T0 + 64 * M)] and r.still_missing == []
    before = ex.requests
    again = repair(ex, store).run(["BTC/USDT"], M1, HistoryWindow(start=T0))
    assert again.ok and again.symbols[0].missing == [] and ex.requests == before


def test_repair_of_a_failing_symbol_names_it_and_records_nothing():
    ex, store = FakeExchange(down={"BTC/USDT"}), FakeStore()
    store.upsert([candle("BTC/USDT", T0 + i * M) for i in range(99) if i != 5])
    report = repair(ex, store).run(["BTC/USDT"], M1, HistoryWindow(start=T0))
    assert not report.ok and report.symbols[0].error == "binance unreachable for BTC/USDT"
    assert store.gaps == {}


def test_window_arithmetic_speaks_of_times():
    assert HistoryWindow(days=1).bounds(M1, NOW) == (T0 + 100 * M - 86_400_000, T0 + 100 * M)
    assert HistoryWindow(start=T0 + 1, end=T0 + 10 * M + 1).bounds(M1, NOW) == (T0 + M, T0 + 11 * M)
    assert HistoryWindow(start=T0, end=NOW + 10 * M).bounds(M1, NOW) == (T0, T0 + 100 * M)
    with pytest.raises(ConfigError, match="empty window"):
        HistoryWindow(start=NOW, end=NOW + M).bounds(M1, NOW)
    with pytest.raises(ConfigError, match="before 1970-01-01"):
        HistoryWindow(days=100_000).bounds(M1, NOW)
    with pytest.raises(ConfigError, match="before 1970-01-01"):
        check_days(100_000, NOW)
    check_days(365, NOW)
