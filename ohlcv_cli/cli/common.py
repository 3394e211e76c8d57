"""What every command shares: option types, flags -> settings, logging, the consoles."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from ohlcv_cli import api
from ohlcv_cli.core.settings import Settings, env_name
from ohlcv_cli.core.timeutil import iso
from ohlcv_cli.core.window import HistoryWindow

# Off a terminal (cron, pipes, CI) tables get room instead of wrapping at 80 columns, unless
# COLUMNS says how wide. One console per stream: the progress bars and the log handler share
# err_console, so that log lines land above the bars.
_COLUMNS = os.environ.get("COLUMNS", "").isdigit()
console = Console(width=None if sys.stdout.isatty() or _COLUMNS else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() or _COLUMNS else 160)


def table(title: str) -> Table:
    """A table as every command prints it: the title wraps, a cell's text never turns into …"""
    return Table(title=title, title_justify="left")


def column(t: Table, header: str, right: bool = False) -> None:
    """A column whose text wraps (folds) when the terminal is narrower than the table was made
    for, rather than being cut or ellipsized."""
    t.add_column(header, justify="right" if right else "left", overflow="fold")


def when(ms: int, seconds: bool = True) -> str:
    """An open time: with seconds only when the timeframe has them."""
    text = iso(ms)
    return text if seconds else text[:-3]


def span(a: int, b: int, seconds: bool = True, wide: bool = False) -> str:
    """`first → last`, the last without the date parts it shares with the first
    (2024-03-01 01:40 → 02:09); both in full with `wide`."""
    x, y = when(a, seconds or wide), when(b, seconds or wide)
    if not wide:
        if x[:10] == y[:10]:
            y = y[11:]
        elif x[:4] == y[:4]:
            y = y[5:]
    return f"{x} → {y}"


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(getattr(value, "name", value))


def setting_help(text: str, field: str, default: str | None = None) -> str:
    """`text`, then the default (the setting's own unless given) and the environment variable of
    the settings field the option sets; brackets escaped for Rich."""
    if default is None:
        default = _shown(Settings.model_fields[field].get_default(call_default_factory=True))
    return f"{text} \\[default: {default}] \\[env: {env_name(field)}]"


def plain_help(text: str, default: str) -> str:
    """`text` and the default of an option that no setting backs."""
    return f"{text} \\[default: {default}]"


SymbolsOpt = Annotated[Optional[str], typer.Option(
    "--symbols", help=setting_help(
        "Comma list of symbols, any case: BTC/USDT (spot), BTC/USDT:USDT (USD-M perpetual), "
        "BTC/USDT:USDT-261225 (delivery), BTC/USD:BTC (COIN-M), the exchange's id BTCUSDT, or a "
        "regular expression matched against the exchange's symbols, e.g. '.*/USDT'",
        "symbols"))]
TimeframeOpt = Annotated[Optional[str], typer.Option(
    "--timeframe", "-t", help=setting_help(
        "Candle timeframe: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w", "timeframe"))]
PriceOpt = Annotated[Optional[str], typer.Option(
    "--price", help=setting_help(
        "Price series: trade (the market's own candles); on futures also mark, index or "
        "premium (the premium index)", "candle_price"))]
DatabaseOpt = Annotated[Optional[str], typer.Option(
    "--database-url", help=setting_help(
        "SQLAlchemy URL; postgresql:// accepted", "database_url",
        "POSTGRES_* if set, else sqlite:///ohlcv.db"), show_default=False)]
ExchangeUrlOpt = Annotated[Optional[str], typer.Option(
    "--exchange-url", help=setting_help(
        "Replace scheme and host of the exchange's REST endpoints", "exchange_url",
        "Binance's own"))]
BrokerOpt = Annotated[Optional[str], typer.Option(
    "--kafka-broker", help=setting_help("Kafka bootstrap server host:port", "kafka_broker",
                                        "127.0.0.1:9092"))]
TopicOpt = Annotated[Optional[str], typer.Option(
    "--topic", help=setting_help("Kafka topic", "topic_name"))]
MetricsOpt = Annotated[Optional[int], typer.Option(
    "--metrics-port", help=setting_help("Serve Prometheus metrics on this port", "metrics_port",
                                        "none, no metrics"))]


DaysOpt = Annotated[Optional[int], typer.Option(
    "--days", help=setting_help("Days back from now", "backfill_days"))]
StartOpt = Annotated[Optional[str], typer.Option(
    "--start", help=plain_help("ISO start (inclusive), UTC if no zone", "--days back"))]
EndOpt = Annotated[Optional[str], typer.Option(
    "--end", help=plain_help("ISO end (exclusive)", "now"))]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]
WideOpt = Annotated[bool, typer.Option(
    "--wide", help="All columns, full ranges and times (default: what fits 80 columns)")]

# The one place where a command's parameter names meet the settings fields they set: a parameter
# not listed here has the field's name. An unknown name is an error (load_settings).
FIELD_OF = {
    "topic": "topic_name", "partitions": "topic_partitions", "group": "consumer_group",
    "concurrency": "backfill_concurrency", "workers": "consumer_workers",
    "price": "candle_price",
}


def history_window(days: int | None, start: str | None, end: str | None) -> HistoryWindow:
    """--days, or --start [--end]: the window of a history command, parsed and checked once."""
    return HistoryWindow.parse(days, start, end, now_ms=int(time.time() * 1000), flags=True)


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
                       "httpcore", "websockets", "aiohttp", "numexpr")


def setup_logging(level: str, fmt: str) -> None:
    """JSON lines with LOG_FORMAT=json; on a terminal, Rich's handler on the console the progress
    bars draw on (lines land above the bars); plain lines otherwise."""
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif err_console.is_terminal:
        handler = RichHandler(console=err_console, show_path=False, markup=False,
                              rich_tracebacks=False, log_time_format="%H:%M:%S")
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' own lines only with DEBUG: our adapters say in one line what went wrong (a
    # broker that is down, a topic that does not exist yet is normal operation, not an ERROR).
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.CRITICAL + 1
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
