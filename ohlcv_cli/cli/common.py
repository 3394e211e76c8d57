"""What every command shares: option types, settings, logging, wiring and the error line."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.settings import Settings, load_settings
from ohlcv_cli.core.timeutil import parse_iso

# Off a terminal (cron, pipes, CI) tables get room instead of wrapping at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

SymbolsOpt = Annotated[Optional[str], typer.Option(
    "--symbols", help="Comma list of ccxt symbols, e.g. BTC/USDT,ETH/USDT [env: SYMBOLS]")]
TimeframeOpt = Annotated[Optional[str], typer.Option(
    "--timeframe", "-t", help="Candle timeframe: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w")]
DatabaseOpt = Annotated[Optional[str], typer.Option(
    "--database-url", help="SQLAlchemy URL; postgresql:// accepted [env: DATABASE_URL]",
    show_default=False)]
ExchangeUrlOpt = Annotated[Optional[str], typer.Option(
    "--exchange-url", help="Replace scheme and host of the exchange's REST endpoints "
    "[env: OHLCV_EXCHANGE_URL]")]
BrokerOpt = Annotated[Optional[str], typer.Option(
    "--kafka-broker", help="Kafka bootstrap server host:port [env: KAFKA_BROKER]")]
TopicOpt = Annotated[Optional[str], typer.Option("--topic", help="Kafka topic [env: TOPIC_NAME]")]
MetricsOpt = Annotated[Optional[int], typer.Option(
    "--metrics-port", help="Serve Prometheus metrics on this port [env: METRICS_PORT]")]


def check_window_flags(days: int | None, start: str | None, end: str | None) -> None:
    """--days, or --start [--end]: the combinations a window accepts."""
    if days is not None and start is not None:
        raise ConfigError("use either --days or --start/--end, not both")
    if end is not None and start is None:
        raise ConfigError("--end needs --start")
    if days is not None and days <= 0:
        raise ConfigError(f"--days must be a positive whole number, got {days}")


def parse_window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """--start and --end as epoch ms; start must come first."""
    start_ms = parse_iso(start, "--start") if start else None
    end_ms = parse_iso(end, "--end") if end else None
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConfigError(f"--start {start} is not before --end {end}")
    return start_ms, end_ms


def settings(ctx: typer.Context, **flags: Any) -> Settings:
    """Flags of the command and of `ohlcv` itself, over environment and `.env`."""
    merged = dict(ctx.obj or {})
    merged.update(flags)
    return load_settings(**merged)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # third-party chatter stays at WARNING unless asked for DEBUG
    for name in ("kafka", "urllib3", "ccxt", "alembic", "websockets"):
        logging.getLogger(name).setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)


def open_repository(s: Settings, engine=None):
    """The repository for the configured database, after checking its schema is current.

    The embedded SQLite default upgrades itself; any other database must be upgraded with
    `ohlcv db upgrade`.
    """
    from ohlcv_cli.adapters.sql_repository import SqlCandleRepository
    from ohlcv_cli.adapters.sql_schema import ensure_current, make_engine

    engine = engine or make_engine(s.db_url())
    ensure_current(engine, auto_upgrade=s.uses_embedded_default())
    return SqlCandleRepository(engine)


def gap_repository(repo):
    """The exchange-gaps store on the same engine as the candle repository."""
    from ohlcv_cli.adapters.sql_gaps import SqlGapRepository

    return SqlGapRepository(repo.engine)


def make_engine_for(s: Settings):
    from ohlcv_cli.adapters.sql_schema import make_engine

    return make_engine(s.db_url())


def make_fetcher(s: Settings):
    from ohlcv_cli.adapters.ccxt_fetcher import CcxtFetcher

    return CcxtFetcher(
        s.exchange,
        exchange_url=s.exchange_url,
        api_key=s.binance_api_key.get_secret_value() if s.binance_api_key else None,
        secret=s.binance_secret_key.get_secret_value() if s.binance_secret_key else None,
        settle_ms=int(s.realtime_delay_seconds * 1000),
        timeout_ms=int(s.exchange_timeout_seconds * 1000),
        max_retries=s.exchange_max_retries,
        weight_limit=s.exchange_weight_limit,
    )
