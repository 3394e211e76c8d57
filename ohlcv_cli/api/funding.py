"""Funding rates from Python: backfill, check, repair and reads (issue 19).

    from ohlcv_cli import api
    report = api.funding_backfill(symbols="BTC/USDT:USDT,BTC/USD:BTC", days=365)
    api.funding_check(symbols="BTC/USDT:USDT", days=30).ok
    store.funding("BTC/USDT:USDT", start="2026-01-01")       # a DataFrame of settlements

Only perpetual contracts have funding: a spot or delivery symbol given by name is a ConfigError;
from SYMBOLS the perpetuals are taken and the others left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from ohlcv_cli.api import wiring
from ohlcv_cli.api.wiring import USES
from ohlcv_cli.core.settings import DATABASE, EXCHANGE, LOGGING, SOURCES, Settings, load_settings
from ohlcv_cli.core.symbols import parse_symbols
from ohlcv_cli.core.timeutil import to_ms
from ohlcv_cli.services.funding import (
    GRACE_MS, FillReport, FundingBackfill, FundingCheck, FundingReport, FundingRepair,
    exchange_rules, funding_bounds, perpetuals,
)

__all__ = ["funding_backfill", "funding_check", "funding_repair", "funding_status",
           "read_funding"]

_WINDOW = frozenset({"symbols", "backfill_days"})
# The settings each funding command reads (registered beside the other commands' in USES).
USES.update({
    "funding_backfill": LOGGING | DATABASE | EXCHANGE | _WINDOW | SOURCES
    | {"backfill_concurrency"},
    "funding_check": LOGGING | DATABASE | EXCHANGE | _WINDOW,
    "funding_repair": LOGGING | DATABASE | EXCHANGE | _WINDOW | SOURCES,
    "funding_read": LOGGING | DATABASE | {"exchange", "symbols"},
})

Time = Any


def _now_ms() -> int:
    return int(time.time() * 1000)


def _settings(command: str, settings: Settings | None, overrides: dict) -> Settings:
    if settings is not None:
        return settings
    return load_settings(uses=USES[command], **{k: v for k, v in overrides.items()})


def _symbols(s: Settings, symbols) -> list[str]:
    if symbols is not None:
        return perpetuals(parse_symbols(symbols), explicit=True)
    return perpetuals(s.symbols, explicit=False)


def _asked(days, start, end) -> tuple[float | None, int | None, int | None]:
    """The window as asked, checked before anything is opened or asked."""
    from ohlcv_cli.core.errors import ConfigError
    from ohlcv_cli.core.window import check_days

    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    if days is not None and start_ms is not None:
        raise ConfigError("use either days or a start (and an end), not both")
    if end_ms is not None and start_ms is None:
        raise ConfigError("an end needs a start")
    if days is not None:
        check_days(days, _now_ms())
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConfigError(f"start {start} is not before end {end}")
    return days, start_ms, end_ms


def _window(s: Settings, now: int, asked) -> tuple[int, int]:
    days, start_ms, end_ms = asked
    if start_ms is None and days is None:
        days = s.backfill_days
    return funding_bounds(now, days, start_ms, end_ms)


def repository(s: Settings, eng):
    """The funding table's repository, after checking the schema (0006) is current."""
    from ohlcv_cli.adapters.sql.funding import SqlFundingRepository
    from ohlcv_cli.adapters.sql.schema import ensure_current

    ensure_current(eng, auto_upgrade=s.uses_embedded_default())
    return SqlFundingRepository(eng)


def source(s: Settings, archive: bool = True):
    """Binance's funding side: REST through the process's one fetcher, with the endpoint's own
    budget, and (unless BACKFILL_SOURCE=rest) the archive's monthly files."""
    from ohlcv_cli.adapters.binance.funding import BinanceFunding

    files = None
    if archive and s.backfill_source != "rest":
        base = s.archive_base(explicit=s.backfill_source == "archive")
        if base is not None:
            from ohlcv_cli.adapters.binance.archive import BinanceArchive

            files = BinanceArchive(base, timeout_s=s.exchange_timeout_seconds * 3,
                                   max_retries=s.exchange_max_retries)
    return BinanceFunding(wiring.fetcher(s), files, exchange=s.exchange)


def _fill(kind, command: str, settings, symbols, days, start, end, progress, overrides
          ) -> FillReport:
    asked = _asked(days, start, end)
    s = _settings(command, settings, overrides)
    syms = _symbols(s, symbols)
    eng = wiring.engine(s)
    repo = repository(s, eng)
    src = source(s)
    lo, hi = _window(s, src.now_ms(), asked)
    concurrency = getattr(s, "backfill_concurrency", 4) if command == "funding_backfill" else 1
    return kind(src, repo, concurrency=concurrency, archive_concurrency=s.archive_concurrency,
                progress=progress).run(syms, lo, hi)


def funding_backfill(settings: Settings | None = None, *, symbols: str | Sequence[str] | None = None,
                     days: float | None = None, start: Time = None, end: Time = None,
                     progress=None, **overrides) -> FillReport:
    """Every funding settlement of the window the store does not have yet: `days`
    (BACKFILL_DAYS) back from now, or from `start` to `end`. Whole past months from the
    archive's monthly files (USD-M; BACKFILL_SOURCE=rest: none), the rest from REST."""
    return _fill(FundingBackfill, "funding_backfill", settings, symbols, days, start, end,
                 progress, overrides)


def funding_repair(settings: Settings | None = None, *, symbols: str | Sequence[str] | None = None,
                   days: float | None = None, start: Time = None, end: Time = None,
                   progress=None, **overrides) -> FillReport:
    """Fetch the settlements `funding_check` reports missing; `still_missing` per symbol is what
    the exchange has none of either."""
    return _fill(FundingRepair, "funding_repair", settings, symbols, days, start, end,
                 progress, overrides)


def funding_check(settings: Settings | None = None, *, symbols: str | Sequence[str] | None = None,
                  days: float | None = None, start: Time = None, end: Time = None,
                  **overrides) -> FundingReport:
    """The due settlements of the window with none stored, per symbol. The current interval
    and the onboard time come from the exchange (fundingInfo, exchangeInfo), the past
    intervals from the stored settlements' spacing."""
    asked = _asked(days, start, end)
    s = _settings("funding_check", settings, overrides)
    syms = _symbols(s, symbols)
    eng = wiring.engine(s, create=False)
    repo = repository(s, eng)
    src = source(s, archive=False)
    lo, hi = _window(s, src.now_ms(), asked)
    return FundingCheck(repo, s.exchange).run(syms, lo, hi, exchange_rules(src, syms))


@dataclass(frozen=True)
class FundingCoverage:
    """`ohlcv status`'s funding line of a symbol: what is stored, and how complete it is from
    its first stored settlement to now by the stored intervals (the database only)."""

    symbol: str
    count: int
    first: int
    last: int
    interval_hours: int | None
    due: int
    missing: int
    age_ms: int

    @property
    def coverage(self) -> float:
        return 100.0 if not self.due else 100.0 * (self.due - self.missing) / self.due


def funding_status(settings: Settings | None = None, *, symbols: Sequence[str] | None = None,
                   now: Time = None, **overrides) -> list[FundingCoverage]:
    """Per symbol with settlements stored (all, or those of `symbols`)."""
    s = _settings("funding_read", settings, overrides)
    eng = wiring.engine(s, create=False)
    repo = repository(s, eng)
    now_ms = to_ms(now, "now") or _now_ms()
    check = FundingCheck(repo, s.exchange)
    out = []
    for row in repo.summary(list(symbols) if symbols else None):
        lo, hi = row.first, max(row.first + 1, now_ms - GRACE_MS + 1)
        g = check.symbol(row.symbol, lo, hi)
        out.append(FundingCoverage(row.symbol, row.count, row.first, row.last,
                                   row.interval_hours, g.due, len(g.missing), now_ms - row.last))
    return out


def read_funding(engine, exchange: str, symbol: str, start: Time = None, end: Time = None,
                 exact: bool = False, output: str = "pandas"):
    """The stored settlements of a symbol in [start, end) as pandas (indexed by funding_time,
    UTC), polars or Arrow; rate and mark_price float64, or exact decimals with exact=True."""
    from ohlcv_cli.adapters.files.funding import funding_frame
    from ohlcv_cli.adapters.sql.funding import SqlFundingRepository
    from ohlcv_cli.core.errors import ConfigError

    if output not in ("pandas", "polars", "arrow"):
        raise ConfigError(f"unknown output {output!r}; use one of pandas, polars, arrow")
    symbol = perpetuals(parse_symbols([symbol]))[0]
    rows = SqlFundingRepository(engine).read(exchange, symbol, to_ms(start, "start"),
                                             to_ms(end, "end"))
    return funding_frame(rows, exact, output)


def export_funding(settings: Settings | None, symbol: str, path: str, *, start: Time = None,
                   end: Time = None, **overrides) -> int:
    """Write the stored settlements of `symbol` in [start, end) to a .csv or .parquet file (or
    CSV on stdout for `-`); returns the rows written."""
    from ohlcv_cli.adapters.files.funding import write_funding
    from ohlcv_cli.adapters.sql.funding import SqlFundingRepository

    s = _settings("funding_read", settings, overrides)
    sym = perpetuals(parse_symbols([symbol]))[0]
    eng = wiring.engine(s, create=False)
    repository(s, eng)
    rows = SqlFundingRepository(eng).read(s.exchange, sym, to_ms(start, "start"),
                                          to_ms(end, "end"))
    return write_funding(rows, path)
