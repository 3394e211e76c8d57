"""`ohlcv status`: what the store holds, how complete and how fresh."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from ohlcv_cli import api
from ohlcv_cli.cli.common import (
    DatabaseOpt, JsonOpt, WideOpt, column, console, settings, span, table,
)
from ohlcv_cli.core.timeutil import iso
from ohlcv_cli.services.status import SeriesStatus


def status(
    ctx: typer.Context,
    symbols: Annotated[Optional[str], typer.Option(
        "--symbols", help="Only these symbols: a comma list of symbols or patterns, as SYMBOLS "
        "takes it \\[default: every symbol stored]")] = None,
    timeframe: Annotated[Optional[str], typer.Option(
        "--timeframe", "-t",
        help="Only this timeframe \\[default: every timeframe stored]")] = None,
    price: Annotated[Optional[str], typer.Option(
        "--price", help="Only this price series: trade, mark, index or premium \\[default: "
        "every price series stored]")] = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Also draw the coverage timeline to this .png or .html \\[default: no picture]")] = None,
) -> None:
    """Show what the store holds per symbol, timeframe and price series: range, coverage and
    freshness.

    With --wide also the stored and expected counts and the ranges the exchange has no candles
    for."""
    # Only the flags filter: without them every series in the store is shown.
    s = settings(ctx, "status", database_url=database_url)
    report = api.status(s, symbols=symbols, timeframe=timeframe, price=price)
    if plot is not None:
        from ohlcv_cli.cli.plot import coverage

        coverage(s, plot, symbols, timeframe, price)
    if as_json:
        typer.echo(json.dumps([_json(r) for r in report.series], indent=2))
    elif not report.series:
        console.print(f"no candles stored in {report.database}", markup=False, highlight=False)
    else:
        console.print(status_table(report, wide))
        console.print("age: time since the newest candle closed" + (
            "; exchange gaps: ranges / candles the exchange has none for" if wide else ""),
            markup=False, highlight=False)
    if not as_json:  # funding coverage per perpetual (cli/funding.py)
        from ohlcv_cli.cli.funding import print_status
        print_status(s, symbols)


def status_table(report: api.StatusReport, wide: bool = False) -> Table:
    """Symbol, timeframe, price series, first → last candle (compact), coverage, age; `wide`:
    first and last in full, stored and expected counts, exchange gaps. The compact table shows
    the price column when a series other than trade is in it (a spot store's stays as it was)."""
    t = table(f"store at {report.database}")
    prices = wide or any(r.price != "trade" for r in report.series)
    if wide:
        for col in ("symbol", "timeframe", "price", "first", "last"):
            column(t, col)
        for col in ("stored", "expected", "coverage %", "age", "exchange gaps"):
            column(t, col, right=True)
    else:
        for col in ("symbol", "tf") + (("price",) if prices else ()) + ("first → last candle",):
            column(t, col)
        for col in ("cover %", "age"):
            column(t, col, right=True)
    for r in report.series:
        pct = f"{int(r.coverage * 100) / 100:.2f}"
        if wide:
            t.add_row(r.symbol, r.timeframe, r.price, iso(r.first), iso(r.last), str(r.stored),
                      str(r.expected), pct, age(r.age_ms),
                      f"{r.exchange_gap_ranges} / {r.exchange_gap_candles}"
                      if r.exchange_gap_ranges else "-")
        else:
            seconds = r.timeframe.endswith("s")
            t.add_row(r.symbol, r.timeframe, *([r.price] if prices else []),
                      span(r.first, r.last, seconds), pct, age(r.age_ms))
    return t


def age(ms: int) -> str:
    seconds = max(0, ms) // 1000
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                      ("m", 60, "s", 1)):
        if seconds >= size:
            return f"{seconds // size}{unit} {seconds % size // sub_size}{sub}"
    return f"{seconds}s"


def _json(r: SeriesStatus) -> dict:
    def z(ms: int) -> str:
        return iso(ms).replace(" ", "T") + "Z"

    return {
        "exchange": r.exchange, "symbol": r.symbol, "timeframe": r.timeframe, "price": r.price,
        "first": z(r.first), "last": z(r.last), "stored": r.stored, "expected": r.expected,
        "coverage": r.coverage, "age_seconds": r.age_ms / 1000,
        "exchange_gap_ranges": r.exchange_gap_ranges,
        "exchange_gap_candles": r.exchange_gap_candles,
    }
