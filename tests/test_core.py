"""Pure logic: timeframes, time parsing, symbols, candle validation, settings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ohlcv_cli.core.candle import Candle, validate
from ohlcv_cli.core.errors import BadSymbol, BadTimeframe, ConfigError, InvalidMessage
from ohlcv_cli.core.settings import load_settings, redact_url
from ohlcv_cli.core.symbols import parse_symbols
from ohlcv_cli.core.timeframes import SUPPORTED, parse_timeframe
from ohlcv_cli.core.timeutil import iso, ms_to_dt, parse_iso

MONDAY = parse_iso("2024-01-01")  # a Monday


@given(st.sampled_from(SUPPORTED), st.integers(0, 4_000_000_000_000))
def test_floor_is_aligned_and_contains_the_time(name, t):
    tf = parse_timeframe(name)
    f = tf.floor(t)
    assert f <= t < f + tf.ms
    assert tf.is_aligned(f)
    assert tf.ceil(t) in (f, f + tf.ms)


def test_weeks_open_on_monday():
    tf = parse_timeframe("1w")
    assert tf.floor(MONDAY + 3 * 86_400_000) == MONDAY
    assert ms_to_dt(tf.floor(parse_iso("2024-06-13"))).weekday() == 0


@pytest.mark.parametrize("bad", ["7m", "1M", "", "1min", "60"])
def test_unknown_timeframes_are_rejected(bad):
    with pytest.raises(BadTimeframe, match="unsupported timeframe"):
        parse_timeframe(bad)


def test_iso_parsing_defaults_to_utc_and_rejects_garbage():
    assert parse_iso("2024-01-01") == 1_704_067_200_000
    assert parse_iso("2024-01-01T01:00:00+01:00") == 1_704_067_200_000
    assert iso(1_704_067_200_000) == "2024-01-01 00:00:00"
    with pytest.raises(ConfigError, match="invalid --start"):
        parse_iso("yesterday", "--start")


def test_symbols_are_normalised_and_checked():
    assert parse_symbols(" btc/usdt,ETH/USDT,btc/usdt ") == ["BTC/USDT", "ETH/USDT"]
    assert parse_symbols("btcusdt") == ["BTCUSDT"]  # the exchange's id form, resolved later
    for bad in ("BTC-USDT", "BTC/", "/USDT", "BTC/USDT/X", "bad sym", "(btc"):
        with pytest.raises(BadSymbol, match="malformed symbol"):
            parse_symbols(bad)


GOOD = Candle("binance", "BTC/USDT", "1m", 0, "10.00", "12.50", "9.00", "11.00", "3.5", "38.5",
              7, "1.5", "16.5", "stream")


@pytest.mark.parametrize("change,reason", [
    ({"high": "8.00"}, "high 8.00 < low"),
    ({"volume": "-1"}, "volume is negative"),
    ({"close": "abc"}, "close is not a decimal"),
    ({"close": "NaN"}, "close is not finite"),
    ({"open": 10.0}, "open must be a decimal string"),
    ({"trades": -1}, "trades must be"),
    ({"source": "mystery"}, "unknown source"),
    ({"taker_buy_base_volume": "9"}, "taker_buy_base_volume exceeds"),
    # beyond a float's precision: the tie falls back to exact decimals
    ({"high": "9.000000000000000001", "low": "9.000000000000000002", "open": "9.000000000000000001",
      "close": "9.000000000000000001"}, "high 9.000000000000000001 < low"),
])
def test_validation_names_the_broken_rule(change, reason):
    assert validate(GOOD) is GOOD
    with pytest.raises(InvalidMessage, match=reason):
        validate(GOOD._replace(**change))


def test_settings_read_seed_variables_and_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("SYMBOLS=sol/usdt,xrp/usdt\nBACKFILL_DAYS=3\nPOSTGRES_HOST=db\n"
                                   "POSTGRES_PASSWORD=p@ss:word\n")
    monkeypatch.setenv("REALTIME_DELAY_SECONDS", "2.5")
    s = load_settings()
    assert s.symbols == ("SOL/USDT", "XRP/USDT")
    assert s.backfill_days == 3 and s.realtime_delay_seconds == 2.5
    assert s.db_url() == "postgresql+psycopg://postgres:p%40ss%3Aword@db:5432/postgres"
    assert "p%40ss" not in redact_url(s.db_url()) and "***" in redact_url(s.db_url())
    assert "p@ss" not in repr(s) and "p@ss" not in str(s)
    # flags win over the environment; DATABASE_URL wins over POSTGRES_*
    s = load_settings(backfill_days=9, database_url="postgresql://u:hunter2@h:1/d")
    assert s.backfill_days == 9
    assert s.db_url() == "postgresql+psycopg://u:hunter2@h:1/d"
    assert "hunter2" not in repr(s)


def test_embedded_default_is_sqlite():
    s = load_settings()
    assert s.db_url() == "sqlite:///ohlcv.db" and s.uses_embedded_default()


@pytest.mark.parametrize("field,value,message", [
    ("backfill_days", 0, "BACKFILL_DAYS"),
    ("timeframe", "7m", "unsupported timeframe"),
    ("exchange_url", "ftp://x", "OHLCV_EXCHANGE_URL"),
    ("log_format", "xml", "LOG_FORMAT"),
])
def test_bad_settings_are_one_line_errors(field, value, message):
    with pytest.raises((ConfigError, BadTimeframe), match=message) as info:
        load_settings(**{field: value})
    assert "\n" not in str(info.value)
