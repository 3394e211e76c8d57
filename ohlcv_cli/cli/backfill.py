"""`ohlcv backfill`: fill the store's missing candles in a window."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Annotated, Iterator, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ohlcv_cli import api
from ohlcv_cli.cli.common import (
    DatabaseOpt, ExchangeUrlOpt, StartOpt, SymbolsOpt, TimeframeOpt, check_window_flags,
    console, echo_error, err_console, parse_window, settings,
)
from ohlcv_cli.core.timeutil import iso
from ohlcv_cli.services.backfill import BackfillResult

log = logging.getLogger("ohlcv.backfill")


def backfill(
    ctx: typer.Context,
    days: Annotated[Optional[int], typer.Option("--days", help="Days back from now [env: BACKFILL_DAYS]")] = None,
    start: StartOpt = None,
    end: Annotated[Optional[str], typer.Option("--end", help="ISO end (exclusive); default: now")] = None,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    database_url: DatabaseOpt = None,
    exchange_url: ExchangeUrlOpt = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="Symbols fetched at once [env: BACKFILL_CONCURRENCY]")] = None,
) -> None:
    """Fetch every candle the database is missing in the window, then print a summary."""
    check_window_flags(days, start, end)
    start_ms, end_ms = parse_window(start, end)
    s = settings(ctx, "backfill", symbols=symbols, timeframe=timeframe, database_url=database_url,
                 exchange_url=exchange_url, concurrency=concurrency)
    with progress_bars(s.symbols) as progress:
        result = api.backfill(s, days=days, start=start_ms, end=end_ms, progress=progress)
    report_backfill(result)
    if not result.ok:
        raise typer.Exit(1)


def report_backfill(result: BackfillResult) -> None:
    """The table on stdout; one `error: SYMBOL: ...` line per failed symbol on stderr."""
    console.print(summary_table(result))
    for r in result.failed:
        echo_error(f"{r.symbol}: {r.error}")


def summary_table(result: BackfillResult) -> Table:
    table = Table(title=f"backfill {result.timeframe} {iso(result.start)} → {iso(result.end)} UTC")
    for col in ("symbol", "written", "range", "no candles at exchange", "seconds", "status"):
        table.add_column(col, justify="right" if col in ("written", "no candles at exchange", "seconds") else "left")
    for r in result.symbols:
        table.add_row(
            r.symbol, str(r.written), f"{iso(r.start)} → {iso(r.end)}", str(r.exchange_missing),
            f"{r.seconds:.1f}", "ok" if r.error is None else "FAILED",
        )
    return table


@contextmanager
def progress_bars(symbols) -> Iterator:
    """A Rich bar per symbol on a terminal; plain log lines every 10 % otherwise."""
    if err_console.is_terminal:
        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err_console, transient=False)
        tasks = {s: bars.add_task(s, total=None) for s in symbols}
        with bars:
            yield lambda sym, done, total: bars.update(tasks[sym], completed=done, total=total or 1)
        return
    last: dict[str, int] = {}

    def plain(sym: str, done: int, total: int) -> None:
        step = (10 * done // total) if total else 10
        if last.get(sym) != step:
            last[sym] = step
            log.info("%s: %d/%d candles", sym, done, total)

    yield plain
