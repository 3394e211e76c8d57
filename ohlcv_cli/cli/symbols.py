"""`ohlcv symbols PATTERN`: what a --symbols pattern selects on the exchange."""

from __future__ import annotations

from typing import Annotated

import typer

from ohlcv_cli import api
from ohlcv_cli.cli.common import ExchangeUrlOpt, settings


def symbols(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Argument(
        help="Regular expression matched in full, any case, e.g. '.*/USDT'; or a comma list "
        "of patterns and symbols, as --symbols takes it")] = ".*",
    exchange_url: ExchangeUrlOpt = None,
) -> None:
    """List the exchange's spot symbols a pattern selects, one a line (exit 2 if none)."""
    s = settings(ctx, "symbols", exchange_url=exchange_url)
    for sym in api.symbols(pattern, s):
        typer.echo(sym)
