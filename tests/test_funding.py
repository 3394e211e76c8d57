"""Funding rates (issue 19): the due rule, the table, the REST/archive adapter, the services and
the CLI. The rule's tests are pure; the table runs against real PostgreSQL and SQLite; the
adapter and the CLI against the simulator over HTTP."""

from __future__ import annotations

import pytest

from ohlcv_cli.core.funding import (
    HOUR_MS, TOLERANCE_MS, Settlement, boundary_of, due, find_gaps, missing_ranges, with_intervals,
)

H = HOUR_MS
DAY = 24 * H
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC


def grid(start: int, end: int, hours: int, jitter=lambda i: 0) -> list[int]:
    """Settlement times every `hours` from start (aligned) to end, each trailing by jitter(i)."""
    return [t + jitter(i) for i, t in enumerate(range(start, end, hours * H))]


def jit(i: int) -> int:  # 0-15 ms, as Binance's records trail the boundary
    return (i * 7) % 16


# --- the due rule ---------------------------------------------------------------------------
def test_jitter_is_tolerated_and_times_stay_exact():
    assert boundary_of(T0 + 11) == T0
    assert boundary_of(T0 + TOLERANCE_MS) == T0
    assert boundary_of(T0 - 3) == T0
    assert boundary_of(T0 + 30 * 60_000) is None  # half past: no settlement of any boundary
    times = grid(T0, T0 + 10 * DAY, 8, jit)
    g = find_gaps("BTC/USDT:USDT", times, T0, T0 + 10 * DAY, 8)
    assert g.ok and g.due == 30 and g.stored == 30 and g.irregular == 0


def test_8h_to_4h_change_inside_the_window_is_no_false_gap():
    change = T0 + 5 * DAY
    times = grid(T0 - 2 * DAY, change, 8, jit) + grid(change, T0 + 10 * DAY, 4, jit)
    g = find_gaps("BTC/USDT:USDT", times, T0, T0 + 10 * DAY, 4)
    assert g.ok, [str(m) for m in g.missing]
    assert g.due == 5 * 3 + 5 * 6


def test_8h_to_4h_change_where_the_last_8h_settlement_stands_before_4h_ones():
    # the change falls between boundaries: 8h steps up to X, then 4h from X + 8h
    x = T0 + 5 * DAY
    times = grid(T0 - 2 * DAY, x + H, 8) + grid(x + 8 * H, T0 + 10 * DAY, 4)
    assert find_gaps("S", times, T0, T0 + 10 * DAY, 4).ok


def test_8h_to_4h_change_a_missing_settlement_on_each_side_is_found():
    change = T0 + 5 * DAY
    times = grid(T0 - 2 * DAY, change, 8) + grid(change, T0 + 10 * DAY, 4)
    lost_8h = T0 + 2 * DAY + 8 * H
    lost_4h = T0 + 7 * DAY + 4 * H
    times = [t for t in times if t not in (lost_8h, lost_4h)]
    g = find_gaps("S", times, T0, T0 + 10 * DAY, 4)
    assert g.missing == [lost_8h, lost_4h]


def test_a_1h_symbol():
    times = grid(T0 - DAY, T0 + 3 * DAY, 1, jit)
    assert find_gaps("SOL/USDT:USDT", times, T0, T0 + 3 * DAY, 1).due == 72
    lost = {T0 + 5 * H, T0 + 6 * H, T0 + 40 * H}
    g = find_gaps("SOL/USDT:USDT", [t for t in times if boundary_of(t) not in lost],
                  T0, T0 + 3 * DAY, 1)
    assert g.missing == sorted(lost) and g.due == 72
    # a 1h symbol checked on an 8h grid would be missing 7 of 8: never assumed
    assert find_gaps("SOL/USDT:USDT", [], T0, T0 + DAY, 1).due == 24


def test_a_symbol_listed_mid_window_owes_nothing_before_its_onboard():
    onboard = T0 + 3 * DAY + 5 * H  # not on a 4h boundary
    times = grid(T0 + 3 * DAY + 8 * H, T0 + 6 * DAY, 4)
    g = find_gaps("WLD/USDT:USDT", times, T0, T0 + 6 * DAY, 4, onboard=onboard)
    assert g.ok and g.due == len(times)
    # the first one lost: the settlement due after onboard is reported, nothing before it
    g = find_gaps("WLD/USDT:USDT", times[1:], T0, T0 + 6 * DAY, 4, onboard=onboard)
    assert g.missing == [times[0]]
    # nothing stored at all: due from onboard on, at the interval Binance gives now
    g = find_gaps("WLD/USDT:USDT", [], T0, T0 + 6 * DAY, 4, onboard=onboard)
    assert g.missing[0] == T0 + 3 * DAY + 8 * H and g.due == len(times)


def test_missing_at_the_ends_of_the_window():
    times = grid(T0 - DAY, T0 + 4 * DAY, 8)
    inner = [t for t in times if not (T0 <= t < T0 + 16 * H)]  # the first two of the window
    assert find_gaps("S", inner, T0, T0 + 4 * DAY, 8).missing == [T0, T0 + 8 * H]
    older = [t for t in times if t < T0 + 2 * DAY]  # nothing stored in the last two days
    assert len(find_gaps("S", older, T0, T0 + 4 * DAY, 8).missing) == 6


def test_due_is_never_outside_the_window():
    times = grid(T0 - 3 * DAY, T0 + 3 * DAY, 8)
    assert all(T0 <= b < T0 + DAY for b in due(times, T0, T0 + DAY, 8))


def test_missing_ranges_and_intervals_from_spacing():
    assert missing_ranges([T0, T0 + 8 * H, T0 + 5 * DAY]) == [(T0, T0 + 8 * H),
                                                             (T0 + 5 * DAY, T0 + 5 * DAY)]
    rows = [Settlement("binance", "S", t, "0.0001") for t in (T0 + 3, T0 + 8 * H + 2, T0 + 12 * H)]
    filled = with_intervals(rows, previous=T0 - 8 * H + 9, current_hours=4)
    assert [r.interval_hours for r in filled] == [8, 8, 4]
    assert [r.funding_time for r in filled] == [T0 + 3, T0 + 8 * H + 2, T0 + 12 * H]


# --- the table --------------------------------------------------------------------------------
@pytest.fixture
def funding_repo(db_url):
    from ohlcv_cli.adapters.sql.funding import SqlFundingRepository
    from ohlcv_cli.adapters.sql.schema import make_engine

    engine = make_engine(db_url)
    yield SqlFundingRepository(engine)
    engine.dispose()


def test_storing_is_exact_and_idempotent(funding_repo):
    rows = [
        Settlement("binance", "BTC/USDT:USDT", T0 + 11, "0.00010000", "87123.45000000", 8, "rest"),
        Settlement("binance", "BTC/USDT:USDT", T0 + 8 * H + 2, "-0.00000001", "87000.1", 8, "rest"),
        Settlement("binance", "BTC/USD:BTC", T0 + 7, "0.00003125", None, None, "rest"),
    ]
    assert funding_repo.store(rows) == 3
    assert funding_repo.store(rows) == 0  # a repeat changes nothing
    got = funding_repo.read("binance", "BTC/USDT:USDT")
    assert got == rows[:2]  # times to the ms, strings exactly (no 1E-8, no lost zeros)
    assert funding_repo.read("binance", "BTC/USD:BTC") == rows[2:]
    # the archive's row (no mark price) never erases the mark price REST gave
    archived = Settlement("binance", "BTC/USDT:USDT", T0 + 11, "0.00010000", None, 8, "archive")
    assert funding_repo.store([archived]) == 0
    assert funding_repo.read("binance", "BTC/USDT:USDT")[0] == rows[0]
    # a range read: start inclusive, end exclusive, by the exact time
    assert funding_repo.times("binance", "BTC/USDT:USDT", T0 + 11, T0 + 8 * H + 2) == [T0 + 11]
    assert funding_repo.latest("binance", "BTC/USDT:USDT").funding_time == T0 + 8 * H + 2
    summary = {s.symbol: s for s in funding_repo.summary()}
    assert summary["BTC/USDT:USDT"].count == 2 and summary["BTC/USDT:USDT"].interval_hours == 8
    assert summary["BTC/USDT:USDT"].first == T0 + 11 and summary["BTC/USD:BTC"].count == 1
    assert [s.symbol for s in funding_repo.summary(["BTC/USD:BTC"])] == ["BTC/USD:BTC"]
