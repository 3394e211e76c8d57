"""Where `backfill` and `gaps repair` take history from: the options, and what the summaries add."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ohlcv_cli.cli.common import setting_help

SourceOpt = Annotated[Optional[str], typer.Option(
    "--source", help=setting_help("auto (archive files, then REST for the rest), rest, or "
                                  "archive", "backfill_source"))]
ArchiveUrlOpt = Annotated[Optional[str], typer.Option(
    "--archive-url", help=setting_help("Binance's public archive, or the simulator",
                                       "archive_url",
                                       "https://data.binance.vision unless --exchange-url is "
                                       "elsewhere"))]
NoVerifyOpt = Annotated[bool, typer.Option(
    "--no-verify", help="Skip the spot-check of each archive file against REST (one request "
    "per file)")]


def archive_line(symbol: str, a) -> str | None:
    """One line on a symbol's archive pass in `gaps repair`, or None if it had nothing to do."""
    if not (a.files or a.not_published or a.files_rejected or a.unavailable):
        return None
    return (f"{symbol}: {a.candles} candles from {a.files} archive files; files rejected: "
            f"{a.rejected} by checksum, {a.disagreed} by the spot-check against REST; "
            f"{a.not_published} not published")
