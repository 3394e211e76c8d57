"""The repository on real PostgreSQL and SQLite, migrated by the same code as `ohlcv db upgrade`."""

from __future__ import annotations

import pytest

from ohlcv_cli.adapters.sql.schema import current_revision, ensure_current, head_revision, make_engine
from ohlcv_cli.core.candle import from_kline
from ohlcv_cli.core.errors import ConfigError, SchemaOutOfDate, StorageError
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import parse_iso

M1 = parse_timeframe("1m")
T0 = parse_iso("2024-05-01")


def candles(sim, symbol="BTC/USDT", start=T0, n=3000, source="backfill"):
    return [from_kline(r, exchange="binance", symbol=symbol, timeframe="1m", source=source)
            for r in sim.final_rows(symbol, "1m", start, start + n * 60_000)]


def test_upsert_is_exact_and_idempotent(db_url, repo_for, sim_factory):
    sim = sim_factory(zero_volume_share=0.05)
    repo = repo_for(db_url)
    batch = candles(sim)
    assert repo.upsert(batch) == 3000
    assert repo.upsert(batch) == 0  # nothing differs: nothing written
    assert repo.candles("binance", "BTC/USDT", "1m") == batch  # every field, exact decimal strings
    assert any(c.volume == "0.00000000" for c in batch)


def test_duplicates_in_one_batch_and_changed_values(db_url, repo_for, sim):
    repo = repo_for(db_url)
    batch = candles(sim, n=10)
    changed = batch[3]._replace(close="1.23400000", source="repair")
    assert repo.upsert(batch + [batch[3], changed]) == 10  # last one wins, one row per key
    stored = repo.candles("binance", "BTC/USDT", "1m")
    assert stored[3] == changed and len(stored) == 10
    assert repo.upsert(batch) == 1  # only the row whose values differ is rewritten
    assert repo.candles("binance", "BTC/USDT", "1m") == batch


def test_missing_ranges(db_url, repo_for, sim):
    repo = repo_for(db_url)
    batch = candles(sim, n=100)
    keep = batch[5:20] + batch[21:22] + batch[40:90]
    repo.upsert(keep)
    end = T0 + 100 * 60_000
    m = 60_000
    assert repo.missing_ranges("binance", "BTC/USDT", M1, T0, end) == [
        (T0, T0 + 5 * m), (T0 + 20 * m, T0 + 21 * m), (T0 + 22 * m, T0 + 40 * m), (T0 + 90 * m, end)]
    assert repo.missing_ranges("binance", "ETH/USDT", M1, T0, end) == [(T0, end)]
    assert repo.missing_ranges("binance", "BTC/USDT", M1, T0 + 40 * m, T0 + 90 * m) == []
    assert repo.latest_open_time("binance", "BTC/USDT", "1m") == T0 + 89 * m


def test_schema_check_names_the_command(tmp_path, pg_cluster):
    engine = make_engine(pg_cluster.create_database("empty_schema"))
    with pytest.raises(SchemaOutOfDate, match=r"run `ohlcv db upgrade`"):
        ensure_current(engine)
    assert current_revision(engine) is None
    ensure_current(engine, auto_upgrade=True)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_bad_urls_are_clear_errors():
    with pytest.raises(ConfigError, match="invalid database URL"):
        make_engine("nosuchdb://x/y")
    engine = make_engine("postgresql+psycopg://u:topsecret@127.0.0.1:9/db")
    with pytest.raises(StorageError) as info:
        current_revision(engine)
    assert "topsecret" not in str(info.value) and "127.0.0.1:9" in str(info.value)
