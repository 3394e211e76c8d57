"""The `ohlcv` command: Typer only. The one place that reads flags, prints and exits."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from typer.exceptions import TyperException

from ohlcv_cli.cli import db as db_cli
from ohlcv_cli.cli import gaps as gaps_cli
from ohlcv_cli.cli.backfill import backfill
from ohlcv_cli.cli import live
from ohlcv_cli.cli.common import err_console, setup_logging
from ohlcv_cli.cli.sim import sim
from ohlcv_cli.cli.status import status
from ohlcv_cli.cli.export import export
from ohlcv_cli.cli.plot import plot
from ohlcv_cli.core.errors import OhlcvError
from ohlcv_cli.core.settings import load_settings

app = typer.Typer(
    name="ohlcv",
    help="A complete, exact, gap-free store of Binance OHLCV candles.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    log_level: Annotated[Optional[str], typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR [env: LOG_LEVEL]")] = None,
    log_format: Annotated[Optional[str], typer.Option("--log-format", help="text or json [env: LOG_FORMAT]")] = None,
) -> None:
    ctx.obj = {"log_level": log_level, "log_format": log_format}
    s = load_settings(log_level=log_level, log_format=log_format)
    setup_logging(s.log_level, s.log_format)


app.command()(backfill)
app.command()(sim)
app.add_typer(db_cli.app, name="db")
app.command()(live.stream)
app.command()(live.consume)
app.command()(live.run)
app.add_typer(live.topic_app, name="topic")
app.add_typer(gaps_cli.app, name="gaps")
app.command()(status)
app.command()(export)
app.command()(plot)


def _line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: OhlcvError and usage errors become one `error: ...` line and an exit code."""
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Abort:
        err_console.print("error: interrupted", markup=False, highlight=False)
        sys.exit(130)
    except TyperException as exc:  # usage errors: bad option values, unknown commands
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err_console.print(f"error: {_line(message)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except OhlcvError as exc:
        err_console.print(f"error: {_line(exc)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("error: interrupted", markup=False, highlight=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
