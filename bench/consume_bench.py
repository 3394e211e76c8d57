"""Kafka -> PostgreSQL benchmarks: consumer throughput against the Kafka client's own ceiling and
the seed's way, and live close-to-stored latency with 1s candles."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

import psycopg
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from common import OHLCV, ROOT, Sim, fresh_db
from live import pg_and_kafka

from ohlcv_cli.adapters.kafka import ensure_topic
from ohlcv_cli.adapters.sql.candles import SqlCandleRepository
from ohlcv_cli.adapters.sql.schema import make_engine
from ohlcv_cli.core import message
from ohlcv_cli.core.candle import from_kline
from ohlcv_sim import SimServer

N_SYMBOLS = 20
PER_SYMBOL = int(os.environ.get("BENCH_PER_SYMBOL", 26_000))  # 520k messages
PARTITIONS = 4
SEED_SAMPLE = 3_000


def _fill(broker: str, topic: str) -> int:
    from ohlcv_sim import SimConfig, default_symbols

    sim = SimServer(SimConfig(symbols=default_symbols(N_SYMBOLS)))  # its candles only; no HTTP
    producer = KafkaProducer(bootstrap_servers=broker, linger_ms=20, batch_size=512 * 1024, acks=1)
    n = 0
    t0 = 1_704_067_200_000
    specs = default_symbols(N_SYMBOLS)[-N_SYMBOLS:]
    for spec in specs:
        for row in sim.final_rows(spec.symbol, "1m", t0, t0 + PER_SYMBOL * 60_000):
            c = from_kline(row, exchange="binance", symbol=spec.symbol, timeframe="1m", source="stream")
            producer.send(topic, key=message.key(c), value=message.encode(c, t0))
            n += 1
    producer.flush()
    producer.close()
    sim.stop()
    return n


def _client_ceiling(broker: str, topic: str, n: int) -> float:
    """kafka-python alone: fetch and JSON-decode every message (no group, no database)."""
    import json

    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False, group_id=None,
                             max_poll_records=5000, max_partition_fetch_bytes=8 * 1024 * 1024,
                             fetch_max_wait_ms=100)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen = 0
    t0 = None
    while seen < n:
        for records in consumer.poll(timeout_ms=1000).values():
            if t0 is None:
                t0 = time.perf_counter()
            for r in records:
                json.loads(r.value)
                seen += 1
    rate = seen / (time.perf_counter() - t0)
    consumer.close()
    return rate


def _ours(broker: str, topic: str, url: str, n: int, workers: int = 1) -> float:
    """`ohlcv consume --workers N`; throughput from the first stored row to the last."""
    engine = make_engine(url)
    repo = SqlCandleRepository(engine)
    env = {**os.environ, "DATABASE_URL": url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic,
           "CONSUMER_GROUP": f"bench-{workers}", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([*OHLCV, "consume", "--workers", str(workers)], env=env,
                            stderr=subprocess.PIPE, text=True)
    first = None
    count = 0
    while count < n:
        time.sleep(0.05)
        count = repo.count()
        if first is None and count:
            first = (time.perf_counter(), count)
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read()[-1000:])
    end = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    engine.dispose()
    return (n - first[1]) / (end - first[0])


def _seed_way(broker: str, topic: str, url: str) -> float:
    """The seed's consumer: auto-committed offsets, a connection and a commit per message."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    consumer = KafkaConsumer(topic, bootstrap_servers=broker, group_id="seed", enable_auto_commit=True,
                             auto_offset_reset="earliest")
    sql = ("INSERT INTO candles (exchange, symbol, timeframe, open_time, open, high, low, close, volume,"
           " quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume, source)"
           " VALUES (%s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
           " ON CONFLICT DO NOTHING")
    done = 0
    t0 = None
    for record in consumer:
        if t0 is None:
            t0 = time.perf_counter()
        c, _ = message.decode(record.value)
        with psycopg.connect(dsn) as conn:
            conn.execute(sql, tuple(c)[:14])  # the seed's columns; price defaults to trade
            conn.commit()
        done += 1
        if done >= SEED_SAMPLE:
            break
    rate = done / (time.perf_counter() - t0)
    consumer.close()
    return rate


def _latency(broker: str, cluster) -> None:
    url = fresh_db(cluster, "bench_latency")
    sim = Sim("--settle-lag-ms", "300")
    symbols = "BTC/USDT,ETH/USDT,BNB/USDT,SOL/USDT,XRP/USDT,ADA/USDT,DOGE/USDT,LTC/USDT,ETH/BTC"
    env = {**os.environ, "DATABASE_URL": url, "KAFKA_BROKER": broker, "TOPIC_NAME": "latency",
           "OHLCV_EXCHANGE_URL": sim.url, "TIMEFRAME": "1s", "SYMBOLS": symbols,
           "REALTIME_DELAY_SECONDS": "1", "LOG_LEVEL": "WARNING", "CONSUMER_GROUP": "latency"}
    procs = [subprocess.Popen([*OHLCV, cmd], env=env) for cmd in ("consume", "stream")]
    time.sleep(40)
    for p in procs[::-1]:
        p.send_signal(signal.SIGTERM)
        p.wait(60)
    sim.stop()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        lat = [r[0] for r in conn.execute(
            "SELECT extract(epoch FROM ingested_at - open_time) - 1 FROM candles"
            " ORDER BY open_time OFFSET 18")]  # the first two seconds are the start-up catch-up
    lat = [float(x) for x in lat]
    q = statistics.quantiles(lat, n=100)
    print(f"live latency, 1s candles, REALTIME_DELAY_SECONDS=1, {len(lat)} candles of 9 symbols: close -> row "
          f"committed p50 {q[49]:.2f} s, p99 {q[98]:.2f} s, max {max(lat):.2f} s (target p99 <= 2.00 s)")


def main() -> dict:
    with pg_and_kafka() as (cluster, broker):
        topic = "bench-candles"
        ensure_topic(broker, topic, PARTITIONS)
        t0 = time.perf_counter()
        n = _fill(broker, topic)
        print(f"topic pre-filled with {n} candles in {time.perf_counter() - t0:.1f} s")
        ceiling = _client_ceiling(broker, topic, n)
        print(f"kafka-python alone (fetch + JSON decode, crc32c in C): {ceiling:,.0f} messages/s")
        url = fresh_db(cluster, "bench_consume")
        ours = _ours(broker, topic, url, n)
        print(f"ohlcv consume (decode, validate, COPY upsert, commit after the rows): {ours:,.0f} candles/s "
              f"= {ours / ceiling:.0%} of the client's ceiling")
        url3 = fresh_db(cluster, "bench_consume_3")
        ours3 = _ours(broker, topic, url3, n, workers=3)
        print(f"ohlcv consume --workers 3 (three group members, one per process): {ours3:,.0f} candles/s "
              f"= {ours3 / ceiling:.0%} of the single client's ceiling")
        seed_url = fresh_db(cluster, "bench_consume_seed")
        seed = _seed_way(broker, topic, seed_url)
        print(f"the seed's way (auto-commit, a connection and a commit per message, {SEED_SAMPLE} messages): "
              f"{seed:,.0f} candles/s -> ohlcv consume is {ours / seed:.0f}x the seed's way")
        _latency(broker, cluster)
        return {"ceiling": ceiling, "ours": ours, "ours3": ours3, "seed": seed}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
