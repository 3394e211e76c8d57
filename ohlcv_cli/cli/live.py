"""`ohlcv stream`, `ohlcv consume`, `ohlcv run` and `ohlcv topic create`: the live pipeline."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from ohlcv_cli import api
from ohlcv_cli.cli.backfill import report_backfill
from ohlcv_cli.cli.signals import exit_if_stopped, stopped, watch
from ohlcv_cli.cli.common import (
    BrokerOpt, DatabaseOpt, ExchangeUrlOpt, MetricsOpt, PriceOpt, SymbolsOpt, TimeframeOpt,
    TopicOpt,
    console, history_window, setting_help, settings,
)
from ohlcv_cli.core.errors import ConfigError

log = logging.getLogger("ohlcv.live")

PartitionsOpt = Annotated[Optional[int], typer.Option("--partitions", help=setting_help("Partitions if the topic is created", "topic_partitions"))]
GroupOpt = Annotated[Optional[str], typer.Option("--group", help=setting_help("Consumer group", "consumer_group"))]
SourceOpt = Annotated[Optional[str], typer.Option("--source", help=setting_help("ws: the exchange's websocket, REST as the safety net; rest: poll REST at each close", "stream_source"))]
StreamUrlOpt = Annotated[Optional[str], typer.Option("--stream-url", help=setting_help("Websocket base URL", "stream_url", "wss://stream.binance.com:9443 unless --exchange-url is elsewhere"))]
UsdmStreamUrlOpt = Annotated[Optional[str], typer.Option("--usdm-stream-url", help=setting_help("USD-M futures websocket base URL (klines under its /market route)", "usdm_stream_url", "wss://fstream.binance.com unless --exchange-url is elsewhere"))]
CoinmStreamUrlOpt = Annotated[Optional[str], typer.Option("--coinm-stream-url", help=setting_help("COIN-M futures websocket base URL", "coinm_stream_url", "wss://dstream.binance.com unless --exchange-url is elsewhere"))]
RunBrokerOpt = Annotated[Optional[str], typer.Option("--kafka-broker", help=setting_help("Kafka bootstrap server host:port", "kafka_broker", "none: straight into the database"))]
MaxCyclesOpt = Annotated[Optional[int], typer.Option("--max-cycles", help="Stop after N cycles (testing)", hidden=True)]


def stream(
    ctx: typer.Context,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    price: PriceOpt = None,
    kafka_broker: BrokerOpt = None,
    topic: TopicOpt = None,
    partitions: PartitionsOpt = None,
    database_url: DatabaseOpt = None,
    exchange_url: ExchangeUrlOpt = None,
    metrics_port: MetricsOpt = None,
    source: SourceOpt = None,
    stream_url: StreamUrlOpt = None,
    usdm_stream_url: UsdmStreamUrlOpt = None,
    coinm_stream_url: CoinmStreamUrlOpt = None,
    max_cycles: MaxCyclesOpt = None,
) -> None:
    """Publish each closed candle to Kafka as it closes, resuming after the newest stored one."""
    s = settings(ctx, "stream", symbols=symbols, timeframe=timeframe, price=price,
                 kafka_broker=kafka_broker,
                 topic=topic, partitions=partitions, database_url=database_url,
                 exchange_url=exchange_url, metrics_port=metrics_port, stream_source=source,
                 stream_url=stream_url, usdm_stream_url=usdm_stream_url,
                 coinm_stream_url=coinm_stream_url)
    state = api.stream(s, stop=watch(), max_cycles=max_cycles)
    log.info("stream stopped after %d cycles, %d candles published", state.cycles, state.published)
    exit_if_stopped(f"{state.published:,} candles published")


def consume(
    ctx: typer.Context,
    kafka_broker: BrokerOpt = None,
    topic: TopicOpt = None,
    group: GroupOpt = None,
    database_url: DatabaseOpt = None,
    metrics_port: MetricsOpt = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help=setting_help("Consumer processes in the group, this one included", "consumer_workers"))] = None,
    max_idle_polls: Annotated[Optional[int], typer.Option("--max-idle-polls", help="Stop after N empty polls (testing)", hidden=True)] = None,
) -> None:
    """Write candles from Kafka into the database; offsets are committed after the rows."""
    s = settings(ctx, "consume", kafka_broker=kafka_broker, topic=topic, group=group,
                 database_url=database_url, metrics_port=metrics_port, workers=workers)
    stats = api.consume(s, stop=watch(), max_idle_polls=max_idle_polls)
    log.info("consume stopped: %d messages, %d rows written, %d dead-lettered",
             stats.messages, stats.stored, stats.dead_lettered)
    exit_if_stopped(f"{stats.stored:,} candles written, their offsets committed")


def run(
    ctx: typer.Context,
    days: Annotated[Optional[int], typer.Option("--days", help=setting_help("Backfill this many days first", "backfill_days"))] = None,
    start: Annotated[Optional[str], typer.Option("--start", help="Backfill from this ISO time instead of --days \\[default: --days back]")] = None,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    price: PriceOpt = None,
    kafka_broker: RunBrokerOpt = None,
    topic: TopicOpt = None,
    database_url: DatabaseOpt = None,
    exchange_url: ExchangeUrlOpt = None,
    metrics_port: MetricsOpt = None,
    source: SourceOpt = None,
    stream_url: StreamUrlOpt = None,
    usdm_stream_url: UsdmStreamUrlOpt = None,
    coinm_stream_url: CoinmStreamUrlOpt = None,
    max_cycles: MaxCyclesOpt = None,
) -> None:
    """Backfill, then stream and consume in one process, for one machine.

    Through Kafka when KAFKA_BROKER is set, else straight into the database. Exit 1 if the
    backfill failed for a symbol (nothing is streamed then)."""
    if days is not None and start is not None:
        raise ConfigError("use either --days or --start, not both")
    window = history_window(days, start, None)
    s = settings(ctx, "run", symbols=symbols, timeframe=timeframe, price=price,
                 kafka_broker=kafka_broker,
                 topic=topic, database_url=database_url, exchange_url=exchange_url,
                 metrics_port=metrics_port, stream_source=source, stream_url=stream_url,
                 usdm_stream_url=usdm_stream_url, coinm_stream_url=coinm_stream_url)
    stop = watch()
    result = api.run(s, window=window, stop=stop, max_cycles=max_cycles,
                     on_backfill=lambda r: None if stopped() else report_backfill(r))
    if not result.backfill.ok and not stop.is_set():
        raise typer.Exit(1)
    done = f"{result.backfill.written:,} candles backfilled"
    if result.stream is not None:
        log.info("run stopped after %d cycles, %d candles %s", result.stream.cycles,
                 result.stream.published, "published" if result.through_kafka else "stored")
        done += f", {result.stream.published:,} streamed"
    exit_if_stopped(done)


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
