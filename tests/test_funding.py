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


# --- the services, with a model of Binance's funding as their source --------------------------
class FakeFunding:
    """Binance's funding side as data: settlements per symbol (times jittered), the intervals
    fundingInfo lists, onboard times, and archive months that are missing (404)."""

    exchange = "binance"

    def __init__(self, now: int, series: dict, adjusted=None, onboard=None, no_archive=()):
        self.now, self.series = now, series
        self.adjusted = adjusted or {}
        self.onboards = onboard or {}
        self.no_archive = set(no_archive)
        self.requests = 0
        self.months: list[str] = []

    def now_ms(self):
        return self.now

    def _rows(self, symbol, start, end, source, mark="1.0"):
        return [Settlement("binance", symbol, t, f"0.000{i % 10}0000", mark, None, source)
                for i, t in enumerate(self.series[symbol]) if start <= t < end and t <= self.now]

    def history(self, symbol, start, end, source="rest"):
        t = start
        while t < end:
            self.requests += 1
            rows = self._rows(symbol, t, end, source)
            page = rows[:1000]
            yield page
            if len(rows) <= 1000:
                return
            t = page[-1].funding_time + 1

    def intervals(self, family="usdm"):
        self.requests += 1
        return dict(self.adjusted)

    def onboard(self, symbol):
        return self.onboards.get(symbol)

    def has_archive(self, symbol):
        return symbol.endswith(":USDT")

    def archive_month(self, symbol, period):
        self.months.append(period.label)
        if period.label in self.no_archive:
            return None
        return [Settlement(s.exchange, s.symbol, s.funding_time, s.rate, None, 8, "archive")
                for s in self._rows(symbol, period.start, period.end, "archive")]


@pytest.fixture
def sqlite_funding(sqlite_url):
    from ohlcv_cli.adapters.sql.funding import SqlFundingRepository
    from ohlcv_cli.adapters.sql.schema import make_engine

    engine = make_engine(sqlite_url)
    yield SqlFundingRepository(engine)
    engine.dispose()


NOW = T0 + 75 * DAY + 3 * H + 120_000  # 2026-03-17 03:02
CHANGE = T0 + 70 * DAY  # BTC: 8h until here, 4h after


def binance_model(**kw) -> FakeFunding:
    series = {
        "BTC/USDT:USDT": grid(T0 - 40 * DAY, CHANGE, 8, jit) + grid(CHANGE, NOW, 4, jit),
        "SOL/USDT:USDT": grid(T0 - 40 * DAY, NOW, 1, jit),
        "BTC/USD:BTC": grid(T0 - 40 * DAY, NOW, 8, jit),
    }
    return FakeFunding(NOW, series, adjusted={"BTCUSDT": 4, "SOLUSDT": 1}, **kw)


def test_backfill_then_check_is_clean_across_an_interval_change_and_a_1h_symbol(sqlite_funding):
    from ohlcv_cli.services.funding import FundingBackfill, FundingCheck, exchange_rules

    src = binance_model()
    syms = ["BTC/USDT:USDT", "SOL/USDT:USDT", "BTC/USD:BTC"]
    start, end = T0, NOW - 60_000
    report = FundingBackfill(src, sqlite_funding).run(syms, start, end)
    assert report.ok, [(r.symbol, r.error, r.still_missing[:3]) for r in report.symbols]
    by = {r.symbol: r for r in report.symbols}
    # January and February from the archive, March over REST; this fake files no COIN-M months
    assert by["BTC/USDT:USDT"].archive_months == 2 and by["BTC/USD:BTC"].archive_months == 0
    want_btc = [t for t in src.series["BTC/USDT:USDT"] if start <= t < end]
    assert sqlite_funding.times("binance", "BTC/USDT:USDT", start, end) == want_btc
    assert by["SOL/USDT:USDT"].written == len([t for t in src.series["SOL/USDT:USDT"]
                                               if start <= t < end])
    stored = sqlite_funding.read("binance", "BTC/USDT:USDT", CHANGE - DAY, CHANGE + DAY)
    assert {s.interval_hours for s in stored if s.funding_time < CHANGE} == {8}
    assert {s.interval_hours for s in stored if s.funding_time > CHANGE} == {4}
    rules = exchange_rules(src, syms)
    check = FundingCheck(sqlite_funding).run(syms, start, end, rules)
    assert check.ok and check.symbols[0].due == len(want_btc)
    # resumable: a second backfill asks REST for nothing but fundingInfo (USD-M's and COIN-M's)
    before = src.requests
    again = FundingBackfill(src, sqlite_funding).run(syms, start, end)
    assert again.ok and sum(r.written for r in again.symbols) == 0
    assert src.requests == before + 2


def test_a_rejected_coinm_funding_info_falls_back_to_the_stored_spacing(caplog):
    from ohlcv_cli.core.errors import ExchangeRejected
    from ohlcv_cli.services.funding import exchange_rules

    class Refusing(FakeFunding):
        def intervals(self, family="usdm"):
            if family == self.refuse:
                raise ExchangeRejected(f"binance rejected the request: {family} fundingInfo")
            return super().intervals(family)

    src = Refusing(NOW, {}, adjusted={"BTCUSDT": 4})
    src.refuse = "coinm"
    rules = exchange_rules(src, ["BTC/USDT:USDT", "BTC/USD:BTC"])
    assert rules.current == {"BTC/USDT:USDT": 4}  # COIN-M: the stored spacing decides
    assert "COIN-M futures fundingInfo" in caplog.text and "BTC/USD:BTC" in caplog.text
    src.refuse = "usdm"  # USD-M's is the record: its failure is the command's
    with pytest.raises(ExchangeRejected):
        exchange_rules(src, ["BTC/USDT:USDT", "BTC/USD:BTC"])


def test_a_missing_archive_month_falls_back_to_rest(sqlite_funding):
    from ohlcv_cli.services.funding import FundingBackfill

    src = binance_model(no_archive={"2026-02"})
    report = FundingBackfill(src, sqlite_funding).run(["BTC/USDT:USDT"], T0, NOW - 60_000)
    r = report.symbols[0]
    assert report.ok and r.archive_months == 1 and r.archive_missing == 1
    feb = [s for s in sqlite_funding.read("binance", "BTC/USDT:USDT", T0 + 31 * DAY, T0 + 59 * DAY)]
    assert len(feb) == 28 * 3 and {s.source for s in feb} == {"rest"}
    assert all(s.mark_price == "1.0" for s in feb)  # REST gives the mark price, the file none
    jan = sqlite_funding.read("binance", "BTC/USDT:USDT", T0, T0 + 31 * DAY)
    assert {s.source for s in jan} == {"archive"} and jan[0].mark_price is None


def test_repair_fills_what_check_reported(sqlite_funding):
    from ohlcv_cli.services.funding import (
        FundingBackfill, FundingCheck, FundingRepair, exchange_rules)

    src = binance_model()
    start, end = T0 + 60 * DAY, NOW - 60_000
    syms = ["BTC/USDT:USDT", "SOL/USDT:USDT"]
    FundingBackfill(src, sqlite_funding, use_archive=False).run(syms, start, end)
    # lose some settlements: one 8h before the change, one 4h after, three hours of SOL
    lost = {"BTC/USDT:USDT": [CHANGE - 16 * H, CHANGE + 8 * H],
            "SOL/USDT:USDT": [T0 + 65 * DAY + h * H for h in (3, 4, 5)]}
    engine = sqlite_funding.engine
    import sqlalchemy as sa
    with engine.begin() as conn:
        for sym, bs in lost.items():
            for b in bs:
                conn.execute(sa.text("DELETE FROM funding_rates WHERE symbol = :s AND "
                                     "funding_time >= :a AND funding_time < :b"),
                             {"s": sym, "a": sqlite_funding.ts(b), "b": sqlite_funding.ts(b + 1000)})
    rules = exchange_rules(src, syms)
    check = FundingCheck(sqlite_funding).run(syms, start, end, rules)
    assert not check.ok
    assert {g.symbol: g.missing for g in check.symbols} == lost
    repaired = FundingRepair(src, sqlite_funding, use_archive=False).run(syms, start, end)
    assert repaired.ok and {r.symbol: r.written for r in repaired.symbols} == {
        "BTC/USDT:USDT": 2, "SOL/USDT:USDT": 3}
    assert FundingCheck(sqlite_funding).run(syms, start, end, rules).ok
    fixed = sqlite_funding.read("binance", "BTC/USDT:USDT", CHANGE + 8 * H, CHANGE + 9 * H)
    assert fixed[0].source == "repair" and boundary_of(fixed[0].funding_time) == CHANGE + 8 * H


def test_a_symbol_listed_mid_window_backfills_from_its_listing(sqlite_funding):
    from ohlcv_cli.services.funding import FundingBackfill

    onboard = NOW // H * H - 36 * H
    first = -(-(onboard + 1) // (4 * H)) * 4 * H
    src = FakeFunding(NOW, {"WLD/USDT:USDT": grid(first, NOW, 4, jit)},
                      adjusted={"WLDUSDT": 4}, onboard={"WLD/USDT:USDT": onboard})
    report = FundingBackfill(src, sqlite_funding).run(["WLD/USDT:USDT"], NOW - 10 * DAY,
                                                      NOW - 60_000)
    assert report.ok and report.symbols[0].missing == len(src.series["WLD/USDT:USDT"])
    assert report.symbols[0].archive_months == 0  # listed this month: nothing to ask the archive


# --- the adapter against the simulator over HTTP ------------------------------------------------
def _month_before(now_ms: int, back: int = 1):
    from ohlcv_cli.core.archive import Period, month_start

    m0 = month_start(now_ms)
    for _ in range(back):
        m0 = month_start(m0 - 1)
    from ohlcv_cli.core.archive import next_month
    return Period("monthly", m0, next_month(m0))


def test_archive_month_exact_and_a_missing_month_is_none(sim_factory):
    from ohlcv_cli.adapters.binance.archive import BinanceArchive
    from ohlcv_cli.adapters.binance.funding import BinanceFunding
    from ohlcv_cli.adapters.binance.rest import CcxtFetcher

    sim0 = sim_factory()
    gone = _month_before(sim0.now_ms(), 2)
    sim = sim_factory(archive_faults=[f"missing:SOLUSDT:{gone.label}"])
    f = BinanceFunding(CcxtFetcher(exchange_url=sim.url), BinanceArchive(sim.url))
    last = _month_before(sim.now_ms(), 1)
    rows = f.archive_month("SOL/USDT:USDT", last)
    hours = (last.end - last.start) // H
    assert len(rows) == hours and {r.interval_hours for r in rows} == {1}
    assert all(0 <= r.funding_time - boundary_of(r.funding_time) <= 15 for r in rows)
    assert any(r.funding_time != boundary_of(r.funding_time) for r in rows)  # kept as recorded
    assert {r.source for r in rows} == {"archive"} and all(r.mark_price is None for r in rows)
    assert all(len(r.rate.split(".")[1]) == 8 for r in rows)
    assert f.archive_month("SOL/USDT:USDT", gone) is None
    assert len(f.archive_month("BTC/USDT:USDT", gone)) == (gone.end - gone.start) // (8 * H)


def test_coinm_from_its_own_archive_and_its_own_funding_info(sim_factory, sqlite_url):
    """COIN-M perpetuals: whole months from data/futures/cm/monthly/fundingRate, and the current
    interval from /dapi/v1/fundingInfo. ETHUSD_PERP moved from 8h to 4h five days ago; a store
    holding only its 8h history still owes every 4h settlement since, which the stored spacing
    alone would not tell."""
    import json
    import urllib.request
    from datetime import datetime, timezone

    from conftest import run_cli
    from ohlcv_cli.adapters.sql.funding import SqlFundingRepository
    from ohlcv_cli.adapters.sql.schema import make_engine

    probe = sim_factory()
    change = probe.now_ms() // (8 * H) * (8 * H) - 5 * DAY
    sim = sim_factory(funding_schedules={"ETHUSD_PERP": [(0, 8), (change, 4)]})
    with urllib.request.urlopen(f"{sim.url}/dapi/v1/fundingInfo") as answer:
        info = json.load(answer)
    assert {r["symbol"]: r["fundingIntervalHours"] for r in info} == {"ETHUSD_PERP": 4}
    env = {"DATABASE_URL": sqlite_url, "OHLCV_EXCHANGE_URL": sim.url,
           "OHLCV_ARCHIVE_URL": sim.url}
    perps = "BTC/USD:BTC,ETH/USD:ETH"

    def at(ms):
        return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")

    start = sim.now_ms() - 70 * DAY  # a whole past month at least
    r = run_cli("funding", "backfill", "--start", at(start), "--end", at(change - DAY),
                "--symbols", perps, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "archive months" in r.stdout and "not in the archive" not in r.stdout
    engine = make_engine(sqlite_url)
    repo = SqlFundingRepository(engine)
    for sym in ("BTC/USD:BTC", "ETH/USD:ETH"):
        rows = repo.read("binance", sym)
        assert "archive" in {s.source for s in rows}, sym
        assert {s.interval_hours for s in rows} == {8}
        assert {s.rate for s in rows if s.source == "archive"} <= {
            st.rate for st in sim.funding.settlements("coinm", market_id(sym), start, change)}
    r = run_cli("funding", "check", "--start", at(start), "--symbols", perps, "--json", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    missing = {x["symbol"]: x["missing"] for x in json.loads(r.stdout)["symbols"]}

    def hour(t):
        return datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").hour
    assert missing["ETH/USD:ETH"] and {hour(t) % 8 for t in missing["ETH/USD:ETH"]} == {0, 4}
    assert missing["BTC/USD:BTC"] and {hour(t) % 8 for t in missing["BTC/USD:BTC"]} == {0}
    r = run_cli("funding", "repair", "--start", at(start), "--symbols", perps, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli("funding", "check", "--start", at(start), "--symbols", perps, env=env)
    assert r.returncode == 0 and "complete: no settlement missing in 2 symbols" in r.stdout
    eth = repo.read("binance", "ETH/USD:ETH")
    assert [s.interval_hours for s in eth if s.funding_time > change + H][:3] == [4, 4, 4]
    engine.dispose()


def market_id(symbol: str) -> str:
    from ohlcv_cli.core.markets import market_of
    return market_of(symbol).id


# --- reading -------------------------------------------------------------------------------------
def test_store_funding_as_pandas_polars_arrow_exact_or_float(db_url, funding_repo, tmp_path):
    from decimal import Decimal

    from ohlcv_cli.api.read import open_store
    from ohlcv_cli.core.errors import ConfigError

    rows = [Settlement("binance", "BTC/USDT:USDT", T0 + 11, "0.00010000", "87123.45000000", 8),
            Settlement("binance", "BTC/USDT:USDT", T0 + 8 * H + 2, "-0.00002345", None, 8,
                       "archive")]
    funding_repo.store(rows)
    with open_store(db_url) as store:
        df = store.funding("btc/usdt:usdt", start=T0, end=T0 + DAY)
        assert list(df["rate"]) == [0.0001, -0.00002345]
        assert df.index[0].value // 1_000_000 == T0 + 11 and str(df.index.tz) == "UTC"
        exact = store.funding("BTC/USDT:USDT", exact=True)
        assert list(exact["rate"]) == [Decimal("0.00010000"), Decimal("-0.00002345")]
        assert exact["mark_price"].iloc[0] == Decimal("87123.45000000")
        assert exact["mark_price"].iloc[1] is None
        pl_df = store.funding("BTC/USDT:USDT", output="polars", exact=True)
        assert str(pl_df["rate"][1]) == "-0.00002345"
        table = store.funding("BTC/USDT:USDT", output="arrow")
        assert table.column("source").to_pylist() == ["rest", "archive"]
        assert len(store.funding("BTC/USDT:USDT", start=T0 + H)) == 1
        with pytest.raises(ConfigError, match="BTC/USDT is a spot market"):
            store.funding("BTC/USDT")


# --- the CLI, against the simulator and a real database ------------------------------------------
def test_cli_a_spot_or_delivery_symbol_is_a_one_line_error():
    from conftest import run_cli

    r = run_cli("funding", "check", "--symbols", "BTC/USDT:USDT,BTC/USDT")
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: BTC/USDT is a spot market: funding exists for perpetual "
                                "contracts only (e.g. BTC/USDT:USDT)")
    r = run_cli("funding", "backfill", "--symbols", "BTC/USDT:USDT-261225")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: BTC/USDT:USDT-261225 is a delivery contract")
    r = run_cli("funding", "check", "--days", "3", "--start", "2026-01-01",
                "--symbols", "BTC/USDT:USDT")
    assert r.returncode == 2 and r.stderr.strip() == \
        "error: use either days or a start (and an end), not both"


SIM_PERPS = "BTC/USDT:USDT,SOL/USDT:USDT,WLD/USDT:USDT,BTC/USD:BTC"


def test_cli_backfill_check_repair_exit_codes(sim_factory, pg_url):
    import sqlalchemy as sa
    from conftest import run_cli

    from ohlcv_cli.adapters.sql.funding import SqlFundingRepository
    from ohlcv_cli.adapters.sql.schema import make_engine

    probe = sim_factory()
    last_month = _month_before(probe.now_ms(), 1).label
    sim = sim_factory(archive_faults=[f"missing:SOLUSDT:{last_month}"])
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_ARCHIVE_URL": sim.url}
    days = "40"  # the whole last month (from the archive), BTC's 8h -> 4h, WLD's listing
    r = run_cli("funding", "backfill", "--days", days, "--symbols", SIM_PERPS, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "archive months" in r.stdout
    # per family one fundingInfo and one fundingRate per symbol (the current month; SOL's missing
    # month in the same page; WLD since its listing); COIN-M's weigh on its request weight
    assert "6 requests (4 of the 500-per-5-minutes USD-M funding limit)" in r.stdout
    assert "1 months not in the archive (fetched over REST)" in r.stdout
    engine = make_engine(pg_url)
    repo = SqlFundingRepository(engine)
    btc = repo.read("binance", "BTC/USDT:USDT")
    assert {s.interval_hours for s in btc[-6:]} == {4} and btc[0].interval_hours == 8
    assert {s.source for s in btc} == {"archive", "rest"}
    wld = repo.read("binance", "WLD/USDT:USDT")
    assert wld and wld[0].funding_time > sim.now_ms() - 37 * H  # nothing before its listing
    r = run_cli("funding", "check", "--days", days, "--symbols", SIM_PERPS, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "complete: no settlement missing in 4 symbols" in r.stdout

    # lose three settlements: check reports exactly them (exit 1), repair fills them (exit 0)
    lost = [btc[-3], btc[len(btc) // 2]]
    sol = repo.read("binance", "SOL/USDT:USDT")
    lost.append(sol[100])
    with engine.begin() as conn:
        for s in lost:
            conn.execute(sa.text("DELETE FROM funding_rates WHERE symbol = :s AND "
                                 "funding_time = :t"), {"s": s.symbol, "t": repo.ts(s.funding_time)})
    r = run_cli("funding", "check", "--days", days, "--symbols", SIM_PERPS, "--json", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    import json
    out = {x["symbol"]: x["missing"] for x in json.loads(r.stdout)["symbols"]}
    def z(ms):
        from ohlcv_cli.core.timeutil import iso
        return iso(boundary_of(ms)).replace(" ", "T") + "Z"
    assert sorted(out["BTC/USDT:USDT"]) == sorted(z(s.funding_time) for s in lost[:2])
    assert out["SOL/USDT:USDT"] == [z(lost[2].funding_time)]
    assert out["WLD/USDT:USDT"] == [] and out["BTC/USD:BTC"] == []
    r = run_cli("funding", "repair", "--days", days, "--symbols", SIM_PERPS, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 settlements written" in r.stdout
    assert {s.funding_time for s in repo.read("binance", "BTC/USDT:USDT")} == \
        {s.funding_time for s in btc}  # the exact times, as sent
    r = run_cli("funding", "check", "--days", days, "--symbols", SIM_PERPS, env=env)
    assert r.returncode == 0
    engine.dispose()


def test_live_funding_polls_the_next_settlement_where_no_mark_price_stream_runs():
    """A `poll` symbol learns its next settlement from premiumIndex with each confirmation; the
    loop is told when to wake; each settlement is published once, exactly as REST has it."""
    from ohlcv_cli.core.errors import BadSymbol
    from ohlcv_cli.core.feed import MarkPrice
    from ohlcv_cli.services.live_funding import LiveFunding

    sym, clock = "SOL/USDT:USDT", {"ms": T0 + 30 * 60_000}  # SOL settles hourly
    settled = [Settlement("binance", sym, T0 + k * H + 7, "0.00010000", "1.5", None, "stream")
               for k in range(0, 5)]

    class Source:
        asked: list[str] = []
        hidden: set[int] = set()  # settled, not on REST yet
        gone = False

        def history(self, symbol, start, end, source="rest"):
            self.asked.append("fundingRate")
            if self.gone:
                raise BadSymbol(f"binance does not list this symbol: {symbol}")
            yield [s for s in settled if start <= s.funding_time < end and
                   s.funding_time <= clock["ms"] and s.funding_time not in self.hidden]

        def next_settlement(self, symbol):
            self.asked.append("premiumIndex")
            nxt = (clock["ms"] // H + 1) * H
            return MarkPrice(symbol, "0.00010000", nxt, clock["ms"])

    class Sink:
        got: list[Settlement] = []

        def publish_funding(self, rows):
            self.got.extend(rows)
            return len(rows)

    source, sink = Source(), Sink()
    f = LiveFunding(source, sink, [sym], exchange="binance", now_ms=lambda: clock["ms"],
                    catchup_ms=H, grace_ms=1000, poll=[sym], clock=lambda: clock["ms"] / 1000)

    def turn():
        for d in f.due():
            f.take(f.fetch(*d))

    f.start()
    assert f.wake_in() == 0  # the start-up confirmation
    turn()
    assert [s.funding_time for s in sink.got] == [T0 + 7]  # the last hour's, confirmed
    assert f.wake_in() == pytest.approx((T0 + H + 1000 - clock["ms"]) / 1000)
    clock["ms"] = T0 + H + 500  # not yet: the grace has not passed
    assert f.due() == []
    clock["ms"] = T0 + H + 2000
    turn()
    assert [s.funding_time for s in sink.got] == [T0 + 7, T0 + H + 7]
    clock["ms"] = T0 + 2 * H + 2000
    turn()
    turn()  # nothing new: no request
    assert [s.funding_time for s in sink.got] == [T0 + 7, T0 + H + 7, T0 + 2 * H + 7]
    assert source.asked == ["fundingRate", "premiumIndex"] * 3
    # REST does not have the next one yet: asked again 2 s later, without premiumIndex
    source.hidden.add(T0 + 3 * H + 7)
    clock["ms"] = T0 + 3 * H + 2000
    turn()
    assert f.due() == [] and f.wake_in() == pytest.approx(2.0)
    source.hidden.clear()
    clock["ms"] += 2000
    turn()
    assert sink.got[-1].funding_time == T0 + 3 * H + 7
    assert source.asked[6:] == ["fundingRate", "premiumIndex", "fundingRate"]
    # delisted: a warning, and the symbol is no longer followed (nothing raised, no retries)
    source.gone = True
    clock["ms"] = T0 + 4 * H + 2000
    turn()
    assert f.due() == [] and f.wake_in() is None
