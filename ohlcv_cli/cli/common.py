"""What every command shares: option types, flags -> settings, logging, the consoles."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from ohlcv_cli import api
from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.settings import Settings
from ohlcv_cli.core.timeutil import parse_iso
from ohlcv_cli.core.window import HistoryWindow

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


DaysOpt = Annotated[Optional[int], typer.Option(
    "--days", help="Days back from now [env: BACKFILL_DAYS]")]
StartOpt = Annotated[Optional[str], typer.Option(
    "--start", help="ISO start (inclusive), UTC if no zone")]
EndOpt = Annotated[Optional[str], typer.Option(
    "--end", help="ISO end (exclusive); default: now")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]

# The one place where a command's parameter names meet the settings fields they set: a parameter
# not listed here has the field's name. An unknown name is an error (load_settings).
FIELD_OF = {
    "topic": "topic_name", "partitions": "topic_partitions", "group": "consumer_group",
    "concurrency": "backfill_concurrency", "workers": "consumer_workers",
}


def check_window_flags(days: int | None, start: str | None, end: str | None) -> None:
    """--days, or --start [--end]: the combinations a window accepts."""
    if days is not None and start is not None:
        raise ConfigError("use either --days or --start/--end, not both")
    if end is not None and start is None:
        raise ConfigError("--end needs --start")
    if days is not None and days <= 0:
        raise ConfigError(f"--days must be a positive whole number, got {days}")


def history_window(days: int | None, start: str | None, end: str | None) -> HistoryWindow:
    """--days, or --start [--end]: the window of a history command, parsed and checked once."""
    return HistoryWindow.parse(days, start, end, now_ms=int(time.time() * 1000), flags=True)


def parse_window(start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """--start and --end as epoch ms; start must come first."""
    start_ms = parse_iso(start, "--start") if start else None
    end_ms = parse_iso(end, "--end") if end else None
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConfigError(f"--start {start} is not before --end {end}")
    return start_ms, end_ms


def settings(ctx: typer.Context, command: str, **flags: Any) -> Settings:
    """The settings of this invocation, built once: the command's flags and those of `ohlcv`
    itself over environment and `.env`, validating only what `command` reads; then logging."""
    overrides = {FIELD_OF.get(name, name): value for name, value in flags.items()}
    overrides.update((ctx.obj or {}) if ctx is not None else {})
    s = api.settings_for(command, **overrides)
    setup_logging(s.log_level, s.log_format)
    return s


def echo_error(text: str) -> None:
    err_console.print(f"error: {' '.join(str(text).split())}", markup=False, highlight=False,
                      soft_wrap=True)


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


THIRD_PARTY_LOGGERS = ("kafka", "ccxt", "urllib3", "alembic", "sqlalchemy", "asyncio", "httpx",
                       "httpcore", "websockets", "aiohttp")


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' own lines only with DEBUG: our adapters say in one line what went wrong (a
    # broker that is down, a topic that does not exist yet is normal operation, not an ERROR).
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.CRITICAL + 1
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
