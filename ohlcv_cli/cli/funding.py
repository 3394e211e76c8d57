"""`ohlcv funding backfill|check|repair|export`: every funding settlement of perpetual contracts,
checked against each symbol's own funding interval (exit 0: complete, 1: missing or a symbol
failed, 2: error)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from ohlcv_cli import api
from ohlcv_cli.api import funding as funding_api
from ohlcv_cli.cli.common import (
    DatabaseOpt, ExchangeUrlOpt, JsonOpt, StartOpt, column, console, echo_error, settings, span,
    table,
)
from ohlcv_cli.cli.sources import ArchiveUrlOpt
from ohlcv_cli.core.timeutil import iso

app = typer.Typer(help="Funding rates of perpetual contracts: backfill, check (exit 0: complete, "
                  "1: settlements missing, 2: error), repair, export.", no_args_is_help=True)

DaysOpt = Annotated[Optional[float], typer.Option(
    "--days", help="Days back from now [default: BACKFILL_DAYS] [env: BACKFILL_DAYS]")]
EndOpt = Annotated[Optional[str], typer.Option(
    "--end", help="ISO end (exclusive) [default: now]")]
SymbolsOpt = Annotated[Optional[str], typer.Option(
    "--symbols", help="Comma list of perpetual symbols, e.g. BTC/USDT:USDT,BTC/USD:BTC "
    "[default: the perpetuals in SYMBOLS] [env: SYMBOLS]")]
SourceOpt = Annotated[Optional[str], typer.Option(
    "--source", help="auto (the archive's monthly files, then REST) or rest "
    "[default: auto] [env: BACKFILL_SOURCE]")]
MAX_LINES = 10


def _when(ms: int) -> str:
    return iso(ms)[:16]


def _iso_z(ms: int) -> str:
    return iso(ms).replace(" ", "T") + "Z"


def _title(what: str, report) -> str:
    return f"{what} {span(report.start, report.end, False)} UTC"


# --- check ------------------------------------------------------------------------------------
@app.command()
def check(ctx: typer.Context, days: DaysOpt = None, start: StartOpt = None, end: EndOpt = None,
          symbols: SymbolsOpt = None, database_url: DatabaseOpt = None,
          exchange_url: ExchangeUrlOpt = None, as_json: JsonOpt = False) -> None:
    """Report the settlements missing where each symbol's interval says one was due (exit 1 if
    any). The current interval comes from the exchange (fundingInfo), past ones from the
    spacing of the stored settlements."""
    s = settings(ctx, "funding_check", database_url=database_url, exchange_url=exchange_url)
    report = api.funding_check(s, symbols=symbols, days=days, start=start, end=end)
    if as_json:
        typer.echo(json.dumps({
            "exchange": report.exchange, "start": _iso_z(report.start),
            "end": _iso_z(report.end), "ok": report.ok, "missing": report.missing,
            "symbols": [{"symbol": g.symbol, "due": g.due, "stored": g.stored,
                         "coverage": g.coverage, "missing": [_iso_z(b) for b in g.missing]}
                        for g in report.symbols]}, indent=2))
    else:
        console.print(check_table(report))
        console.print(_check_summary(report), markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


def _missing_lines(missing: list[int]) -> str:
    lines = [_when(b) for b in missing[:MAX_LINES]]
    if len(missing) > MAX_LINES:
        lines.append(f"… {len(missing) - MAX_LINES} more (--json lists all)")
    return "\n".join(lines) or "-"


def check_table(report) -> Table:
    t = table(_title("funding", report))
    for name in ("symbol", "status", "due", "missing", "cover %", "missing settlements"):
        column(t, name, right=name in ("due", "missing", "cover %"))
    for g in report.symbols:
        status = "ok" if g.ok else ("empty" if g.stored == 0 else "gaps")
        t.add_row(g.symbol, status, str(g.due), str(len(g.missing)),
                  f"{int(g.coverage * 100) / 100:.2f}", _missing_lines(g.missing))
    return t


def _check_summary(report) -> str:
    if report.ok:
        return f"complete: no settlement missing in {len(report.symbols)} symbols"
    bad = [g for g in report.symbols if not g.ok]
    return (f"gaps: {report.missing} settlements missing in {len(bad)} of "
            f"{len(report.symbols)} symbols")


# --- backfill and repair ---------------------------------------------------------------------
def _fill(ctx, command: str, call, days, start, end, symbols, database_url, exchange_url,
          source, archive_url, concurrency, as_json) -> None:
    flags = dict(database_url=database_url, exchange_url=exchange_url, backfill_source=source,
                 archive_url=archive_url)
    if concurrency is not None:
        flags["concurrency"] = concurrency
    s = settings(ctx, command, **flags)
    report = call(s, symbols=symbols, days=days, start=start, end=end)
    if as_json:
        typer.echo(json.dumps(fill_json(report), indent=2))
    else:
        console.print(fill_table(command.replace("_", " "), report))
        console.print(_fill_summary(report), markup=False, highlight=False)
    for r in report.failed:
        echo_error(f"{r.symbol}: {r.error}")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def backfill(ctx: typer.Context, days: DaysOpt = None, start: StartOpt = None,
             end: EndOpt = None, symbols: SymbolsOpt = None, database_url: DatabaseOpt = None,
             exchange_url: ExchangeUrlOpt = None, source: SourceOpt = None,
             archive_url: ArchiveUrlOpt = None,
             concurrency: Annotated[Optional[int], typer.Option(
                 "--concurrency", help="Symbols fetched at once [env: BACKFILL_CONCURRENCY]")]
             = None,
             as_json: JsonOpt = False) -> None:
    """Fetch every settlement the database is missing in the window (resumes from what is
    stored), then print a summary (exit 1 if a symbol failed or stays incomplete)."""
    _fill(ctx, "funding_backfill", api.funding_backfill, days, start, end, symbols,
          database_url, exchange_url, source, archive_url, concurrency, as_json)


@app.command()
def repair(ctx: typer.Context, days: DaysOpt = None, start: StartOpt = None, end: EndOpt = None,
           symbols: SymbolsOpt = None, database_url: DatabaseOpt = None,
           exchange_url: ExchangeUrlOpt = None, source: SourceOpt = None,
           archive_url: ArchiveUrlOpt = None, as_json: JsonOpt = False) -> None:
    """Fetch the settlements `funding check` reports missing (exit 1 if some are still
    missing: the exchange has none either)."""
    _fill(ctx, "funding_repair", api.funding_repair, days, start, end, symbols, database_url,
          exchange_url, source, archive_url, None, as_json)


def fill_table(what: str, report) -> Table:
    t = table(_title(what, report))
    for name in ("symbol", "missing", "written", "archive", "REST", "requests", "left", "s",
                 "status"):
        column(t, name, right=name not in ("symbol", "status"))
    for r in report.symbols:
        status = "FAILED" if r.error else ("incomplete" if r.still_missing else "ok")
        t.add_row(r.symbol, str(r.missing), str(r.written), str(r.from_archive),
                  str(r.from_rest), str(r.requests), str(len(r.still_missing)),
                  f"{r.seconds:.1f}", status)
    return t


def _fill_summary(report) -> str:
    written = sum(r.written for r in report.symbols)
    months = sum(r.archive_months for r in report.symbols)
    text = (f"{written} settlements written in {report.seconds:.1f}s; {months} archive months, "
            f"{report.requests} requests ({report.limited} of the 500-per-5-minutes USD-M "
            "funding limit)")
    not_there = sum(r.archive_missing for r in report.symbols)
    if not_there:
        text += f"; {not_there} months not in the archive (fetched over REST)"
    left = sum(len(r.still_missing) for r in report.symbols)
    if left:
        text += f"; still missing: {left} settlements"
    return text


def fill_json(report) -> dict:
    return {
        "exchange": report.exchange, "start": _iso_z(report.start), "end": _iso_z(report.end),
        "ok": report.ok, "requests": report.requests, "limited_requests": report.limited,
        "seconds": report.seconds,
        "symbols": [{
            "symbol": r.symbol, "missing": r.missing, "written": r.written,
            "from_archive": r.from_archive, "from_rest": r.from_rest,
            "archive_months": r.archive_months, "archive_missing": r.archive_missing,
            "requests": r.requests, "still_missing": [_iso_z(b) for b in r.still_missing],
            "error": r.error,
        } for r in report.symbols],
    }


# --- export -----------------------------------------------------------------------------------
@app.command()
def export(ctx: typer.Context,
           symbol: Annotated[str, typer.Argument(help="A perpetual symbol, e.g. BTC/USDT:USDT")],
           output: Annotated[str, typer.Option(
               "--output", "-o", help="A .csv or .parquet file, or - for CSV on stdout")] = "-",
           start: StartOpt = None,
           end: Annotated[Optional[str], typer.Option("--end", help="ISO end (exclusive)")] = None,
           database_url: DatabaseOpt = None) -> None:
    """Write the stored settlements of a symbol: funding time (ms), symbol, rate and mark
    price as the exchange's strings, interval hours, source."""
    s = settings(ctx, "funding_read", database_url=database_url)
    n = funding_api.export_funding(s, symbol, output, start=start, end=end)
    if output != "-":
        console.print(f"{n} settlements written to {output}", markup=False, highlight=False)


# --- `ohlcv status` ---------------------------------------------------------------------------
def print_status(s, symbols: str | None = None) -> None:
    """The funding table under `ohlcv status`'s candles, when any settlement is stored."""
    from ohlcv_cli.cli.status import age
    from ohlcv_cli.core.symbols import parse_symbols

    rows = funding_api.funding_status(s, symbols=parse_symbols(symbols) if symbols else None)
    if not rows:
        return
    t = table("funding settlements")
    for name in ("symbol", "first → last settlement", "interval", "stored", "cover %", "age"):
        column(t, name, right=name in ("stored", "cover %", "age"))
    for r in rows:
        t.add_row(r.symbol, span(r.first, r.last, False),
                  f"{r.interval_hours}h" if r.interval_hours else "-", str(r.count),
                  f"{int(r.coverage * 100) / 100:.2f}", age(r.age_ms))
    console.print(t)
