"""`ohlcv status`: what the store holds, how complete and how fresh."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from ohlcv_cli import api
from ohlcv_cli.cli.common import DatabaseOpt, JsonOpt, SymbolsOpt, TimeframeOpt, console, settings
from ohlcv_cli.core.timeutil import iso
from ohlcv_cli.services.status import SeriesStatus


def status(
    ctx: typer.Context,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Also draw the coverage timeline to this .png or .html")] = None,
) -> None:
    """Per symbol and timeframe in the store: first and last candle, stored and expected counts,
    coverage, freshness and the ranges the exchange has no candles for."""
    # Only the flags filter: without them every series in the store is shown.
    s = settings(ctx, "status", database_url=database_url)
    report = api.status(s, symbols=symbols, timeframe=timeframe)
    if plot is not None:
        from ohlcv_cli.cli.plot import coverage

        coverage(s, plot, symbols, timeframe)
    if as_json:
        typer.echo(json.dumps([_json(r) for r in report.series], indent=2))
    elif not report.series:
        console.print(f"no candles stored in {report.database}", markup=False, highlight=False)
    else:
        console.print(status_table(report))
        console.print("age: time since the newest candle closed; exchange gaps: ranges / candles "
                      "the exchange has none for", markup=False, highlight=False)


def status_table(report: api.StatusReport) -> Table:
    table = Table(title=f"store at {report.database}")
    for col in ("symbol", "timeframe", "first", "last"):
        table.add_column(col)
    for col in ("stored", "expected", "coverage %", "age", "exchange gaps"):
        table.add_column(col, justify="right")
    for r in report.series:
        table.add_row(r.symbol, r.timeframe, iso(r.first), iso(r.last), str(r.stored),
                      str(r.expected), f"{int(r.coverage * 100) / 100:.2f}", age(r.age_ms),
                      f"{r.exchange_gap_ranges} / {r.exchange_gap_candles}"
                      if r.exchange_gap_ranges else "-")
    return table


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
        "exchange": r.exchange, "symbol": r.symbol, "timeframe": r.timeframe,
        "first": z(r.first), "last": z(r.last), "stored": r.stored, "expected": r.expected,
        "coverage": r.coverage, "age_seconds": r.age_ms / 1000,
        "exchange_gap_ranges": r.exchange_gap_ranges,
        "exchange_gap_candles": r.exchange_gap_candles,
    }
