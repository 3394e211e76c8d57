"""`ohlcv backfill`: fill the store's missing candles in a window."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Annotated, Iterator, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ohlcv_cli.cli.common import (
    DatabaseOpt, ExchangeUrlOpt, SymbolsOpt, TimeframeOpt, check_window_flags, console,
    err_console, gap_repository, make_engine_for, make_fetcher, open_repository, parse_window,
    settings,
)
from ohlcv_cli.core.errors import PartialFailure
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import iso
from ohlcv_cli.cli.sources import (
    ArchiveUrlOpt, NoVerifyOpt, SourcedProgress, SourceOpt, archive_pass, errors, sourced_table,
)
from ohlcv_cli.services.archive import backfill_from_sources
from ohlcv_cli.services.backfill import Backfill, BackfillResult

log = logging.getLogger("ohlcv.backfill")


def backfill(
    ctx: typer.Context,
    days: Annotated[Optional[int], typer.Option("--days", help="Days back from now [env: BACKFILL_DAYS]")] = None,
    start: Annotated[Optional[str], typer.Option("--start", help="ISO start (inclusive), UTC if no zone")] = None,
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
    check_window_flags(days, start, end)
    s = settings(ctx, symbols=symbols, timeframe=timeframe, backfill_days=days,
                 database_url=database_url, exchange_url=exchange_url,
                 backfill_concurrency=concurrency, backfill_source=source,
                 archive_url=archive_url)
    tf = parse_timeframe(s.timeframe)
    start_ms, end_ms = parse_window(start, end)
    engine = make_engine_for(s)
    fetcher = make_fetcher(s)
    fetcher.check_symbols(s.symbols)
    repo = open_repository(s, engine)
    with _progress(s.symbols) as show:
        progress = SourcedProgress(show)
        rest = Backfill(fetcher, repo, concurrency=s.backfill_concurrency,
                        batch_size=s.backfill_batch_size, progress=progress.rest,
                        gaps=gap_repository(repo), in_flight=s.backfill_in_flight)
        archive = archive_pass(s, engine, fetcher, verify=not no_verify, progress=progress.archive)
        result = backfill_from_sources(
            rest, archive, s.symbols, tf, source=s.backfill_source,
            days=None if start_ms else s.backfill_days, start=start_ms, end=end_ms)
    console.print(sourced_table(result))
    left = sum(result.left_missing.values())
    if left:
        err_console.print(f"warning: {left} candles are not in the archive and were left missing "
                          "(--source archive); run with --source auto to fetch them over REST",
                          markup=False, highlight=False)
    failures = errors(result)
    if failures:
        for sym, error in failures:
            err_console.print(f"error: {sym}: {error}", markup=False, highlight=False)
        raise PartialFailure(f"{len(failures)} of {len(s.symbols)} symbols failed")

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
def _progress(symbols) -> Iterator:
    """A Rich bar per symbol on a terminal (candles, and archive files); plain log lines every
    10 % otherwise."""
    if err_console.is_terminal:
        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err_console, transient=False)
        tasks = {s: bars.add_task(s, total=None) for s in symbols}
        with bars:
            yield lambda sym, done, total, note: bars.update(
                tasks[sym], completed=done, total=total or 1, description=f"{sym} {note}")
        return
    last: dict[str, tuple] = {}

    def plain(sym: str, done: int, total: int, note: str) -> None:
        step = ((10 * done // total) if total else 10, note.split()[0])
        if last.get(sym) != step:
            last[sym] = step
            log.info("%s: %d/%d candles (%s)", sym, done, total, note)

    yield plain
