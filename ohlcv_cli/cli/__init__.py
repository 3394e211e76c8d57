"""The `ohlcv` command: Typer only. The one place that reads flags, prints and exits."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import Annotated, Optional

import typer
from typer.core import TyperOption
from typer.exceptions import TyperException

from ohlcv_cli import __version__

from ohlcv_cli.cli import db as db_cli
from ohlcv_cli.cli import funding as funding_cli
from ohlcv_cli.cli import gaps as gaps_cli
from ohlcv_cli.cli.backfill import backfill
from ohlcv_cli.cli import live
from ohlcv_cli.cli.common import echo_error, setting_help
from ohlcv_cli.cli.signals import signals
from ohlcv_cli.cli.sim import sim
from ohlcv_cli.cli.symbols import symbols
from ohlcv_cli.cli.status import status
from ohlcv_cli.cli.export import export
from ohlcv_cli.cli.plot import plot
from ohlcv_cli.core.errors import OhlcvError

log = logging.getLogger("ohlcv")

app = typer.Typer(
    name="ohlcv",
    help="A complete, exact, gap-free store of Binance OHLCV candles.",
    no_args_is_help=True,
    rich_markup_mode="markdown",  # a docstring's paragraphs reflow instead of breaking mid-line
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _flags_take_no_value() -> None:
    """Typer shows `<bool>` beside on/off flags as if they took a value; a flag has no value."""
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # older Typers show no type at all
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_flags_take_no_value()


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ohlcv {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    log_level: Annotated[Optional[str], typer.Option(
        "--log-level", help=setting_help("DEBUG, INFO, WARNING or ERROR", "log_level"))] = None,
    log_format: Annotated[Optional[str], typer.Option(
        "--log-format", help=setting_help("text or json (one JSON object a line)",
                                          "log_format"))] = None,
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit", callback=_print_version,
        is_eager=True)] = False,
) -> None:
    """A complete, exact, gap-free store of Binance OHLCV candles."""
    # Kept for the command, which builds the settings once; nothing is validated here, so a bad
    # setting never breaks `--help`.
    ctx.obj = {"log_level": log_level, "log_format": log_format}


app.command()(backfill)
app.command(context_settings={"show_default": True})(sim)
app.add_typer(db_cli.app, name="db")
app.command()(live.stream)
app.command()(live.consume)
app.command()(live.run)
app.add_typer(live.topic_app, name="topic")
app.add_typer(gaps_cli.app, name="gaps")
app.add_typer(funding_cli.app, name="funding")
app.command()(status)
app.command()(export)
app.command()(plot)
app.command()(symbols)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: OhlcvError and usage errors become one `error: ...` line and an exit code;
    SIGINT and SIGTERM exit 130 and 143 (cli/signals.py)."""
    try:
        _run(argv)
    except SystemExit as exc:
        _leave(exc.code)
    except KeyboardInterrupt:  # a second Ctrl-C while leaving
        _leave(signals.exit_code)
    except BaseException:  # a bug: its traceback, then exit 1 as Python would
        if "pyarrow" not in sys.modules:
            raise
        import traceback

        traceback.print_exc()
        _leave(1)
    _leave(0)


def _leave(code: int | str | None) -> None:
    """Exit with `code`. Once pyarrow is loaded (export, plot, the read API), the process leaves
    without the interpreter's finalization: Arrow's native thread pools can abort it after the
    work is done (`terminate called without an active exception`, exit -6: apache/arrow#34314,
    seen here once in a CI run of `ohlcv export`). What finalization would do for us is done
    first: the other threads are joined, the exit handlers run, the output is flushed."""
    if "pyarrow" not in sys.modules:
        sys.exit(code)
    if isinstance(code, str):  # sys.exit's message: printed, exit 1
        print(code, file=sys.stderr)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # logging.shutdown() among them
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or a closed stream
            status = status or 1
    os._exit(status)


def _run(argv: list[str] | None) -> None:
    signals.install()
    try:
        code = app(args=argv, standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        echo_error("interrupted")
        sys.exit(signals.exit_code)
    except TyperException as exc:  # usage errors: bad option values, unknown commands
        # (click's class, vendored by newer Typers: known by its name)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `ohlcv` or a bare group
            message = exc.format_message()  # empty when Rich has printed the help already
            if message.strip():
                typer.echo(message)
            sys.exit(0)
        echo_error(exc.format_message() if hasattr(exc, "format_message") else str(exc))
        sys.exit(2)
    except OhlcvError as exc:
        # the cause (a library's exception) only for debugging
        log.debug("the error's cause", exc_info=exc.__cause__ or exc)
        echo_error(str(exc))
        sys.exit(exc.exit_code)
    if signals.signum is not None and not signals.reported:  # Typer's exit 130 for Ctrl-C
        echo_error("interrupted")
        sys.exit(signals.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
