"""The archive source end to end: the simulator's data.binance.vision and REST over HTTP, real
PostgreSQL and SQLite, the real `ohlcv` process; the planner as pure logic."""

from __future__ import annotations

import copy
import io
import zipfile
from dataclasses import replace

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli
from ohlcv_cli.adapters.binance.archive import BinanceArchive, inflate_member
from ohlcv_cli.core.archive import (
    DAY_MS, ArchiveMissing, ArchiveRejected, Period, next_month, plan,
)
from ohlcv_cli.core.ranges import merge
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import parse_iso
from ohlcv_sim.engine import default_symbols

M = 60_000
H = 3_600_000
M1 = parse_timeframe("1m")
NOW = parse_iso("2026-12-01T07:50")


def as_rows(stored, tf_ms=M):
    return [[c.open_time, c.open, c.high, c.low, c.close, c.volume, c.open_time + tf_ms - 1,
             c.quote_volume, c.trades, c.taker_buy_base_volume, c.taker_buy_quote_volume, "0"]
            for c in stored]


def env_for(db, sim, **more):
    return {"DATABASE_URL": db, "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_ARCHIVE_URL": sim.url,
            "REALTIME_DELAY_SECONDS": "0.2", **more}


def cells(stdout: str, symbol: str) -> list[str]:
    line = next(ln for ln in stdout.splitlines() if f" {symbol} " in ln and "│" in ln)
    return [c.strip() for c in line.split("│")[1:-1]]


def sources(repo, symbol, tf="1m"):
    return {c.open_time: c.source for c in repo.candles("binance", symbol, tf)}


# --- the planner (pure) -----------------------------------------------------------------------
def test_plan_takes_ended_months_then_whole_days_and_leaves_the_rest_to_rest():
    a, b = parse_iso("2024-10-15T05:00"), parse_iso("2025-02-10T07:00")
    periods, rest = plan(parse_timeframe("1h"), [(a, b)], NOW)
    labels = [(p.kind, p.label) for p in periods]
    assert labels[:17] == [("daily", f"2024-10-{d}") for d in range(16, 32)] + [("monthly", "2024-11")]
    assert labels[17:19] == [("monthly", "2024-12"), ("monthly", "2025-01")]
    assert labels[19:] == [("daily", f"2025-02-{d:02d}") for d in range(1, 10)]
    assert rest == [(a, parse_iso("2024-10-16")), (parse_iso("2025-02-10"), b)]


def test_plan_never_asks_for_today_nor_this_month_and_skips_odd_timeframes():
    today = NOW // DAY_MS * DAY_MS
    periods, rest = plan(M1, [(parse_iso("2026-11-01"), NOW)], NOW)
    assert periods == [Period("monthly", parse_iso("2026-11-01"), today)]  # Nov has ended
    assert rest == [(today, NOW)]
    periods, rest = plan(M1, [(parse_iso("2026-11-20"), NOW)], NOW)
    assert periods[-1].end == today and all(p.kind == "daily" for p in periods)
    week = parse_timeframe("1w")
    assert plan(week, [(parse_iso("2024-01-01"), parse_iso("2024-06-03"))], NOW)[0] == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 800), st.integers(1, 300)), max_size=5))
def test_plan_covers_every_missing_candle_exactly_once(spans):
    base = parse_iso("2024-06-01")
    missing = merge((base + s * H, base + (s + n) * H) for s, n in spans)
    periods, rest = plan(parse_timeframe("1h"), missing, NOW)
    pieces = sorted([(p.start, p.end) for p in periods] + rest)
    for (a0, a1), (b0, b1) in zip(pieces, pieces[1:]):
        assert a1 <= b0  # no overlap
    assert merge(pieces) == missing  # no gap
    for p in periods:
        assert p.start % DAY_MS == 0 and (p.kind == "daily") == (p.end - p.start == DAY_MS)
        if p.kind == "monthly":
            assert p.end == next_month(p.start) and p.label == f"{p.label[:4]}-{p.label[5:7]}"


# --- the zip member reader (pure) --------------------------------------------------------------
def _zip(data: bytes, method: int) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        z.writestr("BTCUSDT-1m-2024-03.csv", data)
    return buf


def test_inflate_member_gives_the_members_bytes_and_rejects_a_bad_crc():
    data = b"".join(b"%d,1.0,2.0,0.5,1.5,10.0,%d,15.0,3,1.0,1.5,0\n" % (t, t + 59_999)
                    for t in range(0, 200_000 * M, M))  # several read blocks
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        buf = _zip(data, method)
        info = zipfile.ZipFile(buf).infolist()[0]
        blocks = list(inflate_member(buf, info))
        assert b"".join(blocks) == data and max(map(len, blocks)) <= 1 << 20
        bad = copy.copy(info)
        bad.CRC ^= 1
        with pytest.raises(ArchiveRejected, match="CRC-32"):
            list(inflate_member(buf, bad))
    raw = bytearray(_zip(data, zipfile.ZIP_DEFLATED).getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).infolist()[0]
    raw[200:260] = bytes(60)  # damage the deflate stream itself
    with pytest.raises(ArchiveRejected):
        list(inflate_member(io.BytesIO(bytes(raw)), info))


# --- the adapter against the simulator's archive ----------------------------------------------
def test_archive_reads_ms_and_us_files_with_or_without_a_header(sim_factory):
    sim = sim_factory(archive_faults=["header:BTCUSDT:2025-01-01"])
    archive = BinanceArchive(sim.url)
    for day, divisor, header in (("2024-12-31", 1, False), ("2025-01-01", 1000, True)):
        start = parse_iso(day)
        f = archive.fetch("BTCUSDT", "1m", Period("daily", start, start + DAY_MS))
        assert (f.time_divisor, f.header) == (divisor, header)
        rows = list(f.rows())
        f.close()
        want = sim.final_rows("BTC/USDT", "1m", start, start + DAY_MS)
        assert [r[0] for r in rows] == [w[0] for w in want] == list(range(start, start + DAY_MS, M))
        assert [r[1:6] + r[7:8] + r[9:11] for r in rows] == [w[1:6] + w[7:8] + w[9:11] for w in want]
    assert archive.stats()["downloads"] == 2


def test_rows_of_a_window_equal_the_slice_of_all_rows_across_read_blocks(sim_factory):
    """A month's file spans several of the reader's 1 MiB blocks: a window read (the spot-check's
    way, skipping blocks before it) gives exactly the rows a full read has there."""
    sim = sim_factory(archive_faults=["header:BTCUSDT:2025-02"])
    archive = BinanceArchive(sim.url)
    for month, nxt in (("2024-02-01", "2024-03-01"), ("2025-02-01", "2025-03-01")):  # ms; µs+header
        f = archive.fetch("BTCUSDT", "1m", Period("monthly", parse_iso(month), parse_iso(nxt)))
        everything = list(f.rows())
        assert len(everything) == (parse_iso(nxt) - parse_iso(month)) // M
        start = parse_iso(month)
        for a, n in ((0, 1000), (7000, 1000), (15_000, 3000), (len(everything) - 1000, 1000),
                     (len(everything) - 10, 50)):
            lo, hi = start + a * M, start + (a + n) * M
            assert list(f.rows(lo, hi)) == everything[a:a + n]
        f.close()


def test_a_file_whose_period_already_holds_rows_is_upserted_and_leaves_equal_rows_alone(
        pg_url, repo_for, sim):
    """The fast path (a plain INSERT) is only for an empty period: rows already there (a stream,
    a concurrent run) take the repository's upsert rule; identical rows are not rewritten."""
    from ohlcv_cli.adapters.sql.archive import SqlArchiveWriter
    from ohlcv_cli.adapters.sql.schema import make_engine
    from ohlcv_cli.core.candle import Candle

    day = parse_iso("2024-03-05")
    want = sim.final_rows("BTC/USDT", "1m", day, day + DAY_MS)
    repo = repo_for(pg_url)
    some = [Candle("binance", "BTC/USDT", "1m", w[0], w[1], w[2], w[3], w[4], w[5], w[7], w[8],
                   w[9], w[10], "stream") for w in want[100:130]]
    repo.upsert(some)
    f = BinanceArchive(sim.url).fetch("BTCUSDT", "1m", Period("daily", day, day + DAY_MS))
    engine = make_engine(pg_url)
    try:
        written = SqlArchiveWriter(engine).write_archive(f, "binance", "BTC/USDT", M1)
    finally:
        f.close()
        engine.dispose()
    assert written == 1440 - 30
    assert as_rows(repo.candles("binance", "BTC/USDT", "1m")) == want
    src = sources(repo, "BTC/USDT")
    assert {src[w[0]] for w in want[100:130]} == {"stream"}
    assert {src[w[0]] for w in want[:100] + want[130:]} == {"archive"}


def test_archive_rejects_a_corrupt_file_after_a_second_download_and_404s_unpublished(sim_factory):
    sim = sim_factory(archive_faults=["corrupt:ETHUSDT:2024-03"])
    archive = BinanceArchive(sim.url)
    march = Period("monthly", parse_iso("2024-03-01"), parse_iso("2024-04-01"))
    with pytest.raises(ArchiveRejected, match="does not match its CHECKSUM"):
        archive.fetch("ETHUSDT", "1m", march)
    assert sim.stats()["archive_downloads"] == 2
    today = sim.now_ms() // DAY_MS * DAY_MS
    for p in (Period("daily", today - DAY_MS, today),  # yesterday: not published yet
              Period("monthly", parse_iso("2026-12-01"), parse_iso("2027-01-01"))):
        with pytest.raises(ArchiveMissing):
            archive.fetch("ETHUSDT", "1m", p)


# --- backfill --source auto -------------------------------------------------------------------
SEAM = ("--start", "2024-12-30T22:00", "--end", "2025-01-02T03:00")
SEAM_A, SEAM_B = parse_iso("2024-12-30T22:00"), parse_iso("2025-01-02T03:00")


def test_auto_is_exact_across_days_units_and_the_rest_seam_and_a_rerun_asks_nothing(
        db_url, repo_for, sim):
    env = env_for(db_url, sim)
    r = run_cli("backfill", "--wide", *SEAM, "--symbols", "BTC/USDT,ETH/BTC", env=env)
    assert r.returncode == 0, r.stderr
    assert "BTC/USDT: 2/2 archive files" in r.stderr and "ETH/BTC: 2/2 archive files" in r.stderr
    repo = repo_for(db_url)
    for sym in ("BTC/USDT", "ETH/BTC"):
        stored = repo.candles("binance", sym, "1m")
        assert as_rows(stored) == sim.final_rows(sym, "1m", SEAM_A, SEAM_B)  # no gap, no overlap
        src = sources(repo, sym)
        days = range(parse_iso("2024-12-31"), parse_iso("2025-01-02"), M)  # one ms, one µs file
        assert all(src[t] == "archive" for t in days)
        assert all(src[t] == "backfill" for t in src if t not in days)  # partial days: REST
        c = cells(r.stdout, sym)
        assert c[1:6] == [str(len(stored)), "2880", str(len(stored) - 2880), "2", "0"]
    before = sim.stats()
    again = run_cli("backfill", "--wide", *SEAM, "--symbols", "BTC/USDT,ETH/BTC", env=env)
    assert again.returncode == 0, again.stderr
    after = sim.stats()
    assert after["archive_requests"] == before["archive_requests"]
    assert after["klines"] == before["klines"]
    assert cells(again.stdout, "BTC/USDT")[1:5] == ["0", "0", "0", "0"]


def test_monthly_files_and_a_missing_month_falls_back_to_its_days(pg_url, repo_for, sim_factory):
    sim = sim_factory(archive_faults=["missing:BTCUSDT:2024-11"])
    a, b = parse_iso("2024-10-30T05:00"), parse_iso("2025-01-01")
    r = run_cli("backfill", "--wide", "--start", "2024-10-30T05:00", "--end", "2025-01-01", "-t", "1h",
                "--symbols", "BTC/USDT,ETH/USDT", env=env_for(pg_url, sim))
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    for sym in ("BTC/USDT", "ETH/USDT"):
        assert as_rows(repo.candles("binance", sym, "1h"), H) == sim.final_rows(sym, "1h", a, b)
        src = sources(repo, sym, "1h")
        assert {src[t] for t in range(parse_iso("2024-10-31"), b, H)} == {"archive"}
        assert {src[t] for t in range(a, parse_iso("2024-10-31"), H)} == {"backfill"}
    # ETH: Oct 31 + Nov + Dec = 3 files; BTC: Oct 31 + Nov's 30 days + Dec = 32
    assert cells(r.stdout, "ETH/USDT")[4] == "3" and cells(r.stdout, "BTC/USDT")[4] == "32"
    assert sim.stats()["archive_404"] == 1  # the month's CHECKSUM: its zip is never asked for


def test_a_corrupt_file_never_yields_a_row_and_its_range_arrives_through_rest(
        pg_url, repo_for, sim_factory):
    # the served zip's candles all carry 7 more trades than REST's: any row from it would show
    sim = sim_factory(archive_faults=["corrupt:BTCUSDT:2024-12-31", "missing:BTCUSDT:2025-01-01"])
    r = run_cli("backfill", "--wide", *SEAM, "--symbols", "BTC/USDT", env=env_for(pg_url, sim))
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    stored = repo.candles("binance", "BTC/USDT", "1m")
    assert as_rows(stored) == sim.final_rows("BTC/USDT", "1m", SEAM_A, SEAM_B)
    assert set(sources(repo, "BTC/USDT").values()) == {"backfill"}  # both days came from REST
    c = cells(r.stdout, "BTC/USDT")
    assert c[1:7] == [str(len(stored)), "0", str(len(stored)), "0", "1", "0"]
    assert "rejected" in r.stderr and "BTCUSDT-1m-2024-12-31.zip" in r.stderr
    assert sim.stats()["archive_downloads"] == 2  # downloaded once more before giving up


def test_the_spot_check_catches_a_file_that_matches_its_checksum_but_not_rest(
        db_url, repo_for, sim_factory):
    sim = sim_factory(archive_faults=["disagree:ETHUSDT:2025-01-01"])
    r = run_cli("backfill", "--wide", *SEAM, "--symbols", "ETH/USDT", env=env_for(db_url, sim))
    assert r.returncode == 0, r.stderr
    repo = repo_for(db_url)
    assert as_rows(repo.candles("binance", "ETH/USDT", "1m")) == sim.final_rows(
        "ETH/USDT", "1m", SEAM_A, SEAM_B)
    src = sources(repo, "ETH/USDT")
    assert src[parse_iso("2025-01-01T12:00")] == "backfill" and src[parse_iso("2024-12-31")] == "archive"
    assert cells(r.stdout, "ETH/USDT")[4:7] == ["1", "0", "1"]  # files, rejected: checksum, vs REST
    assert "disagrees with the REST API" in r.stderr



def test_no_verify_skips_the_spot_check_and_source_archive_spends_no_rest_weight(
        pg_url, repo_for, sim_factory):
    sim = sim_factory(archive_faults=["disagree:ETHUSDT:2025-01-01"])
    r = run_cli("backfill", "--wide", *SEAM, "--symbols", "ETH/USDT", "--source", "archive", "--no-verify",
                env=env_for(pg_url, sim))
    assert r.returncode == 0, r.stderr
    assert sim.stats()["klines"] == 0
    repo = repo_for(pg_url)
    stored = repo.candles("binance", "ETH/USDT", "1m")
    assert [c.open_time for c in stored] == list(range(parse_iso("2024-12-31"), parse_iso("2025-01-02"), M))
    want = sim.final_rows("ETH/USDT", "1m", parse_iso("2025-01-01"), parse_iso("2025-01-02"))
    assert [c.trades for c in stored[1440:]] == [w[8] + 1 for w in want]  # unverified, as asked
    left = (parse_iso("2024-12-31") - SEAM_A + SEAM_B - parse_iso("2025-01-02")) // M
    assert cells(r.stdout, "ETH/USDT")[-1] == "incomplete"
    assert f"warning: {left} candles are not in the archive" in r.stderr


def test_source_rest_behaves_as_before(pg_url, repo_for, sim):
    r = run_cli("backfill", *SEAM, "--symbols", "BTC/USDT", env=env_for(pg_url, sim, BACKFILL_SOURCE="rest"))
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    assert as_rows(repo.candles("binance", "BTC/USDT", "1m")) == sim.final_rows(
        "BTC/USDT", "1m", SEAM_A, SEAM_B)
    assert set(sources(repo, "BTC/USDT").values()) == {"backfill"}
    assert sim.stats()["archive_requests"] == 0


def test_a_recently_listed_symbol_works(pg_url, repo_for, sim_factory):
    listed = parse_iso("2024-12-31T12:00")
    specs = [replace(s, listed_at=listed) if s.base == "SOL" else s for s in default_symbols()]
    sim = sim_factory(symbols=specs)
    r = run_cli("backfill", "--wide", "--start", "2024-12-28", "--end", "2025-01-02", "--symbols", "SOL/USDT",
                env=env_for(pg_url, sim))
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    end = parse_iso("2025-01-02")
    assert as_rows(repo.candles("binance", "SOL/USDT", "1m")) == sim.final_rows(
        "SOL/USDT", "1m", listed, end)
    assert cells(r.stdout, "SOL/USDT")[8] == str((listed - parse_iso("2024-12-28")) // M)
    before = sim.stats()
    again = run_cli("backfill", "--start", "2024-12-28", "--end", "2025-01-02", "--symbols",
                    "SOL/USDT", env=env_for(pg_url, sim))
    assert again.returncode == 0
    assert (sim.stats()["klines"], sim.stats()["archive_requests"]) == (
        before["klines"], before["archive_requests"])  # the pre-listing range is remembered


def test_gaps_repair_takes_whole_days_from_the_archive(db_url, repo_for, sim):
    env = env_for(db_url, sim)
    window = ("--start", "2024-12-30T22:00", "--end", "2025-01-02T03:00")
    r = run_cli("backfill", *window, "--symbols", "BTC/USDT", "--source", "rest", env=env)
    assert r.returncode == 0, r.stderr
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # lose a whole day and a bit
        conn.execute(sa.text("DELETE FROM candles WHERE open_time >= :a AND open_time < :b"),
                     {"a": "2024-12-31 00:00:00" if "sqlite" in db_url else "2024-12-31T00:00Z",
                      "b": "2025-01-01 00:05:00" if "sqlite" in db_url else "2025-01-01T00:05Z"})
    engine.dispose()
    r = run_cli("gaps", "repair", *window, "--symbols", "BTC/USDT", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    repo = repo_for(db_url)
    assert as_rows(repo.candles("binance", "BTC/USDT", "1m")) == sim.final_rows(
        "BTC/USDT", "1m", SEAM_A, SEAM_B)
    src = sources(repo, "BTC/USDT")
    assert src[parse_iso("2024-12-31T10:00")] == "archive" and src[parse_iso("2025-01-01")] == "repair"
    assert "BTC/USDT: 1440 candles from 1 archive files" in r.stdout
    assert "repaired: 1445 candles written" in r.stdout


def test_a_bad_source_is_one_error_line_and_exit_2(sqlite_url, sim):
    r = run_cli("backfill", *SEAM, "--source", "ftp", env=env_for(sqlite_url, sim))
    assert r.returncode == 2
    assert r.stderr.strip() == "error: invalid setting BACKFILL_SOURCE: must be 'auto', 'rest' or 'archive'"
    r = run_cli("backfill", *SEAM, "--archive-url", "data.binance.vision", env=env_for(sqlite_url, sim))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: invalid setting OHLCV_ARCHIVE_URL")


# --- ohlcv run takes the same road (issue 16) -------------------------------------------------
def test_run_backfills_from_the_archive_then_rest_with_pages_in_flight(sim_factory, repo_for,
                                                                       sqlite_url, tmp_path):
    """`ohlcv run`'s start-up is `backfill`'s road: whole days from the archive files, the rest
    from REST with pages in flight (before: no archive, one page at a time per symbol)."""
    sim = sim_factory(latency_ms=40)
    db = sqlite_url
    env = env_for(db, sim, TIMEFRAME="1s", SYMBOLS="BTC/USDT", ARCHIVE_CONCURRENCY="1")
    # three days back: the day before yesterday is a whole day whose file is published
    r = run_cli("run", "--days", "3", "--max-cycles", "1", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = sim.stats()
    assert stats["archive_downloads"] >= 1  # at least one whole day (86,400 candles) from a file
    written, from_archive, from_rest = (int(x) for x in cells(r.stdout, "BTC/USDT")[1:4])
    assert from_archive >= 86_400 and from_rest > 0 and written == from_archive + from_rest
    # the archive pass runs first with one file at a time: a peak above 1 is REST in flight
    assert stats["max_in_flight"] >= 8
    assert "backfill done" in r.stderr
    repo = repo_for(db)
    stored = repo.candles("binance", "BTC/USDT", "1s")
    first, last = stored[0].open_time, stored[-1].open_time
    assert [c.open_time for c in stored] == list(range(first, last + 1000, 1000))
