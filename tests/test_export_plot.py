"""`ohlcv export`, `ohlcv plot` and `ohlcv status --plot` as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from test_reader import put
from ohlcv_cli.core.timeutil import parse_iso

M, H, D = 60_000, 3_600_000, 86_400_000
T0 = parse_iso("2024-03-01")
FIELDS = ("open", "high", "low", "close", "volume", "quote_volume")


@pytest.fixture
def filled(db_url, sim_factory):
    sim = sim_factory()
    put(db_url, sim, "BTC/USDT", "1m", T0, T0 + D)
    put(db_url, sim, "ETH/USDT", "1m", T0, T0 + D, skip={T0 + 3 * H + 5 * M})
    return db_url, sim


def test_export_parquet_round_trips_exactly_with_a_symbol_column(filled, tmp_path):
    url, sim = filled
    out = tmp_path / "all.parquet"
    r = run_cli("export", "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1m", "--format",
                "parquet", "--out", str(out), "--start", "2024-03-01", "--end", "2024-03-02",
                "--database-url", url)
    assert r.returncode == 0, r.stderr
    assert "exported 2879 1m candles of 2 symbol(s)" in r.stderr
    table = pq.read_table(out)
    assert str(table.schema.field("open").type) == "decimal128(38, 8)"
    assert str(table.schema.field("open_time").type) == "timestamp[ms, tz=UTC]"
    rows = table.to_pylist()
    btc = [x for x in rows if x["symbol"] == "BTC/USDT"]
    want = sim.final_rows("BTC/USDT", "1m", T0, T0 + D)
    assert len(btc) == 1440
    for got, w in zip(btc, want):
        assert int(got["open_time"].timestamp() * 1000) == w[0]
        assert [got[f] for f in FIELDS] == [Decimal(w[i]) for i in (1, 2, 3, 4, 5, 7)]
        assert got["trades"] == w[8]


def test_export_derived_csv_to_stdout_and_jsonl_per_symbol(filled, tmp_path):
    url, sim = filled
    r = run_cli("export", "--symbols", "ETH/USDT", "--timeframe", "1h", "--out", "-",
                "--database-url", url)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    want = [w for w in sim.final_rows("ETH/USDT", "1h", T0, T0 + D) if w[0] != T0 + 3 * H]
    assert len(rows) == 23  # the 03:00 hour has a minute missing: left out, and said so
    assert "warning: ETH/USDT: 1 1h candles left out" in r.stderr
    assert rows[0]["open_time"] == "2024-03-01T00:00:00Z" and rows[0]["symbol"] == "ETH/USDT"
    assert [[row[f] for f in FIELDS] for row in rows] == [
        [w[i] for i in (1, 2, 3, 4, 5, 7)] for w in want]  # the exchange's strings
    r = run_cli("export", "--symbols", "BTC/USDT,ETH/USDT", "-t", "4h", "-f", "jsonl",
                "--per-symbol", "--out", str(tmp_path), "--database-url", url)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "BTC-USDT.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    w = sim.final_rows("BTC/USDT", "4h", T0, T0 + 4 * H)[0]
    assert len(lines) == 6 and "symbol" not in first
    assert first["open"] == w[1] and first["volume"] == w[5] and first["trades"] == w[8]
    assert len((tmp_path / "ETH-USDT.jsonl").read_text().splitlines()) == 5


def test_plot_png_and_html(filled, tmp_path):
    url, _ = filled
    png = tmp_path / "chart.png"
    r = run_cli("plot", "BTC/USDT", "--timeframe", "15m", "--start", "2024-03-01T00:00",
                "--end", "2024-03-01T12:00", "--out", str(png), "--database-url", url)
    assert r.returncode == 0, r.stderr
    assert f"{png}: 48 15m candles of BTC/USDT" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    html = tmp_path / "chart.html"
    r = run_cli("plot", "ETH/USDT", "-t", "1h", "--out", str(html), "--database-url", url)
    assert r.returncode == 0, r.stderr
    text = html.read_text()
    assert text.lstrip().startswith("<html") and "https://cdn" not in text.split("<body>")[0]
    times = set(re.findall(r'"(2024-03-01 \d\d:00:00)"', text))
    assert len(times) == 23 and "2024-03-01 03:00:00" not in times  # the hole stays a hole
    cov = tmp_path / "coverage.png"
    r = run_cli("status", "--plot", str(cov), "--database-url", url)
    assert r.returncode == 0, r.stderr
    assert "coverage of 2 series" in r.stdout and cov.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,message", [
    (["export", "--symbols", "NOPE/USDT", "--out", "-"], "error: no candles stored for NOPE/USDT"),
    (["export", "--symbols", "BTC/USDT", "-t", "1s", "--out", "-"],
     "error: timeframe 1s is neither stored nor derivable"),
    (["export", "--symbols", "BTC/USDT", "--start", "2025-01-01", "--end", "2025-01-02",
      "--out", "-"], "error: no 1m candles of BTC/USDT in the window"),
    (["export", "--symbols", "BTC/USDT", "--out", "/nonexistent/dir/x.csv"],
     "error: cannot write /nonexistent/dir/x.csv: directory /nonexistent/dir does not exist"),
    (["export", "--symbols", "BTC/USDT", "-f", "xlsx", "--out", "x.xlsx"],
     "error: unknown format 'xlsx'"),
    (["plot", "BTC/USDT", "--out", "chart.svg"], "error: cannot draw chart.svg"),
    (["plot", "BTC/USDT", "--start", "2024-03-02", "--end", "2024-03-01", "--out", "c.png"],
     "error: --start 2024-03-02 is not before --end 2024-03-01"),
])
def test_bad_input_is_one_line_and_exit_2(sqlite_url, sim_factory, tmp_path, args, message):
    put(sqlite_url, sim_factory(), "BTC/USDT", "1m", T0, T0 + H)
    r = run_cli(*args, "--database-url", sqlite_url, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), r.stderr
    assert not any(p.suffix in (".csv", ".png") for p in tmp_path.iterdir())
    assert not os.path.exists("/nonexistent/dir")


def _png_height(path) -> int:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[20:24], "big")  # IHDR: width, then height


def test_plot_funding_draws_the_rate_under_the_candles(sqlite_url, sim_factory, tmp_path):
    from ohlcv_cli.adapters.sql.candles import SqlCandleRepository
    from ohlcv_cli.adapters.sql.funding import SqlFundingRepository
    from ohlcv_cli.adapters.sql.schema import make_engine
    from ohlcv_cli.core.candle import from_kline
    from ohlcv_cli.core.funding import Settlement

    sim = sim_factory()
    rows = put(sqlite_url, sim, "BTC/USDT", "1h", T0, T0 + 2 * D)  # the spot market's
    engine = make_engine(sqlite_url)
    for perp in ("BTC/USDT:USDT", "ETH/USDT:USDT"):  # ETH's perpetual: candles, no funding
        SqlCandleRepository(engine).upsert(
            [from_kline(r, exchange="binance", symbol=perp, timeframe="1h", source="backfill")
             for r in rows])
    SqlFundingRepository(engine).store(
        [Settlement("binance", "BTC/USDT:USDT", T0 + i * 8 * H + 7, f"0.000{i}0000", None, 8)
         for i in range(6)])
    engine.dispose()
    url = ("--database-url", sqlite_url)

    plain, png, html = tmp_path / "plain.png", tmp_path / "funding.png", tmp_path / "funding.html"
    r = run_cli("plot", "BTC/USDT:USDT", "--out", str(plain), *url)
    assert r.returncode == 0, r.stderr
    for out in (png, html):
        r = run_cli("plot", "btc/usdt:usdt", "--funding", "--out", str(out), *url)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"{out}: 48 1h candles of BTC/USDT:USDT, 2024-03-01 00:00:00")
        assert r.stderr == ""
    assert _png_height(png) > _png_height(plain) + 100  # a third panel under the volume
    text = html.read_text()
    assert '"name":"funding %"' in text
    assert "2024-03-01 08:00:00.007" in text  # the settlements at their exact times

    # a perpetual without settlements stored, a spot market: one line, exit 2, nothing drawn
    for symbol, message in (
            ("ETH/USDT:USDT", "error: no funding settlements of ETH/USDT:USDT stored in the "
                              "window: ohlcv funding backfill fetches them"),
            ("BTC/USDT", "error: BTC/USDT is a spot market: funding exists for perpetual "
                         "contracts only (e.g. BTC/USDT:USDT)")):
        bad = tmp_path / "bad.png"
        r = run_cli("plot", symbol, "--funding", "--out", str(bad), *url)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == message and r.stdout == ""
        assert not bad.exists()
