"""Where `backfill` and `gaps repair` take history from: the archive's options, wiring, progress
and the per-source summary table."""

from __future__ import annotations

from typing import Annotated, Callable, Optional

import typer
from rich.table import Table

from ohlcv_cli.core.settings import Settings
from ohlcv_cli.core.timeutil import iso
from ohlcv_cli.services.archive import ArchivePass, SourcedResult

SourceOpt = Annotated[Optional[str], typer.Option(
    "--source", help="auto (archive files, then REST for the rest), rest, or archive "
    "[env: BACKFILL_SOURCE]")]
ArchiveUrlOpt = Annotated[Optional[str], typer.Option(
    "--archive-url", help="Binance's public archive, or the simulator [env: OHLCV_ARCHIVE_URL]")]
NoVerifyOpt = Annotated[bool, typer.Option(
    "--no-verify", help="Skip the spot-check of each archive file against REST (one request "
    "per file)")]


def archive_pass(s: Settings, engine, fetcher, *, verify: bool, progress=None) -> ArchivePass | None:
    """The archive pass for the configured source, or None for `rest`."""
    if s.backfill_source == "rest":
        return None
    from ohlcv_cli.adapters.binance_archive import BinanceArchive
    from ohlcv_cli.adapters.sql_archive import SqlArchiveWriter

    return ArchivePass(BinanceArchive(s.archive_url, timeout_s=s.exchange_timeout_seconds * 3,
                                      max_retries=s.exchange_max_retries),
                       SqlArchiveWriter(engine), fetcher, verify=verify,
                       concurrency=s.archive_concurrency, progress=progress)


class SourcedProgress:
    """One bar per symbol across both passes: the archive's candles first, then REST's on top."""

    def __init__(self, show: Callable[[str, int, int, str], None]) -> None:
        self._show = show
        self._archived: dict[str, int] = {}

    def archive(self, symbol: str, done: int, total: int, files_done: int, files: int) -> None:
        self._archived[symbol] = done
        self._show(symbol, done, total, f"archive files {files_done}/{files}")

    def rest(self, symbol: str, done: int, total: int) -> None:
        base = self._archived.get(symbol, 0)
        self._show(symbol, base + done, base + total, "REST")


def sourced_table(result: SourcedResult) -> Table:
    table = Table(title=f"backfill {result.timeframe} {iso(result.start)} → {iso(result.end)} UTC"
                        f" (source {result.source})")
    cols = ("symbol", "written", "from archive", "from REST", "archive files",
            "rejected: checksum", "rejected: vs REST", "range", "no candles at exchange",
            "seconds", "status")
    for col in cols:
        table.add_column(col, justify="left" if col in ("symbol", "range", "status") else "right")
    rest = {r.symbol: r for r in (result.rest.symbols if result.rest else [])}
    symbols = list(rest) or list(result.archive)
    for sym in symbols:
        a = result.archive.get(sym)
        r = rest.get(sym)
        from_archive = a.candles if a else 0
        from_rest = r.written if r else 0
        error = (a and a.error) or (r and r.error)
        left = result.left_missing.get(sym, 0)
        status = "FAILED" if error else ("incomplete" if left else "ok")
        table.add_row(
            sym, str(from_archive + from_rest), str(from_archive), str(from_rest),
            str(a.files) if a else "0", str(a.rejected) if a else "0",
            str(a.disagreed) if a else "0", f"{iso(result.start)} → {iso(result.end)}",
            str(r.exchange_missing) if r else "-",
            f"{(a.seconds if a else 0) + (r.seconds if r else 0):.1f}", status,
        )
    return table


def errors(result: SourcedResult) -> list[tuple[str, str]]:
    out = [(s, a.error) for s, a in result.archive.items() if a.error]
    seen = {s for s, _ in out}
    if result.rest:
        out += [(r.symbol, r.error) for r in result.rest.symbols if r.error and r.symbol not in seen]
    return out
