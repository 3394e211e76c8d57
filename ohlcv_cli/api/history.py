"""The commands on the store: upgrade, db_current, backfill, gaps_check, gaps_repair, status."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from ohlcv_cli.api import wiring
from ohlcv_cli.api.wiring import settings_for, to_ms
from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.settings import Settings, redact_url
from ohlcv_cli.core.symbols import parse_symbols
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.window import check_days
from ohlcv_cli.services.archive import backfill_from_sources, repair_from_sources
from ohlcv_cli.services.backfill import Backfill, BackfillResult, Progress
from ohlcv_cli.services.gaps import GapCheck, GapRepair, GapReport, RepairReport
from ohlcv_cli.services.status import SeriesStatus, Status

Time = int | str | datetime | None


@dataclass(frozen=True)
class UpgradeResult:
    database: str  # the URL, password redacted
    before: str | None  # revision before (None: empty database)
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class RevisionResult:
    database: str
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


@dataclass(frozen=True)
class StatusReport:
    database: str
    series: list[SeriesStatus]


def upgrade(settings: Settings | None = None, **overrides) -> UpgradeResult:
    """Create or migrate the schema to the newest revision."""
    from ohlcv_cli.adapters.sql.schema import upgrade as run_upgrade

    s = settings_for("upgrade", settings, **overrides)
    before, after = run_upgrade(wiring.engine(s))
    return UpgradeResult(redact_url(s.db_url()), before, after)


def db_current(settings: Settings | None = None, **overrides) -> RevisionResult:
    """The schema revision of the database and the newest one."""
    from ohlcv_cli.adapters.sql.schema import current_revision, head_revision

    s = settings_for("db_current", settings, **overrides)
    return RevisionResult(redact_url(s.db_url()), current_revision(wiring.engine(s, create=False)),
                          head_revision())


def _window(days: int | None, start: Time, end: Time) -> dict:
    """Overrides and bounds of a window: days, or a start (and an end)."""
    if days is not None and start is not None:
        raise ConfigError("use either days or a start (and an end), not both")
    if days is not None:
        check_days(days, int(time.time() * 1000))
    if end is not None and start is None:
        raise ConfigError("an end needs a start")
    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConfigError(f"start {start} is not before end {end}")
    return {"days": days, "start": start_ms, "end": end_ms}


def backfill(settings: Settings | None = None, *, days: int | None = None, start: Time = None,
             end: Time = None, progress: Progress | None = None,
             file_progress: Progress | None = None,
             stop: threading.Event | None = None, verify: bool = True,
             **overrides) -> BackfillResult:
    """Fetch every candle the store is missing in the window: `days` (BACKFILL_DAYS) back from
    now, or from `start` to `end` (default now). `progress(symbol, done, total)` is called as
    candles arrive, `file_progress(symbol, files done, files to do)` as archive files do; setting `stop` ends it after the page at hand. Symbols that failed are named
    in the result (`result.failed`). BACKFILL_SOURCE (`backfill_source`): `auto` takes whole
    months and days from Binance's public archive (OHLCV_ARCHIVE_URL), each file verified by its
    checksum and, unless `verify` is False, spot-checked against REST; the rest comes from REST."""
    bounds = _window(days, start, end)
    s = settings_for("backfill", settings, **overrides)
    eng = wiring.engine(s)
    fetcher = wiring.fetcher(s)
    s = wiring.exchange_symbols(s, fetcher)
    fetcher.check_symbols(s.symbols)
    repo = wiring.repository(s, eng)
    rest = Backfill(fetcher, repo, concurrency=s.backfill_concurrency,
                    batch_size=s.backfill_batch_size, progress=progress,
                    gaps=wiring.gap_repository(eng), stop=stop, in_flight=s.backfill_in_flight)
    return backfill_from_sources(rest, wiring.archive_pass(s, eng, fetcher, verify=verify,
                                                           stop=stop),
                                 s.symbols, s.timeframe, source=s.backfill_source,
                                 progress=progress, file_progress=file_progress,
                                 **_days(s, bounds))


def _days(s: Settings, bounds: dict) -> dict:
    """The bounds, with BACKFILL_DAYS when neither days nor a start was given."""
    if bounds["start"] is None and bounds["days"] is None:
        check_days(s.backfill_days, int(time.time() * 1000))
        return {**bounds, "days": s.backfill_days}
    return bounds


def _check_window(s: Settings, bounds: dict) -> dict:
    return {"delay_ms": int(s.realtime_delay_seconds * 1000), **_days(s, bounds)}


def gaps_check(settings: Settings | None = None, *, days: int | None = None, start: Time = None,
               end: Time = None, now: Time = None, **overrides) -> GapReport:
    """The closed candles the store is missing in the window, per symbol; reads only the
    database ("now" is the local clock unless given)."""
    bounds = _window(days, start, end)
    s = settings_for("gaps_check", settings, **overrides)
    eng = wiring.engine(s, create=False)
    repo = wiring.repository(s, eng)
    s = wiring.stored_symbols(s, eng)
    now_ms = to_ms(now, "now") or int(time.time() * 1000)
    return GapCheck(repo, wiring.gap_repository(eng), s.exchange).run(
        s.symbols, s.timeframe, now_ms, **_check_window(s, bounds))


def gaps_repair(settings: Settings | None = None, *, days: int | None = None, start: Time = None,
                end: Time = None, stop: threading.Event | None = None, verify: bool = True,
                **overrides) -> RepairReport:
    """Fetch the missing candles of the window; record the ranges the exchange confirms it has
    none for. BACKFILL_SOURCE applies as for `backfill` (`report.archive`: the archive pass)."""
    bounds = _window(days, start, end)
    s = settings_for("gaps_repair", settings, **overrides)
    eng = wiring.engine(s)
    repo = wiring.repository(s, eng)
    fetcher = wiring.fetcher(s)
    s = wiring.exchange_symbols(s, fetcher)
    repair = GapRepair(fetcher, repo, wiring.gap_repository(eng),
                       batch_size=s.backfill_batch_size, stop=stop, in_flight=s.backfill_in_flight)
    return repair_from_sources(repair, wiring.archive_pass(s, eng, fetcher, verify=verify,
                                                           stop=stop),
                               s.symbols, s.timeframe, source=s.backfill_source,
                               **_check_window(s, bounds))


def status(settings: Settings | None = None, *, symbols: str | Sequence[str] | None = None,
           timeframe: str | None = None, now: Time = None, **overrides) -> StatusReport:
    """Per series in the store (all, or those of `symbols` / `timeframe`): first and last candle,
    stored and expected counts, freshness, known exchange gaps."""
    wanted = parse_symbols(symbols) if symbols is not None else None
    tf = parse_timeframe(timeframe).name if timeframe is not None else None
    s = settings_for("status", settings, **overrides)
    eng = wiring.engine(s, create=False)
    wiring.repository(s, eng)  # checks the schema
    if wanted is not None:  # id forms and patterns against the symbols stored
        wanted = list(wiring.stored_symbols(s.model_copy(update={"symbols": tuple(wanted)}),
                                            eng).symbols)
    now_ms = to_ms(now, "now") or int(time.time() * 1000)
    rows = Status(wiring.gap_repository(eng)).run(now_ms, wanted, tf)
    return StatusReport(redact_url(s.db_url()), rows)
