"""The live pipeline on real services: simulator (1s candles) -> stream -> Kafka -> consume ->
PostgreSQL, with crashes, a broker restart, a stream outage, poison messages and two consumers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer

from conftest import SETTING_VARS, run_cli
from ohlcv_cli.core import message
from helpers import kline_rows as rows

pytestmark = pytest.mark.kafka
SYMS = ("BTC/USDT", "ETH/USDT")


class Proc:
    """An `ohlcv` process in the background, its stderr kept in a file."""

    def __init__(self, tmp_path, name: str, *args: str, env: dict) -> None:
        self.log = tmp_path / f"{name}.log"
        full = {k: v for k, v in os.environ.items() if k not in SETTING_VARS}
        full.update(env)
        self.p = subprocess.Popen([sys.executable, "-m", "ohlcv_cli", *args], env=full,
                                  stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        self.p.send_signal(sig)
        return self.p.wait(timeout)

    def text(self) -> str:
        return self.log.read_text()


def live_env(pg_url, sim, broker, topic, **extra) -> dict:
    return {"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url, "KAFKA_BROKER": broker,
            "TOPIC_NAME": topic, "TIMEFRAME": "1s", "SYMBOLS": ",".join(SYMS),
            "REALTIME_DELAY_SECONDS": "0.5", "CONSUMER_GROUP": f"g-{topic}", **extra}




def assert_complete_and_exact(repo, sim, symbols=SYMS, min_count=5):
    """Every stored candle equals the exchange's final one; no gap from first to last."""
    for s in symbols:
        stored = repo.candles("binance", s, "1s")
        assert len(stored) >= min_count, (s, len(stored))
        first, last = stored[0].open_time, stored[-1].open_time
        assert [c.open_time for c in stored] == list(range(first, last + 1000, 1000)), f"{s}: gap"
        assert rows(stored) == sim.final_rows(s, "1s", first, last + 1000), f"{s}: values differ"
        assert last + 1000 <= int(time.time() * 1000)  # never an open candle


def wait_for(cond, timeout: float = 30, step: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


def stored_until(repo, t_ms: int, symbols=SYMS):
    def cond():
        return all((repo.latest_open_time("binance", s, "1s") or 0) >= t_ms for s in symbols)
    return cond


def stored_at_least(repo, n: int, symbols=SYMS):
    """Each symbol has at least n 1s candles stored: a condition on data, not on the clock, so a
    process that starts slowly on a loaded machine still gets its full run."""
    def cond():
        return all(len(repo.candles("binance", s, "1s")) >= n for s in symbols)
    return cond


def both(*conds):
    return lambda: all(c() for c in conds)


def now_ms() -> int:
    return int(time.time() * 1000)


def test_end_to_end_exact_and_complete(pg_url, repo_for, sim_factory, kafka, topic, tmp_path):
    broker, _ = kafka
    sim = sim_factory(settle_lag_ms=300, zero_volume_share=0.05)
    env = live_env(pg_url, sim, broker, topic)
    stream = Proc(tmp_path, "stream", "stream", env=env)
    consume = Proc(tmp_path, "consume", "consume", env=env)
    repo = repo_for(pg_url)
    target = now_ms() + 8000
    assert wait_for(both(stored_until(repo, target - 2000, SYMS), stored_at_least(repo, 6)), 60), \
        stream.text()[-2000:] + consume.text()[-2000:]
    assert stream.stop() == 143 and consume.stop() == 143
    assert_complete_and_exact(repo, sim)
    assert "SIGTERM received" in stream.text() and "stream stopped after" in stream.text()
    assert "consume stopped:" in consume.text()
    # each candle once on the topic: messages = rows
    consumed = int(consume.text().split("consume stopped: ")[1].split(" messages")[0])
    assert consumed == repo.count()


def test_consumer_killed_and_restarted_loses_and_doubles_nothing(pg_url, repo_for, sim_factory, kafka, topic, tmp_path):
    broker, _ = kafka
    sim = sim_factory()
    env = live_env(pg_url, sim, broker, topic)
    stream = Proc(tmp_path, "stream", "stream", env=env)
    repo = repo_for(pg_url)
    consume = Proc(tmp_path, "consume1", "consume", env=env)
    assert wait_for(lambda: repo.count() >= 4, 30), consume.text()
    consume.stop(signal.SIGKILL)
    time.sleep(3)  # candles pile up on the topic meanwhile
    consume = Proc(tmp_path, "consume2", "consume", env=env)
    assert wait_for(stored_until(repo, now_ms() - 1500), 40), consume.text()
    assert stream.stop() == 143 and consume.stop() == 143
    assert_complete_and_exact(repo, sim)


def test_broker_restart_while_streaming_loses_nothing(pg_url, repo_for, sim_factory, kafka, topic, tmp_path):
    broker, handle = kafka
    if handle is None:
        pytest.skip("an external broker cannot be restarted by the tests")
    sim = sim_factory()
    env = live_env(pg_url, sim, broker, topic, KAFKA_TIMEOUT_SECONDS="3")
    stream = Proc(tmp_path, "stream", "stream", env=env)
    consume = Proc(tmp_path, "consume", "consume", env=env)
    repo = repo_for(pg_url)
    assert wait_for(lambda: repo.count() >= 4, 30), stream.text() + consume.text()
    handle.stop()
    time.sleep(4)
    handle.start()
    assert wait_for(stored_until(repo, now_ms() - 1500), 60), stream.text()[-3000:] + consume.text()[-3000:]
    assert stream.stop() == 143 and consume.stop() == 143
    assert_complete_and_exact(repo, sim, min_count=8)


def test_stream_stopped_then_restarted_catches_up(pg_url, repo_for, sim_factory, kafka, topic, tmp_path):
    broker, _ = kafka
    sim = sim_factory()
    env = live_env(pg_url, sim, broker, topic)
    consume = Proc(tmp_path, "consume", "consume", env=env)
    stream = Proc(tmp_path, "stream1", "stream", env=env)
    repo = repo_for(pg_url)
    assert wait_for(lambda: repo.count() >= 4, 30), stream.text()
    assert stream.stop() == 143
    stopped_at = now_ms()
    time.sleep(5)
    restarted_at = now_ms()
    stream = Proc(tmp_path, "stream2", "stream", env=env)
    assert wait_for(stored_until(repo, now_ms() - 1500), 40), stream.text()
    assert stream.stop() == 143 and consume.stop() == 143
    assert_complete_and_exact(repo, sim)
    outage = set(range(stopped_at // 1000 * 1000, restarted_at - 2000, 1000))  # closed while no stream ran
    assert len(outage) >= 3
    for s in SYMS:  # the candles of the outage are there
        opens = {c.open_time for c in repo.candles("binance", s, "1s")}
        assert outage <= opens
    assert "newest stored" in stream.text()


def test_poison_messages_go_to_the_dlq_and_valid_ones_are_stored(pg_url, repo_for, sim, kafka, topic, tmp_path):
    broker, _ = kafka
    r = run_cli("topic", "create", "--kafka-broker", broker, "--topic", topic, "--partitions", "1")
    assert r.returncode == 0 and "created" in r.stdout
    rows_ = sim.final_rows("SOL/USDT", "1m", 1_704_067_200_000, 1_704_067_200_000 + 5 * 60_000)
    from ohlcv_cli.core.candle import from_kline

    good = [from_kline(x, exchange="binance", symbol="SOL/USDT", timeframe="1m", source="stream") for x in rows_]
    bad_high = json.loads(message.encode(good[0]._replace(open_time=good[0].open_time + 3_600_000), 1))
    bad_high["high"], bad_high["low"] = "1.00", "2.00"
    poison = [b"garbage", json.dumps({"schema_version": 99}).encode(), json.dumps(bad_high).encode()]
    producer = KafkaProducer(bootstrap_servers=broker)
    values = [message.encode(good[0], 1), *poison[:2], *(message.encode(c, 1) for c in good[1:]), poison[2]]
    for v in values:
        producer.send(topic, key=b"SOL/USDT", value=v)
    producer.flush()
    producer.close()
    r = run_cli("consume", "--max-idle-polls", "6",
                env={"DATABASE_URL": pg_url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic, "CONSUMER_GROUP": "dlq-test"})
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    assert repo.candles("binance", "SOL/USDT", "1m") == good
    dlq = KafkaConsumer(f"{topic}.dlq", bootstrap_servers=broker, auto_offset_reset="earliest",
                        consumer_timeout_ms=5000, group_id=None)
    got = [(m.value, dict(m.headers)["reason"].decode()) for m in dlq]
    dlq.close()
    assert [v for v, _ in got] == poison
    assert [reason for _, reason in got] == ["not JSON", "unknown schema_version 99", "high 1.00 < low 2.00"]


def _wait_for_stable_group(broker: str, group: str, members: int, timeout: float = 60) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=broker)
    info: dict = {}
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = admin.describe_groups([group]).get(group) or {}
            except KafkaError:  # the group's coordinator is not there until a member joins
                info = {}
            if info.get("group_state", info.get("state")) == "Stable" and len(info.get("members") or []) == members:
                return
            time.sleep(0.5)
        raise AssertionError(f"group {group} never had {members} stable members: {info}")
    finally:
        admin.close()


def test_two_consumers_in_one_group_store_every_candle_once(pg_url, repo_for, sim, kafka, topic, tmp_path):
    broker, _ = kafka
    assert run_cli("topic", "create", "--kafka-broker", broker, "--topic", topic, "--partitions", "4").returncode == 0
    from ohlcv_cli.core.candle import from_kline

    symbols = ["BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LTC/USDT"]
    t0 = 1_704_067_200_000
    env = {"DATABASE_URL": pg_url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic, "CONSUMER_GROUP": "pair"}
    # Both members join first, so that the topic's partitions are shared between them when the
    # messages arrive (otherwise the first one up could drain the topic alone).
    a = Proc(tmp_path, "a", "consume", "--max-idle-polls", "50", env=env)
    b = Proc(tmp_path, "b", "consume", "--max-idle-polls", "50", env=env)
    _wait_for_stable_group(broker, "pair", members=2)
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=5)
    total = 0
    for s in symbols:
        for x in sim.final_rows(s, "1m", t0, t0 + 2000 * 60_000):
            c = from_kline(x, exchange="binance", symbol=s, timeframe="1m", source="stream")
            producer.send(topic, key=message.key(c), value=message.encode(c, 1))
            total += 1
    producer.flush()
    producer.close()
    assert a.p.wait(120) == 0 and b.p.wait(120) == 0
    repo = repo_for(pg_url)
    assert repo.count() == total
    counts = [int(p.text().split("consume stopped: ")[1].split(" messages")[0]) for p in (a, b)]
    assert sum(counts) == total and min(counts) > 0, counts  # shared, and each message once


def test_consume_workers_share_the_topic_from_one_command(pg_url, repo_for, sim, kafka, topic, tmp_path):
    broker, _ = kafka
    assert run_cli("topic", "create", "--kafka-broker", broker, "--topic", topic, "--partitions", "4").returncode == 0
    from ohlcv_cli.core.candle import from_kline

    t0 = 1_704_067_200_000
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=5)
    sent = []
    for s in ("BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT"):
        for x in sim.final_rows(s, "1m", t0, t0 + 500 * 60_000):
            c = from_kline(x, exchange="binance", symbol=s, timeframe="1m", source="stream")
            producer.send(topic, key=message.key(c), value=message.encode(c, 1))
            sent.append(c)
    producer.flush()
    producer.close()
    p = Proc(tmp_path, "workers", "consume", "--workers", "2", "--max-idle-polls", "20",
             env={"DATABASE_URL": pg_url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic, "CONSUMER_GROUP": "workers"})
    assert p.p.wait(120) == 0, p.text()[-2000:]
    repo = repo_for(pg_url)
    assert repo.count() == len(sent)
    assert repo.candles("binance", "SOL/USDT", "1m") == [c for c in sent if c.symbol == "SOL/USDT"]
    counts = [int(x.split(" messages")[0]) for x in p.text().split("consume stopped: ")[1:]]
    # two group members ran and stopped cleanly; together they read every message once (which of
    # them got which partitions depends on who joined first)
    assert len(counts) == 2 and sum(counts) == len(sent), counts


def test_run_without_kafka_backfills_then_streams_into_the_database(sim_factory, repo_for, tmp_path):
    sim = sim_factory()
    env = {"OHLCV_EXCHANGE_URL": sim.url, "TIMEFRAME": "1s", "SYMBOLS": "BTC/USDT", "REALTIME_DELAY_SECONDS": "0.5",
           "BACKFILL_DAYS": "1"}
    p = Proc(tmp_path, "run", "run", "--max-cycles", "6", env=env)
    p.p.wait(120)
    assert p.p.returncode == 0, p.text()[-2000:]
    repo = repo_for(f"sqlite:///{tmp_path / 'ohlcv.db'}")
    stored = repo.candles("binance", "BTC/USDT", "1s")
    assert len(stored) >= 86_400 + 4
    assert {c.source for c in stored} == {"backfill", "stream"}
    first, last = stored[0].open_time, stored[-1].open_time
    assert [c.open_time for c in stored] == list(range(first, last + 1000, 1000))
    assert rows(stored[-50:]) == sim.final_rows("BTC/USDT", "1s", stored[-50].open_time, last + 1000)


def test_run_asks_for_the_markets_once_for_backfill_stream_and_consumer(pg_url, sim, kafka, topic,
                                                                         tmp_path):
    """Issue 16: one exchange client per process. Backfill, the stream's REST safety net and the
    consumer's listing check share one markets load (one exchangeInfo) and one weight budget."""
    broker, _ = kafka
    env = live_env(pg_url, sim, broker, topic, BACKFILL_DAYS="1")
    r = run_cli("run", "--max-cycles", "4", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cycle 4" in r.stderr, r.stderr[-3000:]
    paths = sim.stats()["paths"]
    assert paths["/api/v3/exchangeInfo"] == 1, paths
    assert paths["/api/v3/time"] == 1, paths  # one clock sync too


@pytest.mark.parametrize("broker,message_", [
    ("127.0.0.1:9", "error: Kafka broker 127.0.0.1:9 unavailable while connecting"),
    ("nonsense", "error: invalid KAFKA_BROKER 'nonsense'"),
])
def test_unreachable_or_malformed_broker(pg_url, sim, broker, message_):
    r = run_cli("stream", env={"DATABASE_URL": pg_url, "KAFKA_BROKER": broker, "OHLCV_EXCHANGE_URL": sim.url,
                               "KAFKA_TIMEOUT_SECONDS": "2"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(message_), r.stderr
    assert "Traceback" not in r.stderr
