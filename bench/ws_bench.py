"""The websocket source: close -> row committed in PostgreSQL through Kafka, websocket vs REST;
1,000 symbols on 1m from one stream process (latency and the REST weight it still spends); 200
symbols on 1s for minutes with nothing missing.

Every `ohlcv` here is a process of its own (sim, stream, consume), on a durable PostgreSQL and a
real Kafka broker. Sizes: BENCH_WS_SECONDS (a, per source), BENCH_WS_1M_MINUTES (b),
BENCH_WS_1S_MINUTES (c)."""

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

A_SECONDS = int(os.environ.get("BENCH_WS_SECONDS", 40))
B_MINUTES = int(os.environ.get("BENCH_WS_1M_MINUTES", 3))
C_MINUTES = float(os.environ.get("BENCH_WS_1S_MINUTES", 5))
BINANCE_WEIGHT_PER_MINUTE = 6000


def _symbols(n: int) -> list[str]:
    from ohlcv_sim import default_symbols

    return [s.symbol for s in default_symbols(max(0, n - 9))][:n]


def _sim(extra: int) -> Sim:
    return Sim("--ws-port", str(free_port()), "--extra-symbols", str(extra))


def _ws_url(sim: Sim) -> str:
    line = sim.first_line
    return line.split("websocket streams on ")[1].split(" ")[0]


def _pipeline(sim: Sim, url: str, broker: str, topic: str, symbols: list[str], timeframe: str,
              seconds: float, source: str, log_dir: Path) -> None:
    env = {**os.environ, "DATABASE_URL": url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic,
           "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_STREAM_URL": _ws_url(sim), "TIMEFRAME": timeframe,
           "SYMBOLS": ",".join(symbols), "REALTIME_DELAY_SECONDS": "1", "LOG_LEVEL": "INFO",
           "CONSUMER_GROUP": f"g-{topic}", "STREAM_SOURCE": source, "TOPIC_PARTITIONS": "4"}
    run_pipeline(env, seconds, log_dir, prefix=f"{topic}-")


def _latencies(url: str, tf_s: int, after_ms: int) -> list[float]:
    rows = query(url, "SELECT extract(epoch FROM ingested_at - open_time) - %s FROM candles"
                      " WHERE open_time >= to_timestamp(%s)", tf_s, after_ms / 1000)
    return [float(r[0]) for r in rows]


def _q(lat: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(lat, n=100)
    return q[49], q[98]


def _stream_line(log_dir: Path, topic: str, needle: str) -> str:
    text = (log_dir / f"{topic}-stream.log").read_text()
    lines = [ln for ln in text.splitlines() if needle in ln]
    return lines[-1].split(": ", 1)[-1] if lines else "(no line)"


def bench_latency(cluster, broker: str, log_dir: Path) -> dict:
    """(a) 1s, 20 symbols: websocket vs REST, close -> row committed."""
    symbols = _symbols(20)
    out = {}
    for source in ("ws", "rest"):
        sim = _sim(11)
        url = fresh_db(cluster, f"bench_ws_a_{source}")
        t0 = int(time.time() * 1000) + 8000  # leave the start-up catch-up out
        _pipeline(sim, url, broker, f"ws-a-{source}", symbols, "1s", A_SECONDS, source, log_dir)
        sim.stop()
        lat = _latencies(url, 1, t0)
        p50, p99 = _q(lat)
        out[source] = (p50, p99, len(lat))
        print(f"(a) 1s, 20 symbols, --source {source}: close -> row committed p50 {p50:.2f} s, "
              f"p99 {p99:.2f} s, max {max(lat):.2f} s ({len(lat)} candles)")
    print(f"(a) websocket p99 {out['ws'][1]:.2f} s (target <= 0.30 s) vs REST p99 {out['rest'][1]:.2f} s:"
          f" {out['rest'][1] / out['ws'][1]:.1f}x sooner")
    return out


def bench_many_symbols(cluster, broker: str, log_dir: Path) -> dict:
    """(b) 1,000 symbols on 1m from one stream process."""
    symbols = _symbols(1000)
    sim = _sim(991)
    url = fresh_db(cluster, "bench_ws_b")
    start = time.time()
    # start 10 s after a minute so that the first close is the start-up's, not measured
    first_close = (int(start) // 60 + 1) * 60
    seconds = first_close - start + 60 * B_MINUTES + 8
    _pipeline(sim, url, broker, "ws-b", symbols, "1m", seconds, "ws", log_dir)
    stats = sim.stats()
    sim.stop()
    after = (first_close + 60) * 1000 - 60_000  # candles closing from the second close on
    lat = _latencies(url, 60, after)
    per_minute = query(url, "SELECT open_time, count(*) FROM candles WHERE open_time >= to_timestamp(%s)"
                            " GROUP BY open_time ORDER BY open_time", after / 1000)
    p50, p99 = _q(lat)
    complete = all(n == 1000 for _, n in per_minute)
    # steady state: whole weight windows (minutes) after the first close the stream saw
    windows = {int(k): v for k, v in stats["windows"].items()}  # minutes with any request
    steady = range(first_close // 60 + 1, int(start + seconds - 8) // 60)
    weight = max((windows.get(k, 0) for k in steady), default=0)
    print(f"(b) 1m, 1,000 symbols, one stream process: {len(per_minute)} minutes measured, "
          f"{'every candle of each' if complete else 'NOT every candle'} committed "
          f"({[n for _, n in per_minute]}); close -> row committed p50 {p50:.2f} s, p99 {p99:.2f} s, "
          f"max {max(lat):.2f} s (target p99 <= 1.50 s)")
    print(f"(b) REST weight in steady state ({len(steady)} whole minutes): at most {weight} per minute = "
          f"{weight / BINANCE_WEIGHT_PER_MINUTE:.1%} of Binance's 6,000 (target <= 5 %); "
          f"stream: {_stream_line(log_dir, 'ws-b', 'websocket stream:')}")
    return {"p50": p50, "p99": p99, "complete": complete, "weight": weight}


def bench_keeping_up(cluster, broker: str, log_dir: Path) -> dict:
    """(c) 1s candles for 200 symbols in one process for minutes: nothing missing."""
    from ohlcv_sim import SimConfig, SimServer, default_symbols

    symbols = _symbols(200)
    sim = _sim(191)
    url = fresh_db(cluster, "bench_ws_c")
    _pipeline(sim, url, broker, "ws-c", symbols, "1s", C_MINUTES * 60, "ws", log_dir)
    sim.stop()
    rows = query(url, "SELECT symbol, min(open_time), max(open_time), count(*) FROM candles GROUP BY symbol")
    first = max(r[1] for r in rows)
    last = min(r[2] for r in rows)
    span = int((last - first).total_seconds()) + 1
    counts = query(url, "SELECT symbol, count(*) FROM candles WHERE open_time BETWEEN %s AND %s "
                        "GROUP BY symbol", first, last)
    missing = sum(span - n for _, n in counts) + (len(symbols) - len(counts)) * span
    # exact: every stored value equals the simulator's final candle (recomputed here)
    local = SimServer(SimConfig(symbols=default_symbols(191)))
    t0 = int(first.timestamp() * 1000)
    differ = 0
    for sym in symbols[:: max(1, len(symbols) // 20)]:
        stored = query(url, "SELECT open::text, high::text, low::text, close::text, volume::text,"
                            " trades FROM candles WHERE symbol = %s AND open_time BETWEEN %s AND %s"
                            " ORDER BY open_time", sym, first, last)
        want = [(r[1], r[2], r[3], r[4], r[5], r[8]) for r in local.final_rows(sym, "1s", t0, t0 + span * 1000)]
        differ += sum(1 for a, b in zip(stored, want) if tuple(a) != b) + abs(len(stored) - len(want))
    local.stop()
    lat = _latencies(url, 1, t0 + 10_000)  # after the start-up catch-up through REST
    p50, p99 = _q(lat)
    print(f"(c) 1s, 200 symbols, one stream process, {C_MINUTES:g} min: {span} s x 200 = {span * 200:,} "
          f"candles expected, {missing} missing, {differ} differing in 20 symbols checked; close -> row "
          f"committed p50 {p50:.2f} s, p99 {p99:.2f} s; "
          f"stream: {_stream_line(log_dir, 'ws-c', 'websocket stream:')}")
    return {"missing": missing, "differ": differ, "p99": p99}


def main() -> dict:
    log_dir = Path(tempfile.mkdtemp(prefix="ohlcv-bench-ws-"))
    with pg_and_kafka() as (cluster, broker):
        out = {"a": bench_latency(cluster, broker, log_dir)}
        out["b"] = bench_many_symbols(cluster, broker, log_dir)
        out["c"] = bench_keeping_up(cluster, broker, log_dir)
        print(f"(logs in {log_dir})")
        return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    which = sys.argv[1:] or ["all"]
    if which == ["all"]:
        main()
    else:
        logs = Path(tempfile.mkdtemp(prefix="ohlcv-bench-ws-"))
        with pg_and_kafka() as (cluster, broker):
            for w in which:
                {"a": bench_latency, "b": bench_many_symbols, "c": bench_keeping_up}[w](
                    cluster, broker, logs)
            print(f"(logs in {logs})")
