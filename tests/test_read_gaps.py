"""Reads that answer from what is stored, or say why not (issue 17): mixed stores (1m history
and a recent stretch of 1s), symbols without a candle in the window, the bucket still open."""

from __future__ import annotations

import json
import time

import pytest

from conftest import run_cli
from test_reader import exact_rows, put, sim_rows
from ohlcv_cli.api.read import open_store
from ohlcv_cli.core.timeutil import parse_iso

S, M, H, D = 1000, 60_000, 3_600_000, 86_400_000
T0 = parse_iso("2026-11-18")


@pytest.fixture
def mixed(db_url, sim_factory):
    """Three days of 1m history of BTC/USDT and LTC/USDT, then ten minutes of live 1s of
    BTC/USDT overlapping the last 1m candles, then an hour and a half of 1s only."""
    sim = sim_factory()
    end_1m = T0 + 3 * D
    put(db_url, sim, "BTC/USDT", "1m", T0, end_1m)
    put(db_url, sim, "LTC/USDT", "1m", T0, end_1m)
    put(db_url, sim, "BTC/USDT", "1s", end_1m - 10 * M, end_1m + 90 * M)
    return db_url, sim, end_1m


def test_a_mixed_store_gives_every_complete_bucket(mixed):
    url, sim, end_1m = mixed
    with open_store(url) as store:
        hours = store.candles("BTC/USDT", "1h", T0, end_1m + 2 * H, exact=True)
        # 72 hours from 1m; the hour after it from 1s alone; the hour after that is half stored
        assert len(hours) == 73
        assert exact_rows(hours) == sim_rows(sim.final_rows("BTC/USDT", "1h", T0, end_1m + H))
        assert hours.attrs["derived_from"] == "1s,1m"
        assert [t.value // 1_000_000 for t in hours.attrs["incomplete"]] == [end_1m + H]
        # the README's case: only the 1m history in the window
        days = store.candles("BTC/USDT", "1h", T0, end_1m)
        assert len(days) == 72 and days.attrs["derived_from"] == "1m"
        # a stored timeframe is read as stored, and continued from a finer base
        minutes = store.candles("BTC/USDT", "1m", end_1m - H, end_1m + H, exact=True)
        assert exact_rows(minutes) == sim_rows(
            sim.final_rows("BTC/USDT", "1m", end_1m - H, end_1m + H))
        assert minutes.attrs["derived_from"] == "1s" and minutes.attrs["incomplete"] == []
        # the default window reaches the newest candle of any base
        assert store.window("BTC/USDT", "1h").end == end_1m + 90 * M


def test_a_read_without_candles_says_why(mixed):
    url, _, end_1m = mixed
    with open_store(url) as store:
        df = store.candles("LTC/USDT", "1h", end_1m, end_1m + D)
        assert df.empty
        assert df.attrs["empty"] == (
            "no 1h candles of LTC/USDT between 2026-11-21 00:00:00 and 2026-11-22 00:00:00:"
            " stored 1m from 2026-11-18 00:00:00 to 2026-11-21 00:00:00")
        result = store.export(["BTC/USDT", "LTC/USDT"], "1h", end_1m, end_1m + 2 * H,
                              format="csv", out="x.csv")
        assert result.rows == 1 and list(result.empty) == ["LTC/USDT"]
        assert result.incomplete == {"BTC/USDT": [end_1m + H]}


def test_export_and_plot_of_a_mixed_store(mixed, tmp_path):
    url, sim, end_1m = mixed
    out = tmp_path / "h.csv"
    r = run_cli("export", "--timeframe", "1h", "--symbols", "BTC/USDT,LTC/USDT", "--start",
                "2026-11-18", "--end", "2026-11-21", "--out", str(out), "--database-url", url)
    assert r.returncode == 0, r.stderr
    assert "exported 144 1h candles of 2 symbol(s)" in r.stderr
    assert "warning" not in r.stderr
    png = tmp_path / "c.png"
    r = run_cli("plot", "BTC/USDT", "--timeframe", "1h", "--start", "2026-11-18", "--end",
                "2026-11-21", "--out", str(png), "--database-url", url)
    assert r.returncode == 0, r.stderr
    assert f"{png}: 72 1h candles of BTC/USDT" in r.stdout
    # everything stored (right after `make demo`): the 1m history and the 1s stretch
    r = run_cli("plot", "BTC/USDT", "--out", str(png), "--database-url", url)
    assert r.returncode == 0, r.stderr
    assert f"{png}: 73 1h candles of BTC/USDT, 2026-11-18 00:00:00 to 2026-11-21 01:30:00" in (
        r.stdout), r.stdout


def test_a_symbol_without_candles_is_named_once(mixed, tmp_path):
    url, _, end_1m = mixed
    out = tmp_path / "h.csv"
    r = run_cli("export", "-t", "1h", "--symbols", "BTC/USDT,LTC/USDT", "--start",
                "2026-11-21T00:00", "--end", "2026-11-21T02:00", "--out", str(out),
                "--database-url", url)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    warnings = [ln for ln in lines if ln.startswith("warning:")]
    assert warnings == [
        "warning: LTC/USDT: no 1h candles of LTC/USDT between 2026-11-21 00:00:00 and "
        "2026-11-21 02:00:00: stored 1m from 2026-11-18 00:00:00 to 2026-11-21 00:00:00",
        "warning: BTC/USDT: 1 1h candles left out, their base candles are not all stored"
        " (first 2026-11-21 01:00:00); `ohlcv gaps check` tells which",
    ], r.stderr
    assert sum("left out" in ln for ln in lines) == 1, r.stderr
    assert "exported 1 1h candles of 1 symbol(s)" in r.stderr
    # nothing at all: one error line naming the symbols, exit 2, no file
    r = run_cli("export", "-t", "1h", "--symbols", "LTC/USDT", "--start", "2026-11-22",
                "--out", str(tmp_path / "none.csv"), "--database-url", url)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: no 1h candles of LTC/USDT in the window: nothing exported"]
    assert not (tmp_path / "none.csv").exists()
    r = run_cli("plot", "LTC/USDT", "--start", "2026-11-22", "--end", "2026-11-23", "--out",
                str(tmp_path / "p.png"), "--database-url", url)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: no 1h candles of LTC/USDT between 2026-11-22 00:00:00 and"
        " 2026-11-23 00:00:00: stored 1m from 2026-11-18 00:00:00 to 2026-11-21 00:00:00"]
    assert not (tmp_path / "p.png").exists()


def test_the_bucket_still_open_is_not_incomplete(db_url, sim_factory):
    sim = sim_factory()
    now = time.time() * 1000
    if now % H < 2 * M:  # the open hour must hold a closed minute: wait for one
        time.sleep((2 * M - now % H) / 1000 + 0.5)
        now = time.time() * 1000
    hour = int(now // H * H)
    # from an hour boundary three hours back to the last closed minute
    put(db_url, sim, "BTC/USDT", "1m", hour - 3 * H, int(now // M * M))
    r = run_cli("export", "--days", "1", "-t", "1h", "--symbols", "BTC/USDT", "--out", "-",
                "--database-url", db_url)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr and "left out" not in r.stderr, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1 + 3  # header and three closed hours
    with open_store(db_url) as store:
        df = store.candles("BTC/USDT", "1h", hour - 3 * H, hour + H)
        assert len(df) == 3 and df.attrs["incomplete"] == []
        store.clock = lambda: (hour + 2 * H) / 1000  # two hours later: it was left out
        df = store.candles("BTC/USDT", "1h", hour - 3 * H, hour + H)
        assert [t.value // 1_000_000 for t in df.attrs["incomplete"]] == [hour]


def test_an_incomplete_warning_is_printed_once(db_url, sim_factory):
    sim = sim_factory()
    put(db_url, sim, "ETH/USDT", "1m", T0, T0 + 6 * H, skip={T0 + 2 * H + 5 * M})
    r = run_cli("export", "-t", "1h", "--symbols", "ETH/USDT", "--out", "-", "--database-url",
                db_url)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("left out") == 1, r.stderr


# --- export: formats from the extension, floats, freqtrade's layout ----------------------------
@pytest.fixture
def day(db_url, sim_factory):
    sim = sim_factory()
    put(db_url, sim, "BTC/USDT", "1m", T0, T0 + D)
    put(db_url, sim, "ETH/USDT", "1m", T0, T0 + 6 * H)
    return db_url, sim


def export(url, *args):
    return run_cli("export", "--symbols", "BTC/USDT", "--start", "2026-11-18", "--end",
                   "2026-11-18T06:00", "--database-url", url, *args)


def test_the_format_follows_the_extension(day, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    url, sim = day
    r = export(url, "--out", str(tmp_path / "x.parquet"))
    assert r.returncode == 0, r.stderr
    table = pq.read_table(tmp_path / "x.parquet")
    assert table.num_rows == 360 and str(table.schema.field("open").type) == "decimal128(38, 8)"
    r = export(url, "--out", str(tmp_path / "x.feather"))
    assert r.returncode == 0, r.stderr
    df = pd.read_feather(tmp_path / "x.feather")
    assert len(df) == 360 and list(df.columns)[:3] == ["symbol", "open_time", "open"]
    r = export(url, "--out", str(tmp_path / "x.jsonl"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.jsonl").read_text().startswith('{"symbol":"BTC/USDT"')
    r = export(url, "--out", str(tmp_path / "x.CSV"))
    assert r.returncode == 0 and (tmp_path / "x.CSV").read_text().startswith('"symbol"')
    # --format wins over the extension
    r = export(url, "--out", str(tmp_path / "y.parquet"), "--format", "csv")
    assert r.returncode == 0 and (tmp_path / "y.parquet").read_text().startswith('"symbol"')
    # an extension that names no format: one line, exit 2, no file
    r = export(url, "--out", str(tmp_path / "x.xlsx"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: cannot tell the format of {tmp_path / 'x.xlsx'} from its extension .xlsx:"
        " name it .csv, .parquet, .jsonl, .feather, or give --format"]
    assert not (tmp_path / "x.xlsx").exists()
    r = export(url, "--format", "feather", "--out", "-")
    assert r.returncode == 2
    assert r.stderr.strip() == "error: feather is not written to stdout: give --out FILE"
    # the Python API: the same rule, the same default
    with open_store(url) as store:
        store.export("BTC/USDT", "1h", T0, T0 + D, out=str(tmp_path / "api.parquet"))
        assert pq.read_table(tmp_path / "api.parquet").num_rows == 24
        store.export(["BTC/USDT"], "1h", T0, T0 + D, out=str(tmp_path), per_symbol=True)
        assert (tmp_path / "BTC-USDT.csv").read_text().startswith('"open_time"')


def test_decimals_float(day, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    url, sim = day
    want = sim.final_rows("BTC/USDT", "1m", T0, T0 + 6 * H)
    r = export(url, "--out", str(tmp_path / "f.parquet"), "--decimals", "float")
    assert r.returncode == 0, r.stderr
    df = pq.read_table(tmp_path / "f.parquet").to_pandas()
    assert all(df[c].dtype == "float64" for c in ("open", "high", "low", "close", "volume"))
    assert df["close"].tolist() == [float(w[4]) for w in want]
    r = export(url, "--out", str(tmp_path / "f.feather"), "--decimals", "float")
    assert pd.read_feather(tmp_path / "f.feather")["volume"].dtype == "float64"
    r = export(url, "--out", str(tmp_path / "f.jsonl"), "--decimals", "float")
    first = json.loads((tmp_path / "f.jsonl").read_text().splitlines()[0])
    assert first["open"] == float(want[0][1]) and isinstance(first["open"], float)
    # exact stays the default: decimal128
    r = export(url, "--out", str(tmp_path / "e.feather"))
    assert str(pd.read_feather(tmp_path / "e.feather", dtype_backend="pyarrow")["open"].dtype
               ).startswith("decimal128(38, 8)")
    r = export(url, "--out", str(tmp_path / "b.parquet"), "--decimals", "double")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown decimals 'double'")


def _freqtrade_export(url, out):
    return run_cli("export", "--layout", "freqtrade", "--symbols", "BTC/USDT,ETH/USDT", "-t",
                   "5m", "--start", "2026-11-18", "--end", "2026-11-19", "--out", str(out),
                   "--database-url", url)


def test_freqtrade_layout_read_back_as_freqtrade_loads_it(day, tmp_path):
    import pandas as pd

    url, sim = day
    r = _freqtrade_export(url, tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "binance").iterdir()) == [
        "BTC_USDT-5m.feather", "ETH_USDT-5m.feather"]
    # what freqtrade's FeatherDataHandler._ohlcv_load does
    columns = ["date", "open", "high", "low", "close", "volume"]
    raw = pd.read_feather(tmp_path / "binance" / "BTC_USDT-5m.feather")
    assert list(raw.columns) == columns
    assert str(raw["date"].dtype) in ("datetime64[ms, UTC]", "datetime64[ns, UTC]")
    assert all(raw[c].dtype == "float64" for c in columns[1:])
    pairdata = raw.copy()
    pairdata.columns = columns
    pairdata = pairdata.astype(dtype={c: "float" for c in columns[1:]})
    pairdata["date"] = pd.to_datetime(pairdata["date"], unit="ms", utc=True)
    want = sim.final_rows("BTC/USDT", "5m", T0, T0 + D)
    assert len(pairdata) == 288 and pairdata["date"].is_monotonic_increasing
    assert [int(t.timestamp() * 1000) for t in pairdata["date"]] == [w[0] for w in want]
    assert pairdata[columns[1:]].values.tolist() == [
        [float(x) for x in w[1:6]] for w in want]
    assert len(pd.read_feather(tmp_path / "binance" / "ETH_USDT-5m.feather")) == 72
    # a pair without candles in the window is named, and gets no file
    r = run_cli("export", "--layout", "freqtrade", "--symbols", "BTC/USDT,ETH/USDT", "-t", "1h",
                "--start", "2026-11-18T12:00", "--end", "2026-11-19", "--out", str(tmp_path),
                "--database-url", url)
    assert r.returncode == 0, r.stderr
    assert "warning: ETH/USDT: no 1h candles of ETH/USDT" in r.stderr
    assert "exported 12 1h candles of 1 symbol(s)" in r.stderr
    assert not (tmp_path / "binance" / "ETH_USDT-1h.feather").exists()
    assert len(pd.read_feather(tmp_path / "binance" / "BTC_USDT-1h.feather")) == 12
    # not a directory: one line, exit 2
    r = _freqtrade_export(url, tmp_path / "nope")
    assert r.returncode == 2 and r.stderr.startswith("error: --layout freqtrade needs --out")


def test_freqtrade_own_loader_reads_the_layout(day, tmp_path):
    history = pytest.importorskip("freqtrade.data.history")
    from freqtrade.enums import CandleType

    url, sim = day
    r = _freqtrade_export(url, tmp_path)
    assert r.returncode == 0, r.stderr
    df = history.load_pair_history("BTC/USDT", "5m", tmp_path / "binance", data_format="feather",
                                   fill_up_missing=False, candle_type=CandleType.SPOT)
    want = sim.final_rows("BTC/USDT", "5m", T0, T0 + D)
    assert len(df) == 288 and str(df["date"].dt.tz) == "UTC"
    assert df["close"].tolist() == [float(w[4]) for w in want]
    assert int(df["date"].iloc[0].timestamp() * 1000) == T0


def test_coverage_and_status_count_the_same_series(db_url, sim_factory):
    """One loop for `ohlcv status` and `Store.coverage` (issue 16): the same series, bounds and
    exchange gaps."""
    from ohlcv_cli import api

    sim = sim_factory()
    put(db_url, sim, "BTC/USDT", "1m", T0, T0 + 6 * H)
    put(db_url, sim, "BTC/USDT", "1s", T0, T0 + 10 * M)
    with open_store(db_url) as store:
        store.gaps.record_exchange_gaps("binance", "BTC/USDT", "1m", [(T0 + H, T0 + H + 5 * M)])
        cov = {(c["symbol"], c["timeframe"]): c for c in store.coverage()}
    report = api.status(database_url=db_url)
    rows = {(r.symbol, r.timeframe): r for r in report.series}
    assert sorted(cov) == sorted(rows) == [("BTC/USDT", "1m"), ("BTC/USDT", "1s")]
    for key, r in rows.items():
        assert (cov[key]["start"], cov[key]["end"]) == (r.first, r.end)
        assert cov[key]["exchange_gaps"] == r.exchange_gaps
    assert rows["BTC/USDT", "1m"].exchange_gaps == [(T0 + H, T0 + H + 5 * M)]


def test_which_source_gives_which_bucket():
    from ohlcv_cli.core.derive import choose, settled_before
    from ohlcv_cli.core.timeframes import parse_timeframe as tf

    # the stored candle first, then the finest base, then a coarser one
    assert choose([("1h", [0, H]), ("1s", [H, 2 * H]), ("1m", [0, 2 * H, 3 * H])]) == {
        "1h": {0, H}, "1s": {2 * H}, "1m": {3 * H}}
    # a 1h bucket from 1m is settled once its last minute has had a minute and a second
    assert settled_before(tf("1h"), [tf("1m")], 5 * H + M + S) == 5 * H
    assert settled_before(tf("1h"), [tf("1m")], 5 * H + M) == 4 * H
    assert settled_before(tf("1d"), [tf("1s"), tf("1h")], 2 * D + H + S) == 2 * D
