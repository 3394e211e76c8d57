"""`ohlcv stream`, `ohlcv consume`, `ohlcv run` and `ohlcv topic create`: the live pipeline."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated, Optional

import typer

from ohlcv_cli import api
from ohlcv_cli.cli.backfill import report_backfill
from ohlcv_cli.cli.common import (
    BrokerOpt, DatabaseOpt, ExchangeUrlOpt, MetricsOpt, SymbolsOpt, TimeframeOpt, TopicOpt,
    console, history_window, settings,
)
from ohlcv_cli.core.errors import ConfigError

log = logging.getLogger("ohlcv.live")

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
    s = settings(ctx, "stream", symbols=symbols, timeframe=timeframe, kafka_broker=kafka_broker,
                 topic=topic, partitions=partitions, database_url=database_url,
                 exchange_url=exchange_url, metrics_port=metrics_port, stream_source=source,
                 stream_url=stream_url)
    state = api.stream(s, stop=_stop_on_signals(), max_cycles=max_cycles)
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
    s = settings(ctx, "consume", kafka_broker=kafka_broker, topic=topic, group=group,
                 database_url=database_url, metrics_port=metrics_port, workers=workers)
    stats = api.consume(s, stop=_stop_on_signals(), max_idle_polls=max_idle_polls)
    log.info("consume stopped: %d messages, %d rows written, %d dead-lettered",
             stats.messages, stats.stored, stats.dead_lettered)


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
    KAFKA_BROKER is set, else straight into the database). Exit 1 if the backfill failed for a
    symbol (nothing is streamed then)."""
    if days is not None and start is not None:
        raise ConfigError("use either --days or --start, not both")
    window = history_window(days, start, None)
    s = settings(ctx, "run", symbols=symbols, timeframe=timeframe, kafka_broker=kafka_broker,
                 topic=topic, database_url=database_url, exchange_url=exchange_url,
                 metrics_port=metrics_port, stream_source=source, stream_url=stream_url)
    stop = _stop_on_signals()
    result = api.run(s, window=window, stop=stop, on_backfill=report_backfill,
                     max_cycles=max_cycles)
    if not result.backfill.ok and not stop.is_set():
        raise typer.Exit(1)
    if result.stream is not None:
        log.info("run stopped after %d cycles, %d candles %s", result.stream.cycles,
                 result.stream.published, "published" if result.through_kafka else "stored")


def topic_create(
    ctx: typer.Context,
    kafka_broker: BrokerOpt = None,
    topic: TopicOpt = None,
    partitions: PartitionsOpt = None,
) -> None:
    """Create the topic and its dead-letter topic (`<topic>.dlq`) if they are missing."""
    s = settings(ctx, "topic_create", kafka_broker=kafka_broker, topic=topic,
                 partitions=partitions)
    r = api.topic_create(s)
    console.print(f"topic {r.topic}: {'created' if r.created else 'already there'} "
                  f"({r.partitions} partitions when created)", markup=False)


topic_app = typer.Typer(help="Kafka topic administration.", no_args_is_help=True)
topic_app.command("create")(topic_create)
