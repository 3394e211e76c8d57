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
    DatabaseOpt, DaysOpt, EndOpt, ExchangeUrlOpt, PriceOpt, StartOpt, SymbolsOpt, TimeframeOpt,
    WideOpt,
    column, console, echo_error, err_console, history_window, setting_help, settings, span, table,
)
from ohlcv_cli.cli.signals import exit_if_stopped, watch
from ohlcv_cli.cli.sources import ArchiveUrlOpt, NoVerifyOpt, SourceOpt
from ohlcv_cli.services.backfill import BackfillResult

log = logging.getLogger("ohlcv.backfill")


def backfill(
    ctx: typer.Context,
    days: DaysOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    price: PriceOpt = None,
    database_url: DatabaseOpt = None,
    exchange_url: ExchangeUrlOpt = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help=setting_help("Symbols fetched at once", "backfill_concurrency"))] = None,
    source: SourceOpt = None,
    archive_url: ArchiveUrlOpt = None,
    no_verify: NoVerifyOpt = False,
    wide: WideOpt = False,
) -> None:
    """Fetch every candle the database is missing in the window, then print a summary."""
    window = history_window(days, start, end)
    s = settings(ctx, "backfill", symbols=symbols, timeframe=timeframe, price=price,
                 database_url=database_url,
                 exchange_url=exchange_url, concurrency=concurrency, backfill_source=source,
                 archive_url=archive_url)
    with progress_bars() as progress:
        result = api.backfill(s, window=window, progress=progress,
                              file_progress=progress.files, verify=not no_verify,
                              stop=watch())
    exit_if_stopped(f"{result.written:,} candles written")
    report_backfill(result, wide)
    left = sum(r.left_missing for r in result.symbols)
    if left:
        err_console.print(f"warning: {left} candles are not in the archive and were left missing "
                          "(--source archive); run with --source auto to fetch them over REST",
                          markup=False, highlight=False)
    if not result.ok:
        raise typer.Exit(1)


def report_backfill(result: BackfillResult, wide: bool = False) -> None:
    """The table on stdout; one `error: SYMBOL: ...` line per failed symbol on stderr."""
    console.print(summary_table(result, wide))
    for r in result.failed:
        echo_error(f"{r.symbol}: {r.error}")


def summary_table(result: BackfillResult, wide: bool = False) -> Table:
    """Symbol, candles written (from the archive, from REST), candles the exchange has none
    for (no data), seconds, status; `wide` adds the archive files, the files rejected by their
    checksum and by the spot-check against REST, and the range."""
    seconds = result.timeframe.endswith("s")
    price = "" if result.price == "trade" else f" {result.price}"
    t = table(f"backfill {result.timeframe}{price} {span(result.start, result.end, seconds, wide)}"
              " UTC")
    cols = (("symbol", "written", "archive", "REST", "files", "bad checksum", "bad vs REST",
             "range", "no data", "seconds", "status") if wide else
            ("symbol", "written", "archive", "REST", "no data", "s", "status"))
    for col in cols:
        column(t, col, right=col not in ("symbol", "range", "status"))
    for r in result.symbols:
        status = "FAILED" if r.error is not None else ("incomplete" if r.left_missing else "ok")
        rest = str(r.written - r.from_archive)
        if wide:
            t.add_row(r.symbol, str(r.written), str(r.from_archive), rest, str(r.archive_files),
                      str(r.rejected_checksum), str(r.rejected_vs_rest),
                      span(r.start, r.end, seconds), str(r.exchange_missing),
                      f"{r.seconds:.1f}", status)
        else:
            t.add_row(r.symbol, str(r.written), str(r.from_archive), rest,
                      str(r.exchange_missing), f"{r.seconds:.1f}", status)
    return t


class _Bars:
    """Progress callbacks: candles per symbol, and the archive files behind them."""

    def __init__(self, update: Callable[[str, int, int], None],
                 files: Callable[[str, int, int], None]) -> None:
        self._update, self.files = update, files

    def __call__(self, sym: str, done: int, total: int) -> None:
        self._update(sym, done, total)


@contextmanager
def progress_bars() -> Iterator[_Bars]:
    """A Rich bar per symbol on a terminal (candles, and archive files when there are any), each
    added when its symbol first reports; plain log lines every 10 % otherwise."""
    if err_console.is_terminal:
        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[files]}"), TimeElapsedColumn(),
                        console=err_console, transient=False)
        tasks: dict[str, object] = {}

        def task(sym: str):
            if sym not in tasks:
                tasks[sym] = bars.add_task(sym, total=None, files="")
            return tasks[sym]

        with bars:
            yield _Bars(lambda sym, done, total: bars.update(task(sym), completed=done,
                                                             total=total or 1),
                        lambda sym, done, total: bars.update(task(sym),
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
