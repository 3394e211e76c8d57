"""`ohlcv export`: candles to csv, parquet, jsonl or feather (or freqtrade's layout), streamed
in chunks."""

from __future__ import annotations

import os
import time
from typing import Annotated, Optional

import typer

from ohlcv_cli.cli.common import (
    DatabaseOpt, PriceOpt, SymbolsOpt, TimeframeOpt, err_console, history_window, plain_help,
    settings,
)
from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.timeframes import DAY_MS
from ohlcv_cli.core.timeutil import iso

DaysOpt = Annotated[Optional[int], typer.Option("--days", help=plain_help("The last N days up to now", "everything stored"))]
StartOpt = Annotated[Optional[str], typer.Option("--start", help=plain_help("ISO start (inclusive), UTC if no zone", "the oldest candle"))]
EndOpt = Annotated[Optional[str], typer.Option("--end", help=plain_help("ISO end (exclusive)", "after the newest candle"))]


def window(days: int | None, start: str | None, end: str | None) -> tuple[int | None, int | None]:
    """--days N (up to now), --start [--end], or nothing (everything stored); the flags checked
    as for every window (history_window)."""
    w = history_window(days, start, end)
    if w.days is not None:
        now = int(time.time() * 1000)
        return now - int(w.days * DAY_MS), now
    return w.start, w.end


def warn(text: str) -> None:
    err_console.print(f"warning: {text}", markup=False, highlight=False, soft_wrap=True)


def warn_incomplete(symbol: str, timeframe: str, buckets: list[int]) -> None:
    if buckets:
        warn(f"{symbol}: {len(buckets)} {timeframe} candles left out, their base candles are not"
             f" all stored (first {iso(min(buckets))}); `ohlcv gaps check` tells which")


def export(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", "-o", help="File path, a directory with --per-symbol, or - for stdout")],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="csv, parquet, jsonl or feather; \\[default: what --out's extension names, csv for stdout or a directory]")] = None,
    symbols: SymbolsOpt = None,
    timeframe: TimeframeOpt = None,
    price: PriceOpt = None,
    days: DaysOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    per_symbol: Annotated[bool, typer.Option("--per-symbol", help="One file per symbol (no symbol column); --out is a directory or a path with {symbol} \\[default: one file]")] = False,
    decimals: Annotated[str, typer.Option("--decimals", help="exact (decimal strings, decimal128 in parquet/feather) or float (float64)")] = "exact",
    layout: Annotated[Optional[str], typer.Option("--layout", help="freqtrade: --out is freqtrade's data directory; writes <out>/binance/BTC_USDT-1m.feather")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Write candles of stored or derived timeframes to a file, exactly as stored.

    csv, parquet, jsonl or feather (from --out's extension), or freqtrade's layout; streamed in
    chunks with flat memory. Without --days/--start: everything stored."""
    from ohlcv_cli.api.read import open_store

    start_ms, end_ms = window(days, start, end)
    s = settings(ctx, "export", symbols=symbols, timeframe=timeframe, price=price,
                 database_url=database_url)
    tf = s.timeframe.name
    with open_store(s) as store:
        syms = store.resolve(list(s.symbols))  # id forms and patterns against what is stored
        result = store.export(syms, tf, start_ms, end_ms, fmt, out, per_symbol,
                              decimals=decimals, layout=layout, price=s.candle_price)
    if s.candle_price != "trade":
        tf = f"{tf} {s.candle_price}"  # how the lines below name the candles
    if result.rows == 0:
        for f in result.files:
            if f != "-" and os.path.exists(f):
                os.remove(f)
        raise ConfigError(f"no {tf} candles of {', '.join(syms)} in the window:"
                          " nothing exported")
    for sym, why in result.empty.items():
        warn(f"{sym}: {why}")
    for sym, buckets in result.incomplete.items():
        warn_incomplete(sym, tf, buckets)
    rate = result.rows / result.seconds if result.seconds else 0
    written = len(syms) - len(result.empty)
    err_console.print(
        f"exported {result.rows} {tf} candles of {written} symbol(s) to "
        f"{', '.join('stdout' if f == '-' else f for f in result.files)} in {result.seconds:.2f} s"
        f" ({rate:,.0f} candles/s)", markup=False, highlight=False, soft_wrap=True)
