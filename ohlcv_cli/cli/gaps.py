"""`ohlcv gaps check` and `ohlcv gaps repair`: completeness of the store, for cron."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from ohlcv_cli import api
from ohlcv_cli.cli.common import (
    DatabaseOpt, ExchangeUrlOpt, JsonOpt, PriceOpt, StartOpt, SymbolsOpt, TimeframeOpt, WideOpt,
    column, console, echo_error, history_window, plain_help, setting_help, settings, span, table,
)
from ohlcv_cli.cli.signals import exit_if_stopped, watch
from ohlcv_cli.cli.sources import ArchiveUrlOpt, NoVerifyOpt, SourceOpt, archive_line
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.timeutil import iso
from ohlcv_cli.services.gaps import GapReport, RepairReport, count

app = typer.Typer(help="Find and repair missing candles (exit 0: complete, 1: gaps, 2: error).",
                  no_args_is_help=True)

DaysOpt = Annotated[Optional[int], typer.Option(
    "--days", help=setting_help("Days back from now; the window ends at the last closed candle minus the grace", "backfill_days"))]
EndOpt = Annotated[Optional[str], typer.Option(
    "--end", help=plain_help("ISO end (exclusive)", "the last closed candle's close"))]

MAX_RANGE_LINES = 10


@app.command()
def check(
    ctx: typer.Context,
    days: DaysOpt = None, start: StartOpt = None, end: EndOpt = None,
    symbols: SymbolsOpt = None, timeframe: TimeframeOpt = None, price: PriceOpt = None,
    database_url: DatabaseOpt = None, as_json: JsonOpt = False, wide: WideOpt = False,
) -> None:
    """Report missing closed candles per symbol; needs only the database (exit 1 on gaps)."""
    window = history_window(days, start, end)
    s = settings(ctx, "gaps_check", symbols=symbols, timeframe=timeframe, price=price,
                 database_url=database_url)
    report = api.gaps_check(s, window=window)
    if as_json:
        typer.echo(json.dumps(check_json(report, s.timeframe), indent=2))
    else:
        console.print(check_table(report, s.timeframe, wide))
        console.print(_check_summary(report), markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def repair(
    ctx: typer.Context,
    days: DaysOpt = None, start: StartOpt = None, end: EndOpt = None,
    symbols: SymbolsOpt = None, timeframe: TimeframeOpt = None, price: PriceOpt = None,
    database_url: DatabaseOpt = None, exchange_url: ExchangeUrlOpt = None,
    as_json: JsonOpt = False, source: SourceOpt = None, archive_url: ArchiveUrlOpt = None,
    no_verify: NoVerifyOpt = False, wide: WideOpt = False,
) -> None:
    """Fetch the missing candles and remember what the exchange has none of (exit 1 if some
    are still missing)."""
    window = history_window(days, start, end)
    s = settings(ctx, "gaps_repair", symbols=symbols, timeframe=timeframe, price=price,
                 database_url=database_url, exchange_url=exchange_url, backfill_source=source,
                 archive_url=archive_url)
    report = api.gaps_repair(s, verify=not no_verify, stop=watch(), window=window)
    exit_if_stopped(f"{sum(r.written for r in report.symbols):,} candles written")
    if as_json:
        out = repair_json(report, s.timeframe)
        for item in out["symbols"]:
            a = report.archive.get(item["symbol"])
            item["archive"] = None if a is None else {
                "candles": a.candles, "files": a.files, "rejected_checksum": a.rejected,
                "rejected_vs_rest": a.disagreed, "not_published": a.not_published}
        typer.echo(json.dumps(out, indent=2))
    else:
        console.print(repair_table(report, s.timeframe, wide))
        for sym, a in report.archive.items():
            line = archive_line(sym, a)
            if line:
                console.print(line, markup=False, highlight=False)
    for r in report.symbols:
        if r.error:
            echo_error(f"{r.symbol}: {r.error}")
    if not as_json:
        console.print(_repair_summary(report, s.timeframe), markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


# --- output -----------------------------------------------------------------------------------
def _span(tf: Timeframe, a: int, b: int, wide: bool = True) -> str:
    """A missing range by its first and last missing open time, and its length in candles."""
    return f"{span(a, b - tf.ms, tf.ms < 60_000, wide)} ({tf.count(a, b)})"


def _lines(tf: Timeframe, ranges, limit: int = MAX_RANGE_LINES, wide: bool = True) -> str:
    lines = [_span(tf, a, b, wide) for a, b in ranges[:limit]]
    if len(ranges) > limit:
        lines.append(f"… {len(ranges) - limit} more ranges (--json lists all)")
    return "\n".join(lines)


def _pct(value: float) -> str:
    """Rounded down, so that a store missing one candle never shows 100.00 %."""
    return f"{int(value * 100) / 100:.2f}"


def _status(g) -> str:
    if g.empty:
        return "no candles stored"
    return "gaps" if g.missing else "ok"


def _title(what: str, report, wide: bool) -> str:
    seconds = report.timeframe.endswith("s")
    price = "" if report.price == "trade" else f" {report.price}"
    return (f"{what} {report.timeframe}{price} {span(report.start, report.end, seconds, wide)} UTC"
            + (" (end exclusive)" if wide else ""))


def check_table(report: GapReport, tf: Timeframe, wide: bool = False) -> Table:
    """Symbol, status, missing candles, coverage and the missing ranges (compact; `wide`: in
    full, with the expected count)."""
    t = table(_title("gaps", report, wide))
    column(t, "symbol")
    column(t, "status")
    column(t, "missing", right=True)
    if wide:
        column(t, "expected", right=True)
    column(t, "coverage %" if wide else "cover %", right=True)
    column(t, "missing ranges: first → last open time (candles)" if wide
           else "missing: first → last (n)")
    for g in report.symbols:
        ranges = _lines(tf, g.missing, wide=wide)
        if g.empty:
            ranges = f"all, {_span(tf, g.start, g.end, wide)}"
        status = _status(g) if wide or not g.empty else "empty"
        row = [g.symbol, status, str(g.missing_candles)]
        row += [str(g.expected)] if wide else []
        t.add_row(*row, _pct(g.coverage), ranges or "-")
    return t


def _check_summary(report: GapReport) -> str:
    if report.ok:
        return f"complete: no closed candle missing in {len(report.symbols)} symbols"
    bad = [g for g in report.symbols if g.missing]
    empty = [g.symbol for g in bad if g.empty]
    text = (f"gaps: {report.missing_candles} candles missing in {len(bad)} of "
            f"{len(report.symbols)} symbols")
    if empty:
        text += f"; no candles stored at all for {', '.join(empty)}"
    return text


def _iso_z(ms: int) -> str:
    return iso(ms).replace(" ", "T") + "Z"


def _ranges_json(tf: Timeframe, ranges) -> list[dict]:
    return [{"first": _iso_z(a), "last": _iso_z(b - tf.ms), "candles": tf.count(a, b)}
            for a, b in ranges]


def check_json(report: GapReport, tf: Timeframe) -> dict:
    return {
        "exchange": report.exchange, "timeframe": report.timeframe, "price": report.price,
        "start": _iso_z(report.start), "end": _iso_z(report.end), "ok": report.ok,
        "missing_candles": report.missing_candles,
        "symbols": [{
            "symbol": g.symbol, "status": _status(g), "start": _iso_z(g.start),
            "end": _iso_z(g.end), "expected": g.expected, "missing_candles": g.missing_candles,
            "coverage": g.coverage, "missing": _ranges_json(tf, g.missing),
            "exchange_gaps": _ranges_json(tf, g.exchange_gaps),
        } for g in report.symbols],
    }


def repair_table(report: RepairReport, tf: Timeframe, wide: bool = False) -> Table:
    """Symbol, missing, written, candles the exchange has none of, still missing, status;
    `wide` lists the ranges the exchange has none for."""
    t = table(_title("gaps repair", report, wide))
    column(t, "symbol")
    column(t, "missing", right=True)
    column(t, "written", right=True)
    if wide:
        column(t, "no data at the exchange: first → last open time (candles)")
        column(t, "still missing", right=True)
    else:
        column(t, "no data", right=True)
        column(t, "left", right=True)
    column(t, "status")
    for r in report.symbols:
        status = "FAILED" if r.error else ("incomplete" if r.still_missing else "ok")
        empty = _lines(tf, r.exchange_empty) or "-" if wide else str(count(tf, r.exchange_empty))
        t.add_row(r.symbol, str(count(tf, r.missing)), str(r.written), empty,
                  str(r.still_missing_candles), status)
    return t


def _repair_summary(report: RepairReport, tf: Timeframe) -> str:
    written = sum(r.written for r in report.symbols)
    empty = sum(count(tf, r.exchange_empty) for r in report.symbols)
    text = f"repaired: {written} candles written, {empty} confirmed missing at the exchange"
    still = sum(r.still_missing_candles for r in report.symbols)
    if still:
        text += f"; still missing: {still} candles"
    return text


def repair_json(report: RepairReport, tf: Timeframe) -> dict:
    return {
        "exchange": report.exchange, "timeframe": report.timeframe, "price": report.price,
        "start": _iso_z(report.start), "end": _iso_z(report.end), "ok": report.ok,
        "symbols": [{
            "symbol": r.symbol, "missing": _ranges_json(tf, r.missing), "fetched": r.fetched,
            "written": r.written, "exchange_empty": _ranges_json(tf, r.exchange_empty),
            "still_missing": _ranges_json(tf, r.still_missing), "error": r.error,
        } for r in report.symbols],
    }
