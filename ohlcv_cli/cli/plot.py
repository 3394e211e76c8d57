"""`ohlcv plot`: a candlestick chart with volume, as a PNG or a self-contained HTML."""

from __future__ import annotations

from typing import Annotated

import typer

from ohlcv_cli.cli.common import DatabaseOpt, PriceOpt, console, settings
from ohlcv_cli.cli.export import DaysOpt, EndOpt, StartOpt, warn_incomplete, window
from ohlcv_cli.core.timeutil import iso


def plot(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="Symbol, any case: BTC/USDT, or the id form BTCUSDT")],
    out: Annotated[str, typer.Option("--out", "-o", help="chart.png (static) or chart.html (interactive)")],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Stored or derivable timeframe", show_default=True)] = "1h",
    price: PriceOpt = None,
    days: DaysOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    database_url: DatabaseOpt = None,
    funding: Annotated[bool, typer.Option("--funding", help="Also draw the funding rate of a perpetual under the volume")] = False,
) -> None:
    """Draw candlesticks with volume underneath to a PNG or an HTML file.

    UTC time axis; a candle that is not stored is a hole. Without --days/--start: everything
    stored."""
    from ohlcv_cli.api.read import check_picture, open_store

    start_ms, end_ms = window(days, start, end)
    check_picture(out)
    s = settings(ctx, "plot", price=price, database_url=database_url)
    with open_store(s) as store:
        w = store.window(symbol, timeframe, start_ms, end_ms, s.candle_price)
        drawn, incomplete = store.plot(symbol, timeframe, w.start, w.end, out, w.price,
                                       funding=funding)
    warn_incomplete(w.symbol, timeframe, incomplete)
    what = timeframe if w.price == "trade" else f"{timeframe} {w.price}"
    console.print(f"{out}: {drawn} {what} candles of {w.symbol}, {iso(w.start)} to "
                  f"{iso(w.end)} UTC", markup=False, highlight=False, soft_wrap=True)


def coverage(s, out: str, symbols: str | None, timeframe: str | None,
             price: str | None = None) -> None:
    """`ohlcv status --plot PATH`: per symbol and timeframe, what is stored, missing, or has no
    candles on the exchange."""
    from ohlcv_cli.api.read import check_picture, open_store

    check_picture(out)
    with open_store(s) as store:
        wanted = store.resolve(symbols) if symbols is not None else None
        n = store.plot_coverage(out, wanted, timeframe, price)
    console.print(f"{out}: coverage of {n} series", markup=False, highlight=False)
