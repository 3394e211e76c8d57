"""Live futures: close -> row committed in PostgreSQL for USD-M 1m candles of 200 perpetuals,
through the simulator's USD-M websocket (its 2026 `/market` route), Kafka and the consumer.

Every `ohlcv` here is a process of its own (sim, stream, consume), on a durable PostgreSQL and a
real Kafka broker. The perpetuals' mark-price streams ride along (live funding), so the stream
holds 400 streams on 2 connections (200 each, Binance's futures limit). Size:
BENCH_FUTURES_WS_MINUTES (whole minutes measured after the start-up's first close)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Sim, fresh_db
from live import pg_and_kafka, query, run_pipeline

from broker import free_port

MINUTES = int(os.environ.get("BENCH_FUTURES_WS_MINUTES", 2))
N = 200
TARGET_P99_S = 0.3


def bench(cluster, broker: str, log_dir: Path) -> dict:
    symbols = [f"SIM{i:03d}/USDT:USDT" for i in range(N)]
    ws_port = free_port()
    sim = Sim("--ws-port", str(ws_port), "--extra-futures", str(N))
    url = fresh_db(cluster, "bench_futures_ws")
    ws = f"ws://127.0.0.1:{ws_port}"
    topic = "futures-ws"
    env = {**os.environ, "DATABASE_URL": url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic,
           "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_STREAM_URL": ws,
           "OHLCV_USDM_STREAM_URL": f"{ws}/fapi", "OHLCV_COINM_STREAM_URL": f"{ws}/dapi",
           "TIMEFRAME": "1m", "SYMBOLS": ",".join(symbols), "REALTIME_DELAY_SECONDS": "1",
           "LOG_LEVEL": "INFO", "CONSUMER_GROUP": f"g-{topic}", "STREAM_SOURCE": "ws",
           "TOPIC_PARTITIONS": "4"}
    start = time.time()
    # the first close after start-up is the catch-up's: measure the closes after it
    first_close = (int(start) // 60 + 1) * 60
    seconds = first_close - start + 60 * MINUTES + 8
    try:
        run_pipeline(env, seconds, log_dir)
    finally:
        stats = sim.stats()
        sim.stop()
    after = first_close * 1000  # candles opening at or after the first close: closed later
    lat = [float(r[0]) for r in query(
        url, "SELECT extract(epoch FROM ingested_at - open_time) - 60 FROM candles "
             "WHERE open_time >= to_timestamp(%s)", after / 1000)]
    per_minute = query(url, "SELECT open_time, count(*) FROM candles WHERE open_time >= "
                            "to_timestamp(%s) GROUP BY open_time ORDER BY open_time", after / 1000)
    complete = bool(per_minute) and all(n == N for _, n in per_minute)
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    p50, p99 = q[49], q[98]
    stream_log = (log_dir / "stream.log").read_text()
    report = [ln.split(": ", 1)[-1] for ln in stream_log.splitlines() if "websocket stream:" in ln]
    funding = query(url, "SELECT count(*) FROM funding_rates")[0][0] if _has(url) else None
    usdm = stats.get("ws", {}).get("usdm_connections") if isinstance(stats.get("ws"), dict) else None
    print(f"USD-M 1m, {N} perpetuals, one stream process (2 connections of 200 streams: klines "
          f"and mark price): {len(per_minute)} minutes measured, "
          f"{'every candle of each' if complete else 'NOT every candle'} committed "
          f"({[n for _, n in per_minute]}); close -> row committed p50 {p50:.3f} s, "
          f"p99 {p99:.3f} s, max {max(lat, default=float('nan')):.3f} s "
          f"(target p99 <= {TARGET_P99_S:.2f} s: {'met' if p99 <= TARGET_P99_S else 'NOT met'})")
    print(f"stream: {report[-1] if report else '(no report line)'}"
          + (f"; USD-M websocket connections opened: {usdm}" if usdm is not None else "")
          + (f"; funding rows stored: {funding}" if funding is not None else ""))
    print(f"(logs in {log_dir})")
    return {"p50": p50, "p99": p99, "complete": complete, "minutes": len(per_minute)}


def _has(url: str) -> bool:
    return bool(query(url, "SELECT 1 FROM information_schema.tables WHERE table_name = "
                           "'funding_rates'"))


def main() -> dict:
    log_dir = Path(tempfile.mkdtemp(prefix="ohlcv-bench-futures-ws-"))
    with pg_and_kafka() as (cluster, broker):
        return bench(cluster, broker, log_dir)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
