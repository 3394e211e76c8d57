"""Stopping and outages (issue 17, points 6, 7, 9/10): SIGINT and SIGTERM end every long command
cleanly (exit 130 / 143, one `interrupted: ...; rerun to resume` line, what was stored is
whole, Kafka offsets cover exactly the stored rows); a broker outage is one line when it starts
and one when it ends, and consuming resumes within seconds; `run` checks the broker before it
backfills; `consume` logs a summary a minute. Real processes, PostgreSQL, Kafka, the simulator."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from conftest import SETTING_VARS
from helpers import kline_rows as as_rows
from ohlcv_cli.core import message
from ohlcv_cli.core.errors import StorageError
from ohlcv_cli.core.timeutil import parse_iso
from ohlcv_cli.services.consume import Consume
from test_live import assert_complete_and_exact, live_env, now_ms, stored_until, wait_for
from test_robustness import FlakyRepo, ListDlq, ListSource, Rec, sim_candles

M = 60_000
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
INTERRUPTED = re.compile(r"^interrupted: ([\d,]+) candles (\w+).*; rerun to resume$")


class Proc:
    """An `ohlcv` process in the background, stdout and stderr kept in files."""

    def __init__(self, tmp_path, name: str, *args: str, env: dict) -> None:
        self.log, self.out = tmp_path / f"{name}.log", tmp_path / f"{name}.out"
        full = {k: v for k, v in os.environ.items() if k not in SETTING_VARS}
        full.update({"COLUMNS": "200", **env})
        self.p = subprocess.Popen([sys.executable, "-m", "ohlcv_cli", *args], env=full,
                                  stdout=open(self.out, "w"), stderr=open(self.log, "w"))

    def signal(self, sig) -> None:
        self.p.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.p.wait(timeout)

    def text(self) -> str:
        return self.log.read_text()

    def last_line(self) -> str:
        lines = self.text().strip().splitlines()
        return lines[-1] if lines else ""

    def interrupted(self) -> tuple[int, str]:
        m = INTERRUPTED.match(self.last_line())
        assert m, self.text()[-3000:]
        return int(m.group(1).replace(",", "")), m.group(2)


def _committed(broker: str, group: str, topic: str) -> int:
    """The group's committed offsets on the topic, summed (read without joining the group)."""
    c = KafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic)]
        return sum(c.committed(tp) or 0 for tp in parts)
    finally:
        c.close()


def _end_offsets(broker: str, topic: str) -> int:
    c = KafkaConsumer(bootstrap_servers=broker)
    try:
        parts = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic)]
        return sum(c.end_offsets(parts).values())
    finally:
        c.close()


# --- 6. signals: backfill and gaps repair ----------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_backfill_with_what_it_wrote_and_a_rerun_resumes(pg_url, repo_for, sim_factory, tmp_path, sig):
    sim = sim_factory(latency_ms=60)
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "BACKFILL_BATCH_SIZE": "2000",
           "BACKFILL_IN_FLIGHT": "2", "EXCHANGE_MAX_RETRIES": "2"}
    args = ["backfill", "--start", "2024-01-01", "--end", "2024-01-21", "--symbols", "ETH/USDT,ADA/USDT"]
    total = 2 * 20 * 1440
    proc = Proc(tmp_path, "backfill", *args, env=env)
    repo = repo_for(pg_url)
    assert wait_for(lambda: repo.count() >= 4000, 60, 0.05), proc.text()
    proc.signal(sig)
    t0 = time.monotonic()
    assert proc.wait(30) == EXIT[sig], proc.text()[-3000:]
    assert time.monotonic() - t0 < 10  # before `docker stop`'s SIGKILL
    written, verb = proc.interrupted()
    assert verb == "written" and written == repo.count() and 0 < written < total
    assert "Traceback" not in proc.text() and "error:" not in proc.text()
    # what is stored is whole: each symbol's candles run without a hole from the window's start
    start, end = parse_iso("2024-01-01"), parse_iso("2024-01-21")
    for sym in ("ETH/USDT", "ADA/USDT"):
        stored = repo.candles("binance", sym, "1m")
        if stored:
            assert [c.open_time for c in stored] == list(range(start, stored[-1].open_time + M, M))
    again = Proc(tmp_path, "backfill2", *args, env=env)
    assert again.wait(120) == 0, again.text()[-3000:]
    for sym in ("ETH/USDT", "ADA/USDT"):
        assert as_rows(repo.candles("binance", sym, "1m")) == sim.final_rows(sym, "1m", start, end)


def test_sigterm_stops_gaps_repair_cleanly(pg_url, repo_for, sim_factory, tmp_path):
    sim = sim_factory(latency_ms=60)
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "BACKFILL_BATCH_SIZE": "2000",
           "BACKFILL_IN_FLIGHT": "2"}
    window = ["--start", "2024-01-01", "--end", "2024-01-21", "--symbols", "ETH/USDT"]
    repo = repo_for(pg_url)
    start = parse_iso("2024-01-01")
    repo.upsert(sim_candles(sim, "ETH/USDT", 10, start, "backfill"))  # the rest of the window is a gap
    proc = Proc(tmp_path, "repair", "gaps", "repair", *window, env=env)
    assert wait_for(lambda: repo.count() >= 4000, 60, 0.05), proc.text()
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 143, proc.text()[-3000:]
    written, verb = proc.interrupted()
    assert verb == "written" and written == repo.count() - 10 and written < 20 * 1440


# --- 6. signals: the live pipeline; `docker stop` = SIGTERM, SIGKILL 10 s later ---------------------
def test_sigterm_stream_and_consume_offsets_cover_exactly_the_stored_rows(pg_url, repo_for, sim_factory, kafka, topic, tmp_path):
    broker, _ = kafka
    sim = sim_factory()
    env = live_env(pg_url, sim, broker, topic)
    stream = Proc(tmp_path, "stream", "stream", env=env)
    consume = Proc(tmp_path, "consume", "consume", env=env)
    repo = repo_for(pg_url)
    assert wait_for(lambda: repo.count() >= 8, 40), stream.text()[-2000:] + consume.text()[-2000:]
    stream.signal(signal.SIGTERM)
    consume.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert stream.wait(10) == 143 and consume.wait(10) == 143, stream.text()[-2000:] + consume.text()[-2000:]
    stopped_in = time.monotonic() - t0
    published, verb = stream.interrupted()
    assert verb == "published"
    stored, verb = consume.interrupted()
    assert verb == "written"
    rows = repo.count()
    assert stored == rows > 0
    # the offsets cover exactly what was stored; everything published is on the topic
    assert _committed(broker, env["CONSUMER_GROUP"], topic) == rows
    assert _end_offsets(broker, topic) == published >= rows
    # nothing is lost: a consumer started again stores the rest, exactly once
    again = Proc(tmp_path, "consume2", "consume", "--max-idle-polls", "6", env=env)
    assert again.wait(60) == 0, again.text()[-2000:]
    assert repo.count() == published
    assert_complete_and_exact(repo, sim, min_count=4)
    print(f"stream and consume exited {stopped_in:.2f}s after SIGTERM")


def test_sigint_stops_run_through_kafka(pg_url, repo_for, sim_factory, kafka, topic, tmp_path):
    broker, _ = kafka
    sim = sim_factory()
    env = live_env(pg_url, sim, broker, topic, BACKFILL_DAYS="1", SYMBOLS="BTC/USDT")
    proc = Proc(tmp_path, "run", "run", env=env)
    repo = repo_for(pg_url)
    assert wait_for(stored_until(repo, now_ms() - 1500, ("BTC/USDT",)), 60), proc.text()[-3000:]
    proc.signal(signal.SIGINT)
    assert proc.wait(10) == 130, proc.text()[-3000:]
    line = proc.last_line()
    assert re.match(r"^interrupted: [\d,]+ candles backfilled, [\d,]+ streamed; rerun to resume$", line), line
    assert _committed(broker, env["CONSUMER_GROUP"], topic) == repo.count() - 86_400


def test_sigterm_during_run_s_backfill_stops_before_streaming(sim_factory, repo_for, tmp_path):
    sim = sim_factory(latency_ms=60)
    env = {"OHLCV_EXCHANGE_URL": sim.url, "SYMBOLS": "BTC/USDT", "BACKFILL_DAYS": "30",
           "BACKFILL_BATCH_SIZE": "2000"}
    proc = Proc(tmp_path, "run", "run", env=env)
    db = tmp_path / "ohlcv.db"

    def backfilling() -> bool:
        try:  # the file exists a moment before `run` has created its tables
            return db.exists() and repo_for(f"sqlite:///{db}").count() >= 2000
        except StorageError:
            return False
    assert wait_for(backfilling, 60, 0.1), proc.text()
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 143, proc.text()[-3000:]
    m = re.match(r"^interrupted: ([\d,]+) candles backfilled; rerun to resume$", proc.last_line())
    assert m, proc.text()[-3000:]
    repo = repo_for(f"sqlite:///{db}")
    assert int(m.group(1).replace(",", "")) == repo.count() < 30 * 1440
    assert {c.source for c in repo.candles("binance", "BTC/USDT", "1m")} == {"backfill"}  # nothing streamed
    assert "BTC/USDT" not in proc.out.read_text()  # no table for an interrupted backfill


# --- 7. broker outages ------------------------------------------------------------------------------
def test_a_broker_outage_is_one_line_when_it_starts_one_when_it_ends_and_consuming_resumes(pg_url, repo_for, sim_factory, kafka, topic, tmp_path):
    broker, handle = kafka
    if handle is None:
        pytest.skip("an external broker cannot be restarted by the tests")
    sim = sim_factory()
    env = live_env(pg_url, sim, broker, topic, KAFKA_TIMEOUT_SECONDS="10")
    stream = Proc(tmp_path, "stream", "stream", env=env)
    consume = Proc(tmp_path, "consume", "consume", env=env)
    repo = repo_for(pg_url)
    try:
        assert wait_for(lambda: repo.count() >= 6, 40), stream.text()[-2000:] + consume.text()[-2000:]
        stopping_at = time.monotonic()
        handle.stop()  # graceful: a few seconds
        down_at = time.monotonic()
        # while the broker is down: one WARNING each, soon
        assert wait_for(lambda: "Kafka broker unavailable" in consume.text(), 8, 0.1), consume.text()[-3000:]
        consume_seen = time.monotonic() - stopping_at
        assert wait_for(lambda: "Kafka broker unavailable" in stream.text(), 8, 0.1), stream.text()[-3000:]
        stream_seen = time.monotonic() - stopping_at
        time.sleep(max(0.0, 8 - (time.monotonic() - down_at)))
        handle.start()
        up_at = time.monotonic()  # start() returns once the broker says it has started
        outage = up_at - down_at
        back_at = now_ms()
        # consuming resumes: candles that closed after the broker came back are stored
        assert wait_for(stored_until(repo, back_at), 30, 0.1), stream.text()[-3000:] + consume.text()[-3000:]
        resumed = time.monotonic() - up_at
        assert wait_for(lambda: "Kafka broker available again" in consume.text(), 5)
    finally:
        for p in (stream, consume):
            p.signal(signal.SIGTERM)
        stream.wait(30), consume.wait(30)
    for p, what in ((consume, "Kafka broker"), (stream, "Kafka broker")):
        text = p.text()
        assert sum(f"{what} unavailable" in ln for ln in text.splitlines()) == 1, text[-3000:]
        backs = re.findall(rf"{what} available again after ([\d.]+)s", text)
        assert len(backs) == 1, text[-3000:]
        assert outage - 3 <= float(backs[0]) <= outage + 6, (backs, outage)
        print(f"{what}: " + " | ".join(ln.split(": ", 1)[-1][:160] for ln in text.splitlines()
                                       if f"{what} unavailable" in ln or f"{what} available" in ln))
    print(f"outage {outage:.1f}s (from stop() returned to start() returned); seen by consume "
          f"{consume_seen:.1f}s, by stream {stream_seen:.1f}s after stop() was called; candles "
          f"stored again {resumed:.1f}s after start() returned")
    assert resumed <= 10
    assert_complete_and_exact(repo, sim, min_count=8)


# --- 9/10. `run` checks the broker first; `consume` logs a summary a minute --------------------------
def test_run_with_a_dead_broker_fails_before_it_backfills(pg_url, repo_for, sim, tmp_path):
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "KAFKA_BROKER": "127.0.0.1:9",
           "KAFKA_TIMEOUT_SECONDS": "2", "SYMBOLS": "BTC/USDT", "BACKFILL_DAYS": "1"}
    proc = Proc(tmp_path, "run", "run", env=env)
    assert proc.wait(60) == 2, proc.text()
    assert proc.last_line().startswith("error: Kafka broker 127.0.0.1:9 unavailable while connecting")
    assert "Traceback" not in proc.text()
    assert repo_for(pg_url).count() == 0  # nothing was backfilled
    assert sim.stats()["klines"] == 0


def test_consume_logs_a_summary_not_a_line_per_batch(caplog, sim):
    caplog.set_level(logging.DEBUG, "ohlcv_cli")
    good = sim_candles(sim, n=6)
    batches = [[Rec("t", 0, i + k, b"SOL/USDT", message.encode(c, 1)) for k, c in enumerate(good[i:i + 2])]
               for i in (0, 2, 4)]
    c = Consume(ListSource(batches), FlakyRepo(-1, 0), ListDlq(), summary_every_s=3600)
    assert c.run(max_idle_polls=1).stored == 6
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert not any(m.startswith("batch ") for m in info), info
    assert sum(m.startswith("batch ") for m in caplog.messages) == 3  # at DEBUG
    summary = [m for m in info if m.startswith("consumed in ")]
    assert len(summary) == 1 and "6 candles stored, 3 batches, 6 messages, 0 dead-lettered" in summary[0]


def test_sigterm_stops_export_at_once_and_leaves_no_half_written_file(pg_url, repo_for, tmp_path):
    from ohlcv_cli.core.candle import Candle

    repo = repo_for(pg_url)
    t0 = parse_iso("2024-01-01")
    for sym in ("BTC/USDT", "ETH/USDT"):
        repo.upsert([Candle("binance", sym, "1m", t0 + i * M, "1.5", "2", "1", "1.5", "3", "4.5", 2, "1", "1.5",
                            "backfill") for i in range(300_000)])
    out = tmp_path / "all.csv"
    proc = Proc(tmp_path, "export", "export", "--out", str(out), "--symbols", "BTC/USDT,ETH/USDT",
                env={"DATABASE_URL": pg_url})
    assert wait_for(lambda: out.exists() and out.stat().st_size > 0, 60, 0.01), proc.text()
    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 143, proc.text() + proc.out.read_text()[-2000:]
    assert proc.last_line() == "error: interrupted"
    assert not out.exists()


def test_sigterm_stops_the_archive_pass_after_the_files_at_hand(pg_url, repo_for, sim_factory, tmp_path):
    sim = sim_factory(latency_ms=150)
    env = {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_ARCHIVE_URL": sim.url,
           "ARCHIVE_CONCURRENCY": "1"}
    args = ["backfill", "--start", "2023-01-01", "--end", "2024-01-01", "--symbols", "BTC/USDT",
            "--source", "archive", "--no-verify"]
    proc = Proc(tmp_path, "archive", *args, env=env)
    repo = repo_for(pg_url)
    assert wait_for(lambda: repo.count() > 0, 60, 0.05), proc.text()
    proc.signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert proc.wait(30) == 143, proc.text()[-3000:]
    assert time.monotonic() - t0 < 10  # the file at hand is written whole, inside docker stop's 10 s
    written, _ = proc.interrupted()
    stored = repo.candles("binance", "BTC/USDT", "1m")
    assert written == len(stored) < 365 * 1440
    # whole files only: the store ends at a month's end
    end = stored[-1].open_time + M
    assert time.strftime("%d %H:%M", time.gmtime(end / 1000)) == "01 00:00", end
    again = Proc(tmp_path, "archive2", *args, env=env)
    assert again.wait(120) == 0, again.text()[-3000:]
    start, stop = parse_iso("2023-01-01"), parse_iso("2024-01-01")
    assert as_rows(repo.candles("binance", "BTC/USDT", "1m")) == sim.final_rows("BTC/USDT", "1m", start, stop)
