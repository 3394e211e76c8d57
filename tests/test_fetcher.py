"""The ccxt fetcher against the simulator over HTTP: exact fields, closed candles only, faults."""

from __future__ import annotations

import time

import pytest

from ohlcv_cli.adapters.binance.budget import WeightBudget
from ohlcv_cli.adapters.binance.rest import CcxtFetcher
from ohlcv_cli.core.errors import BadSymbol, ExchangeUnavailable
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import parse_iso
from helpers import kline_rows as rows_of

M1 = parse_timeframe("1m")
S1 = parse_timeframe("1s")
T0 = parse_iso("2024-03-01")




def fetch_all(fetcher, symbol, tf, start, end):
    return [c for page in fetcher.fetch_range(symbol, tf, start, end) for c in page]


def test_every_field_is_the_exchange_string(sim):
    f = CcxtFetcher(exchange_url=sim.url, settle_ms=0)
    got = fetch_all(f, "BTC/USDT", M1, T0, T0 + 2500 * 60_000)
    assert len(got) == 2500
    assert rows_of(got) == sim.final_rows("BTC/USDT", "1m", T0, T0 + 2500 * 60_000)
    assert f.stats["requests"] >= 3  # pages of 1000


def test_only_settled_candles_are_returned(sim_factory):
    sim = sim_factory(settle_lag_ms=700)
    f = CcxtFetcher(exchange_url=sim.url, settle_ms=900)
    for _ in range(3):
        end = S1.floor(f.now_ms())  # the newest boundary: its candle has only just closed
        got = fetch_all(f, "ETH/USDT", S1, end - 5000, end)
        assert [c.open_time for c in got] == list(range(end - 5000, end, 1000))
        for c in got:
            final = sim.final_row("ETH/USDT", "1s", c.open_time)
            assert (c.volume, c.trades, c.close) == (final[5], final[8], final[4])


def test_faults_are_survived_with_nothing_missing(sim_factory):
    sim = sim_factory(share_429=0.2, share_5xx=0.2)
    f = CcxtFetcher(exchange_url=sim.url, settle_ms=0, max_retries=10, sleep=lambda s: time.sleep(min(s, 0.05)))
    got = fetch_all(f, "SOL/USDT", M1, T0, T0 + 8000 * 60_000)
    assert len(got) == 8000
    stats = sim.stats()
    assert stats["injected_429"] > 0 and stats["injected_5xx"] > 0
    assert f.stats["rate_limited"] > 0 and f.stats["retries"] > 0


def test_weight_budget_is_kept_without_429(sim_factory):
    # 24 weight a second: exchangeInfo (20) and /time (1) fill the first window, then 12 klines
    # requests a second, far fewer than the client could send: the budget must bind
    sim = sim_factory(weight_limit=24, weight_window_s=1)
    f = CcxtFetcher(exchange_url=sim.url, settle_ms=0)
    got = fetch_all(f, "BNB/USDT", M1, T0, T0 + 36_000 * 60_000)  # 36 requests, >= 3 windows
    assert len(got) == 36_000
    assert sim.stats()["rejected_429"] == 0 and sim.stats()["rejected_418"] == 0
    assert f.budget.limit == 24 and f.budget.window_ms == 1000
    assert f.budget.waited_s > 0


def test_unknown_symbol_and_unreachable_exchange(sim):
    f = CcxtFetcher(exchange_url=sim.url)
    with pytest.raises(BadSymbol, match="NOPE/USDT"):
        f.check_symbols(["NOPE/USDT"])
    dead = CcxtFetcher(exchange_url="http://127.0.0.1:9", max_retries=1, sleep=lambda s: None)
    with pytest.raises(ExchangeUnavailable, match="unreachable at http://127.0.0.1:9"):
        dead.check_symbols(["BTC/USDT"])


def test_listing_inside_the_range_is_not_an_error(sim_factory):
    from dataclasses import replace

    from ohlcv_sim import default_symbols

    specs = [replace(s, listed_at=T0 + 90 * 60_000) if s.symbol == "ADA/USDT" else s for s in default_symbols()]
    sim = sim_factory(symbols=specs)
    f = CcxtFetcher(exchange_url=sim.url, settle_ms=0)
    got = fetch_all(f, "ADA/USDT", M1, T0, T0 + 1500 * 60_000)
    assert got[0].open_time == T0 + 90 * 60_000 and len(got) == 1410


# --- the weight budget (pure: a fake clock) ------------------------------------------------------
class _Clock:
    def __init__(self, t: int) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += int(s * 1000)


def test_budget_waits_for_the_next_window_once_spent_with_a_short_margin():
    clock = _Clock(10_000)
    b = WeightBudget(10, 1000, clock, clock.sleep)
    for _ in range(5):
        b.acquire(2)
    assert clock.slept == []
    clock.t = 10_400
    b.acquire(2)  # the window is spent: wait to 11_000 + 50 ms (a twentieth of a 1 s window)
    assert clock.slept == [0.65] and clock.t == 11_050


def test_an_answer_inside_the_window_raises_the_count_but_one_across_a_boundary_does_not():
    clock = _Clock(20_000)
    b = WeightBudget(100, 1000, clock, clock.sleep)
    b.acquire(2)
    b.observe(90, sent_ms=20_100, answered_ms=20_200)  # other clients on this IP: 90 used
    clock.t = 20_300
    b.acquire(10)
    b.acquire(2)  # 90 + 10 + 2 > 100: waits for the next window
    assert len(clock.slept) == 1 and clock.t >= 21_000
    # sent in the old window, answered in the new one: the old window's count is not the new one's
    clock2 = _Clock(30_950)
    b2 = WeightBudget(100, 1000, clock2, clock2.sleep)
    b2.acquire(2)
    clock2.t = 31_010
    b2.acquire(2)
    b2.observe(98, sent_ms=30_950, answered_ms=31_020)
    for _ in range(48):
        b2.acquire(2)  # 2 + 96 of the new window's 100: no wait
    assert clock2.slept == []
