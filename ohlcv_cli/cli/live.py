"""`ohlcv stream`, `ohlcv consume`, `ohlcv run` and `ohlcv topic create`: the live pipeline."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated, Optional

import typer

from ohlcv_cli.cli.common import (
    BrokerOpt, DatabaseOpt, ExchangeUrlOpt, MetricsOpt, SymbolsOpt, TimeframeOpt, TopicOpt,
    console, gap_repository, make_engine_for, make_fetcher, open_repository, settings,
)
from ohlcv_cli.core.errors import ConfigError, OhlcvError
from ohlcv_cli.core.ports import Metrics
from ohlcv_cli.core.settings import Settings
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import parse_iso

log = logging.getLogger("ohlcv.live")
DEFAULT_BROKER = "127.0.0.1:9092"

PartitionsOpt = Annotated[Optional[int], typer.Option("--partitions", help="Partitions if the topic is created [env: TOPIC_PARTITIONS]")]
GroupOpt = Annotated[Optional[str], typer.Option("--group", help="Consumer group [env: CONSUMER_GROUP]")]
SourceOpt = Annotated[Optional[str], typer.Option("--source", help="ws: the exchange's websocket, REST as the safety net; rest: poll REST at each close [env: STREAM_SOURCE]")]
StreamUrlOpt = Annotated[Optional[str], typer.Option("--stream-url", help="Websocket base URL [env: OHLCV_STREAM_URL]")]
MaxCyclesOpt = Annotated[Optional[int], typer.Option("--max-cycles", help="Stop after N cycles (testing)", hidden=True)]


def _stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM set the event: the work at hand finishes, then the command exits 0."""
    stop = threading.Event()

    def handler(signum, _frame) -> None:
        log.info("%s received: finishing the work at hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _metrics(port: int | None) -> Metrics:
    if port is None:
        return Metrics()
    from ohlcv_cli.adapters.prometheus_metrics import serve

    try:
        return serve(port)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None


def _broker(s: Settings) -> str:
    from ohlcv_cli.adapters.kafka_bus import check_broker_address

    return check_broker_address(s.kafka_broker or DEFAULT_BROKER)


def _stream_service(s: Settings, sink, repo, metrics: Metrics, stop: threading.Event):
    from ohlcv_cli.services.stream import Stream

    fetcher = make_fetcher(s)
    service = Stream(fetcher, sink, s.symbols, parse_timeframe(s.timeframe), repo=repo,
                     delay_s=s.realtime_delay_seconds,
                     max_catchup_ms=s.stream_max_catchup_minutes * 60_000, metrics=metrics, stop=stop)
    if s.stream_source != "ws":
        return service
    if s.websocket_url() is None:
        log.warning("OHLCV_EXCHANGE_URL is set but OHLCV_STREAM_URL is not: streaming over REST "
                    "only (set OHLCV_STREAM_URL to the same exchange's websocket)")
        return service
    return _ws_service(s, service, fetcher)


def _ws_service(s: Settings, service, fetcher):
    """The websocket source in front of the REST stream (which stays its safety net)."""
    from ohlcv_cli.adapters.binance_ws import BinanceWsFeed
    from ohlcv_cli.services.ws_stream import WsStream

    fetcher.check_symbols(s.symbols)
    url = s.websocket_url()
    feed = BinanceWsFeed(url, {sym: fetcher.market_id(sym) for sym in s.symbols},
                         parse_timeframe(s.timeframe), exchange_id=fetcher.exchange_id,
                         max_streams=s.stream_streams_per_connection)
    log.info("websocket source %s: %d streams on %d connections", url, len(s.symbols),
             feed.connections)
    return WsStream(service, feed)


def stream(
    ctx: typer.Context,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    kafka_broker: BrokerOpt = None,
    topic: TopicOpt = None,
    partitions: PartitionsOpt = None,
    database_url: DatabaseOpt = None,
    exchange_url: ExchangeUrlOpt = None,
    metrics_port: MetricsOpt = None,
    source: SourceOpt = None,
    stream_url: StreamUrlOpt = None,
    max_cycles: MaxCyclesOpt = None,
) -> None:
    """Publish each closed candle to Kafka as it closes, resuming after the newest stored one."""
    from ohlcv_cli.adapters.kafka_bus import KafkaPublisher, ensure_topic

    s = settings(ctx, symbols=symbols, timeframe=timeframe, kafka_broker=kafka_broker,
                 topic_name=topic, topic_partitions=partitions, database_url=database_url,
                 exchange_url=exchange_url, metrics_port=metrics_port, stream_source=source,
                 stream_url=stream_url)
    parse_timeframe(s.timeframe)
    broker = _broker(s)
    repo = open_repository(s, make_engine_for(s))
    ensure_topic(broker, s.topic_name, s.topic_partitions, timeout_s=s.kafka_timeout_seconds)
    stop = _stop_on_signals()
    publisher = KafkaPublisher(broker, s.topic_name, timeout_s=s.kafka_timeout_seconds)
    service = _stream_service(s, publisher, repo, _metrics(s.metrics_port), stop)
    try:
        state = service.run(max_cycles=max_cycles)
    finally:
        publisher.close()
    log.info("stream stopped after %d cycles, %d candles published", state.cycles, state.published)


def consume(
    ctx: typer.Context,
    kafka_broker: BrokerOpt = None,
    topic: TopicOpt = None,
    group: GroupOpt = None,
    database_url: DatabaseOpt = None,
    metrics_port: MetricsOpt = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Consumer processes in the group, this one included [env: CONSUMER_WORKERS]")] = None,
    max_idle_polls: Annotated[Optional[int], typer.Option("--max-idle-polls", help="Stop after N empty polls (testing)", hidden=True)] = None,
) -> None:
    """Write candles from Kafka into the database; offsets are committed after the rows."""
    from ohlcv_cli.adapters.kafka_bus import KafkaCandleSource, KafkaPublisher
    from ohlcv_cli.services.consume import Consume

    s = settings(ctx, kafka_broker=kafka_broker, topic_name=topic, consumer_group=group,
                 database_url=database_url, metrics_port=metrics_port, consumer_workers=workers)
    broker = _broker(s)
    repo = open_repository(s, make_engine_for(s))
    stop = _stop_on_signals()
    # More group members in processes of their own: the per-message work is Python, bound to one
    # core per process by the GIL. This process is the first member.
    children = _spawn_consumers(s, s.consumer_workers - 1, max_idle_polls)
    source = KafkaCandleSource(broker, s.topic_name, s.consumer_group, timeout_s=s.kafka_timeout_seconds)
    dlq = KafkaPublisher(broker, s.topic_name, timeout_s=s.kafka_timeout_seconds)
    try:
        stats = Consume(source, repo, dlq, metrics=_metrics(s.metrics_port), stop=stop).run(
            max_idle_polls=max_idle_polls)
    finally:
        source.close()
        dlq.close()
        failed = _stop_children(children)
    log.info("consume stopped: %d messages, %d rows written, %d dead-lettered",
             stats.messages, stats.stored, stats.dead_lettered)
    if failed:
        raise OhlcvError(f"{failed} of {len(children)} consumer worker processes failed")


def _spawn_consumers(s: Settings, n: int, max_idle_polls: int | None) -> list:
    """Start n more `ohlcv consume` processes with the same settings (passed by environment)."""
    import os
    import subprocess
    import sys

    if n <= 0:
        return []
    env = dict(os.environ)
    env.update({
        "KAFKA_BROKER": _broker(s), "TOPIC_NAME": s.topic_name, "CONSUMER_GROUP": s.consumer_group,
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
    """SIGTERM (each finishes its batch and commits), wait; returns how many failed."""
    for p in children:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    return sum(1 for p in children if p.wait(120) != 0)


def run(
    ctx: typer.Context,
    days: Annotated[Optional[int], typer.Option("--days", help="Backfill this many days first [env: BACKFILL_DAYS]")] = None,
    start: Annotated[Optional[str], typer.Option("--start", help="Backfill from this ISO time instead of --days")] = None,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    kafka_broker: BrokerOpt = None,
    topic: TopicOpt = None,
    database_url: DatabaseOpt = None,
    exchange_url: ExchangeUrlOpt = None,
    metrics_port: MetricsOpt = None,
    source: SourceOpt = None,
    stream_url: StreamUrlOpt = None,
    max_cycles: MaxCyclesOpt = None,
) -> None:
    """One process for one machine: backfill, then stream and consume (through Kafka when
    KAFKA_BROKER is set, else straight into the database)."""
    from ohlcv_cli.cli.backfill import summary_table
    from ohlcv_cli.services.backfill import Backfill
    from ohlcv_cli.services.stream import RepositorySink

    if days is not None and days <= 0:
        raise ConfigError(f"--days must be a positive whole number, got {days}")
    if days is not None and start is not None:
        raise ConfigError("use either --days or --start, not both")
    start_ms = parse_iso(start, "--start") if start else None
    s = settings(ctx, backfill_days=days, symbols=symbols, timeframe=timeframe,
                 kafka_broker=kafka_broker, topic_name=topic, database_url=database_url,
                 exchange_url=exchange_url, metrics_port=metrics_port, stream_source=source,
                 stream_url=stream_url)
    tf = parse_timeframe(s.timeframe)
    engine = make_engine_for(s)
    fetcher = make_fetcher(s)
    fetcher.check_symbols(s.symbols)
    repo = open_repository(s, engine)
    metrics = _metrics(s.metrics_port)
    result = Backfill(fetcher, repo, concurrency=s.backfill_concurrency,
                      batch_size=s.backfill_batch_size, gaps=gap_repository(repo)).run(
        s.symbols, tf, days=None if start_ms else s.backfill_days, start=start_ms)
    console.print(summary_table(result))
    stop = _stop_on_signals()
    if not s.kafka_broker:
        log.info("no KAFKA_BROKER: streaming straight into the database")
        state = _stream_service(s, RepositorySink(repo, metrics), repo, metrics, stop).run(max_cycles=max_cycles)
        log.info("run stopped after %d cycles, %d candles stored", state.cycles, state.published)
        return
    _run_through_kafka(s, repo, metrics, stop, max_cycles)


def _run_through_kafka(s: Settings, repo, metrics: Metrics, stop: threading.Event,
                       max_cycles: int | None) -> None:
    from ohlcv_cli.adapters.kafka_bus import KafkaCandleSource, KafkaPublisher, ensure_topic
    from ohlcv_cli.services.consume import Consume

    broker = _broker(s)
    ensure_topic(broker, s.topic_name, s.topic_partitions, timeout_s=s.kafka_timeout_seconds)
    publisher = KafkaPublisher(broker, s.topic_name, timeout_s=s.kafka_timeout_seconds)
    source = KafkaCandleSource(broker, s.topic_name, s.consumer_group, timeout_s=s.kafka_timeout_seconds)
    consumer = Consume(source, repo, publisher, metrics=metrics, stop=stop)
    failure: list[BaseException] = []

    def consume_loop() -> None:
        try:
            consumer.run()
        except OhlcvError as exc:  # surfaced by the main thread below
            failure.append(exc)
            stop.set()

    thread = threading.Thread(target=consume_loop, name="consume", daemon=True)
    thread.start()
    try:
        _stream_service(s, publisher, repo, metrics, stop).run(max_cycles=max_cycles)
    finally:
        stop.set()
        thread.join(timeout=60)
        source.close()
        publisher.close()
    if failure:
        raise failure[0]


def topic_create(
    ctx: typer.Context,
    kafka_broker: BrokerOpt = None,
    topic: TopicOpt = None,
    partitions: PartitionsOpt = None,
) -> None:
    """Create the topic and its dead-letter topic (`<topic>.dlq`) if they are missing."""
    from ohlcv_cli.adapters.kafka_bus import ensure_topic

    s = settings(ctx, kafka_broker=kafka_broker, topic_name=topic, topic_partitions=partitions)
    created = ensure_topic(_broker(s), s.topic_name, s.topic_partitions, timeout_s=s.kafka_timeout_seconds)
    console.print(f"topic {s.topic_name}: {'created' if created else 'already there'} "
                  f"({s.topic_partitions} partitions when created)", markup=False)


topic_app = typer.Typer(help="Kafka topic administration.", no_args_is_help=True)
topic_app.command("create")(topic_create)
