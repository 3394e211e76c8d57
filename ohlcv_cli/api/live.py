"""The live pipeline: stream, consume, run, topic_create.

Each runs until `stop` (a threading.Event) is set; the caller decides what sets it (the CLI: SIGINT
and SIGTERM). Nothing here installs signal handlers, prints or exits.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Callable

from ohlcv_cli.api import wiring
from ohlcv_cli.api.history import Time, _now_ms, history_window
from ohlcv_cli.api.wiring import settings_for
from ohlcv_cli.core.errors import OhlcvError, WorkerDied
from ohlcv_cli.core.markets import market_of
from ohlcv_cli.core.symbols import is_symbol
from ohlcv_cli.core.ports import Metrics
from ohlcv_cli.core.settings import Settings
from ohlcv_cli.core.window import HistoryWindow
from ohlcv_cli.services.backfill import Backfill, BackfillResult, Progress
from ohlcv_cli.services.consume import Consume, ConsumeStats
from ohlcv_cli.services.stream import RepositorySink, Stream, StreamState

log = logging.getLogger("ohlcv.live")


@dataclass(frozen=True)
class TopicResult:
    topic: str
    created: bool  # False: it was there already
    partitions: int  # the partitions it was created with (when created)


@dataclass(frozen=True)
class RunResult:
    backfill: BackfillResult
    stream: StreamState | None  # None: the backfill failed for a symbol, nothing was streamed
    through_kafka: bool


def topic_create(settings: Settings | None = None, **overrides) -> TopicResult:
    """Create the topic and its dead-letter topic (`<topic>.dlq`) if they are missing."""
    from ohlcv_cli.adapters.kafka import ensure_topic

    s = settings_for("topic_create", settings, **overrides)
    created = ensure_topic(wiring.broker(s), s.topic_name, s.topic_partitions,
                           timeout_s=s.kafka_timeout_seconds)
    return TopicResult(s.topic_name, created, s.topic_partitions)


def _perpetuals(symbols) -> list[str]:
    return [sym for sym in symbols if market_of(sym).is_perpetual]


def _funding_repository(s: Settings, eng):
    """The funding table's repository when SYMBOLS has perpetuals (live funding), else None."""
    if not _perpetuals(sym for sym in s.symbols if is_symbol(sym)):
        return None
    from ohlcv_cli.api.funding import repository

    return repository(s, eng)


def _stream_service(s: Settings, fetcher, sink, repo, metrics: Metrics,
                    stop: threading.Event, funding_repo=None):
    """The REST stream; with STREAM_SOURCE=ws, the websockets in front of it (one connection
    set per API family; REST stays their safety net and fetches at each close what no
    websocket streams). For perpetuals, live funding: announced by their mark-price streams,
    or polled over REST (premiumIndex) where no websocket runs. Both run(max_cycles) and
    return a StreamState."""
    s = wiring.check_prices(wiring.exchange_symbols(s, fetcher))
    service = Stream(fetcher, sink, s.symbols, s.timeframe, repo=repo,
                     delay_s=s.realtime_delay_seconds,
                     max_catchup_ms=s.stream_max_catchup_minutes * 60_000, metrics=metrics,
                     stop=stop, price=s.candle_price)
    if s.stream_source != "ws":
        service.funding = _live_funding(s, fetcher, sink, funding_repo, poll=True)
        return service
    return _ws_service(s, service, fetcher, sink, funding_repo)


def _live_funding(s: Settings, fetcher, sink, funding_repo, poll: bool = False):
    from ohlcv_cli.adapters.binance.funding import BinanceFunding
    from ohlcv_cli.services.live_funding import LiveFunding

    perpetuals = _perpetuals(s.symbols)
    if not perpetuals or not hasattr(sink, "publish_funding"):
        return None
    return LiveFunding(BinanceFunding(fetcher, None, exchange=s.exchange), sink, perpetuals,
                       exchange=fetcher.exchange_id, now_ms=fetcher.now_ms, repo=funding_repo,
                       catchup_ms=s.stream_max_catchup_minutes * 60_000,
                       poll=perpetuals if poll else ())


def _ws_service(s: Settings, service: Stream, fetcher, sink=None, funding_repo=None):
    from ohlcv_cli.adapters.binance.ws import LAYOUTS, BinanceWsFeed
    from ohlcv_cli.services.ws_stream import FeedGroup, WsStream

    fetcher.check_symbols(s.symbols)
    funding = _live_funding(s, fetcher, sink, funding_repo)
    marked = set(funding.symbols) if funding is not None else set()
    by_family: dict[str, list[str]] = {}
    for sym in s.symbols:
        by_family.setdefault(market_of(sym).family.name, []).append(sym)
    feeds = []
    for family, symbols in by_family.items():
        setting = LAYOUTS[family].setting
        url = s.websocket_url(family)
        if url is None:
            log.warning("OHLCV_EXCHANGE_URL is set but %s is not: streaming over REST only "
                        "for %s (set %s to the same exchange's websocket)", setting,
                        ", ".join(symbols), setting)
            continue
        feed = BinanceWsFeed(url, {sym: fetcher.market_id(sym) for sym in symbols}, s.timeframe,
                             family=family, price=s.candle_price,
                             pairs={sym: market_of(sym).pair for sym in symbols},
                             mark_price=[sym for sym in symbols if sym in marked],
                             exchange_id=fetcher.exchange_id,
                             max_streams=s.stream_streams_per_connection)
        if feed.candle_streams < len(symbols):
            log.info("%s: no websocket stream of %s candles on %s; fetched over REST at each "
                     "close", ", ".join(symbols), s.candle_price, family)
        if not feed.candle_streams and not feed.mark_streams:
            continue
        log.info("websocket source %s (%s): %d kline and %d mark-price streams on %d "
                 "connections", url, family, feed.candle_streams, feed.mark_streams,
                 feed.connections)
        feeds.append(feed)
    if funding is not None:  # perpetuals of a family without a websocket: polled over REST
        funding.poll = set(funding.symbols) - {sym for feed in feeds for sym in feed.marked}
    if not feeds:
        service.funding = funding
        return service
    return WsStream(service, FeedGroup(feeds), funding=funding)


def stream(settings: Settings | None = None, *, stop: threading.Event | None = None,
           max_cycles: int | None = None, price: str | None = None,
           **overrides) -> StreamState:
    """Publish each closed candle to Kafka as it closes, resuming after the newest stored one."""
    from ohlcv_cli.adapters.kafka import KafkaPublisher, ensure_topic

    s = wiring.with_price(settings_for("stream", settings, **overrides), price)
    broker = wiring.broker(s)
    eng = wiring.engine(s)
    repo = wiring.repository(s, eng)
    funding_repo = _funding_repository(s, eng)
    ensure_topic(broker, s.topic_name, s.topic_partitions, timeout_s=s.kafka_timeout_seconds)
    publisher = KafkaPublisher(broker, s.topic_name, timeout_s=s.kafka_timeout_seconds)
    try:
        return _stream_service(s, wiring.riding_out(wiring.fetcher(s)), publisher, repo,
                               wiring.metrics(s), stop or threading.Event(),
                               funding_repo).run(max_cycles=max_cycles)
    finally:
        publisher.close()


def consume(settings: Settings | None = None, *, stop: threading.Event | None = None,
            max_idle_polls: int | None = None, **overrides) -> ConsumeStats:
    """Write candles from Kafka into the database, committing offsets after the rows. With
    CONSUMER_WORKERS > 1 the other group members run as processes of their own (the per-message
    work is Python, one core per process), stopped when this one stops."""
    from ohlcv_cli.adapters.kafka import KafkaCandleSource, KafkaPublisher

    s = settings_for("consume", settings, **overrides)
    broker = wiring.broker(s)
    eng = wiring.engine(s)
    repo = wiring.repository(s, eng)
    handlers = _handlers(s, eng)
    children = _spawn_consumers(s, broker, s.consumer_workers - 1, max_idle_polls)
    source = KafkaCandleSource(broker, s.topic_name, s.consumer_group,
                               timeout_s=s.kafka_timeout_seconds)
    dlq = KafkaPublisher(broker, s.topic_name, timeout_s=s.kafka_timeout_seconds)
    try:
        stats = Consume(source, repo, dlq, metrics=wiring.metrics(s), stop=stop,
                        listing=wiring.fetcher(s), exchanges=(s.exchange,),
                        handlers=handlers).run(
            max_idle_polls=max_idle_polls)
    finally:
        source.close()
        dlq.close()
        failed = _stop_children(children)
    if failed:
        raise OhlcvError(f"{failed} of {len(children)} consumer worker processes failed")
    return stats


def _handlers(s: Settings, eng) -> dict:
    """The consumer's stores of the other message types on the topic: funding settlements (v2
    "funding" messages of the live stream) into the funding table."""
    from ohlcv_cli.api.funding import repository
    from ohlcv_cli.core import funding_message  # registers the message type

    return {funding_message.FUNDING: repository(s, eng).store}


def _spawn_consumers(s: Settings, broker: str, n: int, max_idle_polls: int | None) -> list:
    """Start n more `ohlcv consume` processes with the same settings (passed by environment)."""
    if n <= 0:
        return []
    env = dict(os.environ)
    env.update({
        "KAFKA_BROKER": broker, "TOPIC_NAME": s.topic_name, "CONSUMER_GROUP": s.consumer_group,
        "DATABASE_URL": s.db_url(), "KAFKA_TIMEOUT_SECONDS": str(s.kafka_timeout_seconds),
        "LOG_LEVEL": s.log_level, "LOG_FORMAT": s.log_format, "CONSUMER_WORKERS": "1",
    })
    env.pop("METRICS_PORT", None)  # one port per host: the first process serves the metrics
    args = [sys.executable, "-m", "ohlcv_cli", "consume"]
    if max_idle_polls is not None:
        args += ["--max-idle-polls", str(max_idle_polls)]
    log.info("starting %d more consumer processes", n)
    return [subprocess.Popen(args, env=env) for _ in range(n)]


def _stop_children(children: list) -> int:
    """SIGTERM (each finishes its batch and commits), wait; returns how many failed (a
    process stopped by a signal exits 128 + its number: Ctrl-C reaches them too)."""
    import signal

    for p in children:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    return sum(1 for p in children if p.wait(120) not in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT))


def run(settings: Settings | None = None, *, days: int | None = None, start: Time = None,
        window: HistoryWindow | None = None, stop: threading.Event | None = None,
        progress: Progress | None = None, file_progress: Progress | None = None,
        on_backfill: Callable[[BackfillResult], None] | None = None,
        max_cycles: int | None = None, price: str | None = None, **overrides) -> RunResult:
    """Backfill the window (the same road as `backfill`: archive files, then REST pages in
    flight), then stream: through Kafka with a consumer thread when KAFKA_BROKER is set, else
    straight into the database. One exchange client serves all three (one markets load, one
    weight budget). When the backfill fails for a symbol nothing is streamed (the result says
    which failed). `on_backfill` gets the backfill's result before the stream starts. If either
    side of the pipeline dies, the other is stopped and WorkerDied raised."""
    asked = history_window(days, start, None, window=window)
    s = wiring.with_price(settings_for("run", settings, **overrides), price)
    stop = stop or threading.Event()
    _check_broker(s)
    eng = wiring.engine(s)
    client = wiring.fetcher(s)
    s = wiring.check_prices(wiring.exchange_symbols(s, client))
    client.check_symbols(s.symbols)
    repo = wiring.repository(s, eng)
    metrics = wiring.metrics(s)
    fill = wiring.history(s, eng, client, repo, stop=stop, progress=progress,
                          file_progress=file_progress)
    result = Backfill(fill).run(s.symbols, s.timeframe, asked.or_days(s.backfill_days, _now_ms()),
                                source=s.backfill_source, price=s.candle_price)
    log.info("backfill done: %d candles written for %d symbols", result.written,
             len(result.symbols))
    if on_backfill is not None:
        on_backfill(result)
    if not result.ok or stop.is_set():
        return RunResult(result, None, bool(s.kafka_broker))
    streaming = wiring.riding_out(client)
    if not s.kafka_broker:
        log.info("no KAFKA_BROKER: streaming straight into the database")
        funding_repo = _funding_repository(s, eng)
        state = _stream_service(s, streaming, RepositorySink(repo, metrics, funding=funding_repo),
                                repo, metrics, stop, funding_repo).run(max_cycles=max_cycles)
        return RunResult(result, state, False)
    return RunResult(result, _run_through_kafka(s, eng, streaming, client, repo, metrics, stop,
                                                max_cycles), True)


def _check_broker(s: Settings) -> None:
    """With KAFKA_BROKER set, the broker must answer (and the topics exist) before the backfill
    starts: a dead broker fails `run` at once (BrokerUnavailable), not after the backfill."""
    if s.kafka_broker:
        from ohlcv_cli.adapters.kafka import ensure_topic

        ensure_topic(wiring.broker(s), s.topic_name, s.topic_partitions,
                     timeout_s=s.kafka_timeout_seconds)


def _run_through_kafka(s: Settings, eng, fetcher, listing, repo, metrics: Metrics,
                       stop: threading.Event, max_cycles: int | None) -> StreamState:
    """The stream and a consumer thread through the topic, which `_check_broker` made sure of
    before the backfill."""
    from ohlcv_cli.adapters.kafka import KafkaCandleSource, KafkaPublisher

    broker = wiring.broker(s)
    publisher = KafkaPublisher(broker, s.topic_name, timeout_s=s.kafka_timeout_seconds)
    source = KafkaCandleSource(broker, s.topic_name, s.consumer_group,
                               timeout_s=s.kafka_timeout_seconds)
    consumer = Consume(source, repo, publisher, metrics=metrics, stop=stop,
                       listing=listing, exchanges=(s.exchange,), handlers=_handlers(s, eng))
    streamer = _stream_service(s, fetcher, publisher, repo, metrics, stop,
                               _funding_repository(s, eng))
    try:
        return supervise(lambda: streamer.run(max_cycles=max_cycles), consumer.run, stop)
    finally:
        source.close()
        publisher.close()


def supervise(stream_side: Callable[[], StreamState], consume_side: Callable[[], object],
              stop: threading.Event, join_timeout_s: float = 60) -> StreamState:
    """Run the consumer in a thread and the stream here. Whichever dies (raises, or the consumer
    returns before `stop` is set) stops the other; then WorkerDied is raised, from the cause."""
    failure: list[BaseException] = []

    def consume_loop() -> None:
        try:
            consume_side()
            if not stop.is_set():
                failure.append(RuntimeError("it returned while the stream was running"))
        except BaseException as exc:  # noqa: BLE001 - any death is fatal, and reported below
            failure.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=consume_loop, name="consume", daemon=True)
    thread.start()
    try:
        state = stream_side()
    except OhlcvError:
        raise
    except Exception as exc:
        raise WorkerDied(f"the stream stopped: {_describe(exc)}") from exc
    finally:
        stop.set()
        thread.join(timeout=join_timeout_s)
    if failure:
        raise WorkerDied(f"the consumer stopped: {_describe(failure[0])}") from failure[0]
    return state


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OhlcvError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
