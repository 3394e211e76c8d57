"""`ohlcv backfill`: fill the store's missing candles in a window."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Annotated, Callable, Iterator, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ohlcv_cli import api
from ohlcv_cli.cli.common import (
    DatabaseOpt, ExchangeUrlOpt, StartOpt, SymbolsOpt, TimeframeOpt, console, echo_error,
    err_console, history_window, settings,
)
from ohlcv_cli.cli.sources import ArchiveUrlOpt, NoVerifyOpt, SourceOpt
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
    source: SourceOpt = None,
    archive_url: ArchiveUrlOpt = None,
    no_verify: NoVerifyOpt = False,
) -> None:
    """Fetch every candle the database is missing in the window, then print a summary."""
    window = history_window(days, start, end)
    s = settings(ctx, "backfill", symbols=symbols, timeframe=timeframe, database_url=database_url,
                 exchange_url=exchange_url, concurrency=concurrency, backfill_source=source,
                 archive_url=archive_url)
    with progress_bars(s.symbols) as progress:
        result = api.backfill(s, window=window, progress=progress,
                              file_progress=progress.files, verify=not no_verify)
    report_backfill(result)
    left = sum(r.left_missing for r in result.symbols)
    if left:
        err_console.print(f"warning: {left} candles are not in the archive and were left missing "
                          "(--source archive); run with --source auto to fetch them over REST",
                          markup=False, highlight=False)
    if not result.ok:
        raise typer.Exit(1)


def report_backfill(result: BackfillResult) -> None:
    """The table on stdout; one `error: SYMBOL: ...` line per failed symbol on stderr."""
    console.print(summary_table(result))
    for r in result.failed:
        echo_error(f"{r.symbol}: {r.error}")


def summary_table(result: BackfillResult) -> Table:
    table = Table(title=f"backfill {result.timeframe} {iso(result.start)} → {iso(result.end)} UTC")
    cols = ("symbol", "written", "from archive", "from REST", "archive files",
            "rejected: checksum", "rejected: vs REST", "range", "no candles at exchange",
            "seconds", "status")
    for col in cols:
        table.add_column(col, justify="left" if col in ("symbol", "range", "status") else "right")
    for r in result.symbols:
        status = "FAILED" if r.error is not None else ("incomplete" if r.left_missing else "ok")
        table.add_row(
            r.symbol, str(r.written), str(r.from_archive), str(r.written - r.from_archive),
            str(r.archive_files), str(r.rejected_checksum), str(r.rejected_vs_rest),
            f"{iso(r.start)} → {iso(r.end)}", str(r.exchange_missing), f"{r.seconds:.1f}", status,
        )
    return table


class _Bars:
    """Progress callbacks: candles per symbol, and the archive files behind them."""

    def __init__(self, update: Callable[[str, int, int], None],
                 files: Callable[[str, int, int], None]) -> None:
        self._update, self.files = update, files

    def __call__(self, sym: str, done: int, total: int) -> None:
        self._update(sym, done, total)


@contextmanager
def progress_bars(symbols) -> Iterator[_Bars]:
    """A Rich bar per symbol on a terminal (candles, and archive files when there are any); plain
    log lines every 10 % otherwise."""
    if err_console.is_terminal:
        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[files]}"), TimeElapsedColumn(),
                        console=err_console, transient=False)
        tasks = {s: bars.add_task(s, total=None, files="") for s in symbols}
        with bars:
            yield _Bars(lambda sym, done, total: bars.update(tasks[sym], completed=done,
                                                             total=total or 1),
                        lambda sym, done, total: bars.update(tasks[sym],
                                                             files=f"{done}/{total} files"))
        return
    last: dict[str, int] = {}

    def plain(sym: str, done: int, total: int) -> None:
        step = (10 * done // total) if total else 10
        if last.get(sym) != step:
            last[sym] = step
            log.info("%s: %d/%d candles", sym, done, total)

    def files(sym: str, done: int, total: int) -> None:
        if done == total and total:
            log.info("%s: %d/%d archive files", sym, done, total)

    yield _Bars(plain, files)
