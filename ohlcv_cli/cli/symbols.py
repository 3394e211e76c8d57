"""`ohlcv symbols PATTERN`: what a --symbols pattern selects on the exchange."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ohlcv_cli import api
from ohlcv_cli.cli.common import ExchangeUrlOpt, plain_help, settings


def symbols(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Argument(
        help="Regular expression matched in full, any case, e.g. '.*/USDT'; or a comma list "
        "of patterns and symbols, as --symbols takes it")] = ".*",
    market: Annotated[Optional[str], typer.Option(
        "--market", help=plain_help(
            "spot, usdm (USD-M futures: BTC/USDT:USDT, BTC/USDT:USDT-261225) or coinm (COIN-M: "
            "BTC/USD:BTC), or a comma list", "what the pattern names, spot for a plain "
            "pattern"))] = None,
    exchange_url: ExchangeUrlOpt = None,
) -> None:
    """List the exchange's symbols a pattern selects, one a line (exit 2 if none)."""
    s = settings(ctx, "symbols", exchange_url=exchange_url)
    for sym in api.symbols(pattern, s, market=market):
        typer.echo(sym)
