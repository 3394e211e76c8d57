"""The websocket source on real sockets: the simulator's kline streams with faults, the feed
adapter, and `stream`/`run --source ws` end to end through Kafka into PostgreSQL."""

from __future__ import annotations

import logging
import queue
import time

import pytest

from conftest import run_cli
from ohlcv_cli.adapters.binance.ws import BinanceWsFeed
from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.feed import Connected, Disconnected
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_sim import SimConfig, SimServer, WsFaults
from test_live import (
    Proc, assert_complete_and_exact, both, live_env, now_ms, rows, stored_at_least, stored_until,
    wait_for,
)

TF = parse_timeframe("1s")
MARKETS = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT", "SOL/USDT": "SOLUSDT"}


@pytest.fixture
def ws_sim():
    servers = []

    def make(**faults) -> SimServer:
        server = SimServer(SimConfig(), ws_port=0, ws_faults=WsFaults(**faults)).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


def collect(feed: BinanceWsFeed, seconds: float) -> list:
    q: queue.SimpleQueue = queue.SimpleQueue()
    feed.start(q.put)
    time.sleep(seconds)
    feed.close()
    out = []
    while not q.empty():
        out.append(q.get())
    return out


def candles_of(events) -> list[Candle]:
    return [e for e in events if isinstance(e, Candle)]


def assert_exact(sim: SimServer, candles: list[Candle]) -> None:
    assert candles
    for c in candles:
        assert c.source == "stream" and c.timeframe == "1s"
        assert rows([c]) == [sim.final_row(c.symbol, "1s", c.open_time)], c
        assert c.open_time + 1000 <= now_ms()  # never an open candle


# --- the feed adapter on the simulator's socket ---------------------------------------------------

def test_feed_yields_each_final_candle_once_over_several_connections_and_subscribe(ws_sim):
    sim = ws_sim()
    # two streams per connection, one in the URL and one by SUBSCRIBE: two connections, both ways
    feed = BinanceWsFeed(sim.ws_url, MARKETS, TF, max_streams=2, url_streams=1)
    assert feed.connections == 2
    events = collect(feed, 4.5)
    connected = [e for e in events if isinstance(e, Connected)]
    assert sorted(len(e.symbols) for e in connected) == [1, 2]
    stats = sim.ws.stats()
    assert sorted(stats["connection_streams"]) == [1, 2]
    assert stats["subscribe_requests"] == 1 and stats["rate_limit_closes"] == 0
    candles = candles_of(events)
    assert_exact(sim, candles)
    for sym in MARKETS:
        times = [c.open_time for c in candles if c.symbol == sym]
        assert len(times) >= 3, sym  # only the finals (x: true), once each, in order
        assert times == list(range(times[0], times[-1] + 1000, 1000)), sym


def test_malformed_messages_are_logged_and_skipped(ws_sim, caplog):
    sim = ws_sim(malformed_every_s=0.3)
    feed = BinanceWsFeed(sim.ws_url, MARKETS, TF)
    with caplog.at_level(logging.WARNING, logger="ohlcv_cli.adapters.binance.ws"):
        events = collect(feed, 3.5)
    assert sim.ws.stats()["malformed_sent"] >= 5
    assert feed.stats["malformed"] == sim.ws.stats()["malformed_sent"]
    assert "skipped a malformed message" in caplog.text
    assert not [e for e in events if isinstance(e, Disconnected)]  # skipped, not fatal
    assert_exact(sim, candles_of(events))


@pytest.mark.parametrize("faults,reason", [
    ({"shutdown_every_s": 1.2}, "serverShutdown"),
    ({"stall_after_s": 1.0}, "silent"),
    ({"disconnect_every_s": 1.2}, "cut"),
])
def test_feed_reconnects_after_shutdown_stall_and_cut(ws_sim, faults, reason):
    sim = ws_sim(**faults)
    feed = BinanceWsFeed(sim.ws_url, MARKETS, TF, silence_s=1.5, backoff_s=(0.1, 0.5))
    events = collect(feed, 5.0)
    gone = [e for e in events if isinstance(e, Disconnected)]
    assert gone and all(reason in e.reason for e in gone), gone
    assert sum(isinstance(e, Connected) for e in events) >= 2
    assert sim.ws.stats()["connections"] >= 2
    assert_exact(sim, candles_of(events))


def test_a_connection_is_replaced_before_its_age_limit(ws_sim):
    sim = ws_sim()
    feed = BinanceWsFeed(sim.ws_url, MARKETS, TF, max_age_s=1.2)  # Binance's 24 h, shortened
    events = collect(feed, 3.0)
    gone = [e for e in events if isinstance(e, Disconnected)]
    assert gone and all(e.reason == "24 h" for e in gone), gone
    assert sim.ws.stats()["connections"] >= 2
    assert_exact(sim, candles_of(events))


def test_unreachable_socket_keeps_retrying_with_backoff():
    feed = BinanceWsFeed("ws://127.0.0.1:9", MARKETS, TF, backoff_s=(0.1, 0.2))
    events = collect(feed, 1.0)
    assert events == []  # nothing to report: never connected (REST covers meanwhile)


# --- the commands ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message_", [
    (["--source", "pigeon"], "error: invalid setting STREAM_SOURCE: must be 'ws'"),
    (["--stream-url", "http://127.0.0.1:1"], "error: invalid setting OHLCV_STREAM_URL: must be a ws:// or wss:// URL"),
])
def test_bad_source_or_stream_url(args, message_):
    for command in ("stream", "run"):
        r = run_cli(command, *args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith(message_), r.stderr


def run_env(sim: SimServer, **extra) -> dict:
    return {"OHLCV_EXCHANGE_URL": sim.url, "OHLCV_STREAM_URL": sim.ws_url, "TIMEFRAME": "1s",
            "SYMBOLS": ",".join(MARKETS), "REALTIME_DELAY_SECONDS": "0.5", **extra}


def sqlite_candles(repo_for, tmp_path, sym):
    return repo_for(f"sqlite:///{tmp_path / 'ohlcv.db'}").candles("binance", sym, "1s")


def test_run_ws_one_stream_per_connection_survives_stalls(ws_sim, repo_for, tmp_path):
    sim = ws_sim(stall_after_s=3.0, drop_final_share=0.2)
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 20))
    p = Proc(tmp_path, "run", "run", "--start", start, "--max-cycles", "14",
             env=run_env(sim, STREAM_STREAMS_PER_CONNECTION="1"))
    assert p.p.wait(90) == 0, p.text()[-3000:]
    log = p.text()
    assert sorted(sim.ws.stats()["connection_streams"])[:3] == [1, 1, 1]
    assert "silent for 6s; reconnecting" in log  # the stalled connections were given up
    assert "candles from the socket" in log
    repo = repo_for(f"sqlite:///{tmp_path / 'ohlcv.db'}")
    assert_complete_and_exact(repo, sim, symbols=tuple(MARKETS), min_count=30)


@pytest.mark.parametrize("how", ["--source rest", "OHLCV_EXCHANGE_URL without OHLCV_STREAM_URL"])
def test_run_over_rest_never_opens_the_socket(ws_sim, repo_for, tmp_path, how):
    sim = ws_sim()
    env = run_env(sim)
    args = ["--source", "rest"] if how == "--source rest" else []
    if not args:
        del env["OHLCV_STREAM_URL"]  # a REST double and Binance's real socket must never mix
    p = Proc(tmp_path, "run", "run", *args, "--days", "1", "--max-cycles", "4",
             "--symbols", "BTC/USDT", env=env)
    assert p.p.wait(90) == 0, p.text()[-3000:]
    assert sim.ws.stats()["connections"] == 0
    assert ("streaming over REST only" in p.text()) == (not args)
    assert "cycle 4:" in p.text()  # the REST stream's own log line, as before
    repo = repo_for(f"sqlite:///{tmp_path / 'ohlcv.db'}")
    stored = repo.candles("binance", "BTC/USDT", "1s")
    assert {c.source for c in stored} == {"backfill", "stream"}
    assert_complete_and_exact(repo, sim, symbols=("BTC/USDT",), min_count=86_400)


@pytest.mark.kafka
def test_end_to_end_through_kafka_with_socket_faults_and_a_restart(pg_url, repo_for, ws_sim, kafka,
                                                                   topic, tmp_path):
    broker, _ = kafka
    sim = ws_sim(drop_final_share=0.25, disconnect_every_s=4.0, malformed_every_s=1.5)
    env = live_env(pg_url, sim, broker, topic, OHLCV_STREAM_URL=sim.ws_url,
                   SYMBOLS="BTC/USDT,ETH/USDT")
    consume = Proc(tmp_path, "consume", "consume", env=env)
    stream = Proc(tmp_path, "stream", "stream", env=env)
    repo = repo_for(pg_url)
    try:
        syms = ("BTC/USDT", "ETH/USDT")
        # until the faults have happened and enough is stored, however slowly the stream started
        assert wait_for(both(stored_until(repo, now_ms() + 9000, syms), stored_at_least(repo, 10, syms),
                             lambda: "reconnecting" in stream.text()
                             and "skipped a malformed message" in stream.text()),
                        timeout=60), stream.text()[-3000:]
        assert stream.stop() == 143
        first_log = stream.text()
        time.sleep(3)  # candles close while nothing streams: the restart must fetch them
        stream = Proc(tmp_path, "stream2", "stream", env=env)
        assert wait_for(both(stored_until(repo, now_ms() + 5000, syms), stored_at_least(repo, 16, syms)),
                        timeout=45), stream.text()[-3000:]
        assert stream.stop() == 143
        time.sleep(1.5)  # the consumer writes the last published candles
    finally:
        if stream.p.poll() is None:
            stream.stop()
        consume.stop()
    assert "skipped a malformed message" in first_log
    assert "reconnecting" in first_log
    stats = sim.ws.stats()
    assert stats["finals_dropped"] > 0 and stats["disconnects"] > 0
    assert_complete_and_exact(repo, sim, min_count=15)
    # each candle was published once, across the faults and the restart
    keys = [(m["symbol"], m["open_time"]) for m in topic_messages(broker, topic)]
    assert len(keys) == len(set(keys)) == repo.count()


def topic_messages(broker: str, topic: str) -> list[dict]:
    import json

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        return [json.loads(r.value) for r in consumer]
    finally:
        consumer.close()


# --- the reconciliation rules, with in-memory fakes of the service's ports ----------------------

class FakeFetcher:
    exchange_id = "binance"

    def __init__(self, now: int) -> None:
        self.now = now
        self.calls: list[tuple[str, int, int]] = []

    def now_ms(self) -> int:
        return self.now

    def check_symbols(self, symbols) -> None:
        pass

    def closed_end(self, tf) -> int:
        return tf.floor(self.now)

    def fetch_range(self, symbol, tf, start, end, source="backfill"):
        self.calls.append((symbol, start, end))
        end = min(end, tf.floor(self.now))
        yield [fake_candle(symbol, t, "rest") for t in range(start, end, tf.ms)]


def fake_candle(symbol: str, t: int, origin: str) -> Candle:
    # the same values from either path (both are final); `origin` rides in `close` for the test
    return Candle("binance", symbol, "1s", t, "1", "3", "1", origin == "socket" and "2" or "2.0",
                  "1", "1", 1, "0", "0", "stream")


class FakeFeed:
    def __init__(self) -> None:
        self.emit = None

    def start(self, emit) -> None:
        self.emit = emit

    def close(self) -> None:
        pass


class RecordingSink:
    def __init__(self, fail_times: int = 0) -> None:
        self.published: list[Candle] = []
        self.fail_times = fail_times

    def publish(self, candles, fetched_at=None) -> int:
        from ohlcv_cli.core.errors import BrokerUnavailable

        if self.fail_times:
            self.fail_times -= 1
            raise BrokerUnavailable("broker down (fake)")
        self.published.extend(candles)
        return len(candles)


def start_ws_stream(sink, now: int, delay_s: float = 30.0):
    import threading

    from ohlcv_cli.services.stream import Stream
    from ohlcv_cli.services.ws_stream import WsStream

    fetcher, feed = FakeFetcher(now), FakeFeed()
    service = WsStream(Stream(fetcher, sink, ["BTC/USDT"], TF, delay_s=delay_s, retry_s=0.05), feed)
    service.stream.init_watermarks()
    wm = service.state.watermarks["BTC/USDT"]
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    assert wait_for(lambda: feed.emit is not None, 5)
    return service, fetcher, feed, thread, wm


def socket(feed, t: int) -> None:
    feed.emit(fake_candle("BTC/USDT", t, "socket"))


def test_after_each_connect_rest_fills_up_to_the_first_socket_candle_before_anything_newer():
    sink = RecordingSink()
    now = 1_700_000_000_000
    service, fetcher, feed, thread, wm = start_ws_stream(sink, now)
    try:
        feed.emit(Connected(0, ("BTC/USDT",)))
        socket(feed, wm + 3000)
        assert wait_for(lambda: len(sink.published) == 4, 5), sink.published
        assert fetcher.calls == [("BTC/USDT", wm, wm + 3000)]
        feed.emit(Disconnected(0, ("BTC/USDT",), "cut"))
        feed.emit(Connected(0, ("BTC/USDT",)))
        socket(feed, wm + 7000)
        socket(feed, wm + 8000)
        assert wait_for(lambda: len(sink.published) == 9, 5), sink.published
        assert fetcher.calls[1] == ("BTC/USDT", wm + 4000, wm + 7000)
        socket(feed, wm + 5000)  # late: REST delivered it already
        socket(feed, wm + 9000)
        assert wait_for(lambda: len(sink.published) == 10, 5)
    finally:
        service.stream.stop.set()
        thread.join(5)
    times = [c.open_time for c in sink.published]
    assert times == list(range(wm, wm + 10_000, 1000))  # in order, each once
    origins = ["socket" if c.close == "2" else "rest" for c in sink.published]
    assert origins == ["rest"] * 3 + ["socket"] + ["rest"] * 3 + ["socket"] * 3
    assert service.counters.from_socket == 4 and service.counters.from_rest == 6
    assert service.counters.reconnects == 1 and service.counters.dropped == 1


def test_a_final_event_missing_delay_after_the_close_is_fetched_through_rest():
    sink = RecordingSink(fail_times=1)  # and the first publish finds the broker down
    now = 1_700_000_000_000
    service, fetcher, feed, thread, wm = start_ws_stream(sink, now, delay_s=2.0)
    try:
        feed.emit(Connected(0, ("BTC/USDT",)))
        socket(feed, wm)
        assert wait_for(lambda: len(sink.published) == 1, 5), sink.published
        assert fetcher.calls == []  # the socket was in time: no REST
        # wm + 1000 never comes; wm + 2000 does: nothing newer is published until REST has
        # fetched the missing one, once its close is REALTIME_DELAY_SECONDS old
        socket(feed, wm + 2000)
        time.sleep(0.3)
        assert len(sink.published) == 1 and fetcher.calls == []
        fetcher.now = wm + 2000 + 2000  # wm + 1000 closed 2 s ago
        assert wait_for(lambda: len(sink.published) == 3, 5), sink.published
    finally:
        service.stream.stop.set()
        thread.join(5)
    assert fetcher.calls == [("BTC/USDT", wm + 1000, wm + 2000)]
    assert [c.open_time for c in sink.published] == [wm, wm + 1000, wm + 2000]
