"""The read API against real PostgreSQL and SQLite: stored and derived candles equal the
simulator's own candles of every timeframe, incomplete buckets are never produced."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

from ohlcv_cli.adapters.sql.gaps import SqlGapRepository
from ohlcv_cli.core.candle import from_kline
from ohlcv_cli.core.errors import BadSymbol, ConfigError
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import parse_iso
from ohlcv_cli.api.read import open_store

M, H, D = 60_000, 3_600_000, 86_400_000
# Saturday 2024-01-27 .. Tuesday 2024-02-06: two Mondays, a month boundary, 3d buckets
T0 = parse_iso("2024-01-27")
T1 = parse_iso("2024-02-06")
MAINT = (parse_iso("2024-01-30T10:07"), parse_iso("2024-01-30T12:41"))  # 154 minutes
DERIVED = ["3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w"]


def put(url, sim, symbol, tf, start, end, skip=()):
    store_rows = [r for r in sim.final_rows(symbol, tf, start, end) if r[0] not in skip]
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    from ohlcv_cli.adapters.sql.candles import SqlCandleRepository

    SqlCandleRepository(engine).upsert(
        [from_kline(r, exchange="binance", symbol=symbol, timeframe=tf, source="backfill")
         for r in store_rows])
    engine.dispose()
    return store_rows


def exact_rows(df) -> list[list]:
    return [[int(t.value // 1_000_000), *(r[c] for c in
             ("open", "high", "low", "close", "volume", "quote_volume", "trades",
              "taker_buy_base_volume", "taker_buy_quote_volume"))]
            for t, r in df.iterrows()]


def sim_rows(rows) -> list[list]:
    return [[r[0], *(Decimal(x) for x in r[1:6]), Decimal(r[7]), r[8], Decimal(r[9]),
             Decimal(r[10])] for r in rows]


@pytest.fixture
def week(db_url, sim_factory):
    sim = sim_factory(maintenance=[MAINT], zero_volume_share=0.15)
    put(db_url, sim, "BTC/USDT", "1m", T0, T1)
    store = open_store(db_url)
    store.gaps.record_exchange_gaps("binance", "BTC/USDT", "1m", [MAINT])
    yield store, sim
    store.close()


def test_every_derived_timeframe_equals_the_exchange_candles(week):
    store, sim = week
    for name in DERIVED:
        tf = parse_timeframe(name)
        df = store.candles("BTC/USDT", name, T0, T1, exact=True)
        # the exchange's own candles of that interval lying wholly in the stored window
        want = [r for r in sim.final_rows("BTC/USDT", name, T0, T1) if r[0] + tf.ms <= T1]
        assert want, name
        assert exact_rows(df) == sim_rows(want), name
        assert df.attrs["derived_from"] == "1m"
        # a bucket that overlaps the stored window's edge is left out, and said so
        assert all(t.value // 1_000_000 + tf.ms > T1 or t.value // 1_000_000 < T0
                   for t in df.attrs["incomplete"]), name
    # 1w opens on Monday 00:00 UTC; 3d on multiples of three days since the epoch
    # (2024-01-27 is day 19,749 = 3 x 6,583)
    weeks = store.candles("BTC/USDT", "1w", T0, T1)
    assert [t.isoformat() for t in weeks.index] == ["2024-01-29T00:00:00+00:00"]
    days3 = store.candles("BTC/USDT", "3d", T0, T1)
    assert [t.isoformat() for t in days3.index] == [
        "2024-01-27T00:00:00+00:00", "2024-01-30T00:00:00+00:00", "2024-02-02T00:00:00+00:00"]


def test_maintenance_bucket_needs_the_recorded_exchange_gap(db_url, sim_factory):
    sim = sim_factory(maintenance=[MAINT])
    put(db_url, sim, "ETH/USDT", "1m", T0, T0 + 5 * D)
    with open_store(db_url) as store:
        hours = store.candles("ETH/USDT", "1h", T0 + 3 * D, T0 + 4 * D)
        left_out = [t.isoformat() for t in hours.attrs["incomplete"]]
        # 10:00 .. 12:00 hold maintenance minutes; without the record they are not complete
        assert left_out == ["2024-01-30T10:00:00+00:00", "2024-01-30T11:00:00+00:00",
                            "2024-01-30T12:00:00+00:00"]
        assert len(hours) == 21
        store.gaps.record_exchange_gaps("binance", "ETH/USDT", "1m", [MAINT])
        hours = store.candles("ETH/USDT", "1h", T0 + 3 * D, T0 + 4 * D, exact=True)
        # 11:00 lies wholly in the maintenance: the exchange has no such candle either
        assert len(hours) == 23 and hours.attrs["incomplete"] == []
        want = sim.final_rows("ETH/USDT", "1h", T0 + 3 * D, T0 + 4 * D)
        assert exact_rows(hours) == sim_rows(want)


def test_an_incomplete_bucket_is_never_produced(db_url, sim_factory):
    sim = sim_factory()
    missing = T0 + 2 * H + 17 * M
    hole = range(T0 + 5 * H, T0 + 6 * H, M)  # a whole hour missing
    put(db_url, sim, "SOL/USDT", "1m", T0, T0 + 12 * H, skip={missing, *hole})
    with open_store(db_url) as store:
        df = store.candles("SOL/USDT", "1h", T0, T0 + 12 * H)
        opens = [t.value // 1_000_000 for t in df.index]
        assert T0 + 2 * H not in opens and T0 + 5 * H not in opens
        assert len(df) == 10
        assert [t.value // 1_000_000 for t in df.attrs["incomplete"]] == [T0 + 2 * H, T0 + 5 * H]
        # 15m from 1m: only the one bucket around the missing minute is left out
        q = store.candles("SOL/USDT", "15m", T0 + 2 * H, T0 + 3 * H)
        assert len(q) == 3 and q.attrs["incomplete"][0].isoformat() == "2024-01-27T02:15:00+00:00"


def test_1s_derives_1m(db_url, sim_factory):
    sim = sim_factory(maintenance=[(T0 + 90_000, T0 + 150_500)], zero_volume_share=0.1)
    put(db_url, sim, "XRP/USDT", "1s", T0, T0 + 30 * M)
    with open_store(db_url) as store:
        store.gaps.record_exchange_gaps("binance", "XRP/USDT", "1s", [(T0 + 90_000, T0 + 151_000)])
        df = store.candles("XRP/USDT", "1m", T0, T0 + 30 * M, exact=True)
        assert exact_rows(df) == sim_rows(sim.final_rows("XRP/USDT", "1m", T0, T0 + 30 * M))
        assert len(df) == 30


def test_native_frames_float_exact_chunks_and_polars(db_url, sim_factory):
    sim = sim_factory()
    rows = put(db_url, sim, "BNB/USDT", "1m", T0, T0 + D)
    with open_store(db_url) as store:
        df = store.candles("BNB/USDT", "1m", "2024-01-27", "2024-01-28")
        assert len(df) == 1440 and str(df.index.tz) == "UTC" and df.index.name == "open_time"
        assert df["close"].dtype == "float64" and df["trades"].dtype == "int64"
        assert df["close"].iloc[5] == float(rows[5][4])
        exact = store.candles("BNB/USDT", "1m", exact=True)  # default window: all stored
        assert len(exact) == 1440 and exact["volume"].iloc[7] == Decimal(rows[7][5])
        assert str(exact["volume"].iloc[7]) == rows[7][5]  # the exchange's string, scale kept
        chunks = list(store.iter_candles("BNB/USDT", "1m", T0, T0 + D, chunk_rows=500))
        assert [len(c) for c in chunks] == [500, 500, 440]
        pd.testing.assert_frame_equal(pd.concat(chunks), df)
        pl = store.candles("BNB/USDT", "1m", T0, T0 + 60 * M, output="polars")
        assert pl.height == 60 and pl["open_time"][0].isoformat().startswith("2024-01-27T00:00")
        hours = list(store.iter_candles("BNB/USDT", "1h", T0, T0 + D, chunk_rows=10))
        assert [len(c) for c in hours] == [10, 10, 4]


def test_bad_reads_are_clear(db_url, sim_factory):
    sim = sim_factory()
    put(db_url, sim, "LTC/USDT", "3m", T0, T0 + H)
    with open_store(db_url) as store:
        with pytest.raises(BadSymbol, match="no candles stored for NOPE/USDT"):
            store.candles("NOPE/USDT", "1m")
        with pytest.raises(ConfigError, match="timeframe 5m is neither stored nor derivable"):
            store.candles("LTC/USDT", "5m")
        with pytest.raises(ConfigError, match="empty window"):
            store.candles("LTC/USDT", "3m", "2024-02-01", "2024-01-01")
        assert store.candles("LTC/USDT", "15m", T0, T0 + H).shape[0] == 4  # 15m from 3m


def test_sql_users_get_the_same_from_the_function(pg_url, sim_factory):
    sim = sim_factory(maintenance=[MAINT])
    put(pg_url, sim, "ADA/USDT", "1m", T0, T1)
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    SqlGapRepository(engine).record_exchange_gaps("binance", "ADA/USDT", "1m", [MAINT])
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT open_time, open, high, low, close, volume FROM ohlcv_derived_candles("
            "'binance', 'ADA/USDT', '4h', '1m', '2024-01-27', '2024-02-06')")).all()
        partial = conn.execute(sa.text(
            "SELECT count(*) FROM ohlcv_derived_candles('binance', 'ADA/USDT', '1w', '1m',"
            " '2024-01-22', '2024-02-12', true) WHERE NOT complete")).scalar()
    engine.dispose()
    want = sim.final_rows("ADA/USDT", "4h", T0, T1)
    assert len(rows) == len(want) == 60
    assert [[int(r[0].timestamp() * 1000), *r[1:]] for r in rows] == [
        [w[0], *(Decimal(x) for x in w[1:6])] for w in want]
    assert partial == 2  # the weeks of 2024-01-22 and 2024-02-05 are only partly stored


def test_the_readme_example_runs(tmp_path, sim_factory):
    """The "Reading the store / From Python" block of README.md, against a SQLite store."""
    import re
    from pathlib import Path

    from ohlcv_cli.adapters.sql.schema import make_engine, upgrade

    url = "sqlite:///ohlcv.db"  # the example's store, in the test's working directory
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    put(url, sim_factory(), "BTC/USDT", "1m", parse_iso("2024-03-01"), parse_iso("2024-03-03"))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "btc.parquet").stat().st_size > 0
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_derivation_rules():
    from ohlcv_cli.core.derive import derivable_from, pick_bases

    names = lambda tf: [t.name for t in derivable_from(parse_timeframe(tf))]  # noqa: E731
    assert names("5m") == ["1s", "1m"]
    assert "3d" not in names("1w") and names("1w")[-3:] == ["8h", "12h", "1d"]
    assert names("3d") == ["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h",
                           "12h", "1d"]
    names_of = lambda r: (r[0], [t.name for t in r[1]])  # noqa: E731
    # stored: read as is, its holes filled from finer bases
    assert names_of(pick_bases(parse_timeframe("1h"), ["1h", "1m"])) == (True, ["1m"])
    assert names_of(pick_bases(parse_timeframe("1h"), ["1h", "1d"])) == (True, [])
    # finest first
    assert names_of(pick_bases(parse_timeframe("4h"), ["1h", "1m", "1s"])) == (
        False, ["1s", "1m", "1h"])
    with pytest.raises(ConfigError, match="it can be derived from 1s, 1m"):
        pick_bases(parse_timeframe("5m"), ["3m"])
