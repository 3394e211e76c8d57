"""The commands on the store: upgrade, db_current, backfill, gaps_check, gaps_repair, status."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from ohlcv_cli.api import wiring
from ohlcv_cli.api.wiring import settings_for
from ohlcv_cli.core.markets import check_price
from ohlcv_cli.core.settings import Settings, redact_url
from ohlcv_cli.core.symbols import parse_symbols
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import to_ms
from ohlcv_cli.core.window import HistoryWindow
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


def _now_ms() -> int:
    return int(time.time() * 1000)


def history_window(days: int | None = None, start: Time = None, end: Time = None, *,
                   window: HistoryWindow | None = None) -> HistoryWindow:
    """The window of a call, parsed and validated here once (or as the caller built it)."""
    if window is not None:
        return window
    return HistoryWindow.parse(days, start, end, now_ms=_now_ms())


def backfill(settings: Settings | None = None, *, days: int | None = None, start: Time = None,
             end: Time = None, window: HistoryWindow | None = None,
             progress: Progress | None = None, file_progress: Progress | None = None,
             stop: threading.Event | None = None, verify: bool = True,
             price: str | None = None, **overrides) -> BackfillResult:
    """Fetch every candle the store is missing in the window: `days` (BACKFILL_DAYS) back from
    now, or from `start` to `end` (default now), or a `window` built by the caller.
    `progress(symbol, done, total)` is called as candles arrive, `file_progress(symbol, files
    done, files to do)` as archive files do; setting `stop` ends it after the page at hand.
    Symbols that failed are named in the result (`result.failed`). BACKFILL_SOURCE
    (`backfill_source`): `auto` takes whole months and days from Binance's public archive
    (OHLCV_ARCHIVE_URL), each file verified by its checksum and, unless `verify` is False,
    spot-checked against REST; the rest comes from REST with BACKFILL_IN_FLIGHT pages in flight.
    `price` (CANDLE_PRICE): the price series, `trade` or, on futures, `mark`, `index` or
    `premium`; a delivery contract is filled up to its delivery, a contract listed inside the
    window from its listing (the time before it recorded as empty at the exchange)."""
    asked = history_window(days, start, end, window=window)
    s = wiring.with_price(settings_for("backfill", settings, **overrides), price)
    eng = wiring.engine(s)
    client = wiring.fetcher(s)
    s = wiring.check_prices(wiring.exchange_symbols(s, client))
    client.check_symbols(s.symbols)
    repo = wiring.repository(s, eng)
    fill = wiring.history(s, eng, client, repo, verify=verify, stop=stop, progress=progress,
                          file_progress=file_progress)
    return Backfill(fill).run(s.symbols, s.timeframe, asked.or_days(s.backfill_days, _now_ms()),
                              source=s.backfill_source, price=s.candle_price)


def _delay_ms(s: Settings) -> int:
    return int(s.realtime_delay_seconds * 1000)


def gaps_check(settings: Settings | None = None, *, days: int | None = None, start: Time = None,
               end: Time = None, now: Time = None, window: HistoryWindow | None = None,
               price: str | None = None, **overrides) -> GapReport:
    """The closed candles of the `price` series (CANDLE_PRICE) the store is missing in the
    window, per symbol, from the window's start: a head before the first stored candle is
    missing unless recorded empty at the exchange; nothing at or after a delivery contract's
    delivery is expected. Reads only the database ("now" is the local clock unless given)."""
    asked = history_window(days, start, end, window=window)
    s = wiring.with_price(settings_for("gaps_check", settings, **overrides), price)
    eng = wiring.engine(s, create=False)
    repo = wiring.repository(s, eng)
    s = wiring.check_prices(wiring.stored_symbols(s, eng))
    now_ms = to_ms(now, "now") or _now_ms()
    return GapCheck(repo, wiring.gap_repository(eng), s.exchange).run(
        s.symbols, s.timeframe, now_ms, asked.or_days(s.backfill_days, now_ms),
        delay_ms=_delay_ms(s), price=s.candle_price)


def gaps_repair(settings: Settings | None = None, *, days: int | None = None, start: Time = None,
                end: Time = None, window: HistoryWindow | None = None,
                stop: threading.Event | None = None, verify: bool = True,
                price: str | None = None, **overrides) -> RepairReport:
    """Fetch the missing candles of the `price` series (CANDLE_PRICE) in the window (its head
    included); record the ranges the exchange confirms it has none for. BACKFILL_SOURCE
    applies as for `backfill` (`report.archive`: the archive pass)."""
    asked = history_window(days, start, end, window=window)
    s = wiring.with_price(settings_for("gaps_repair", settings, **overrides), price)
    eng = wiring.engine(s)
    repo = wiring.repository(s, eng)
    client = wiring.fetcher(s)
    s = wiring.check_prices(wiring.exchange_symbols(s, client))
    # BACKFILL_IN_FLIGHT=1: one symbol at a time, as a repair always went
    fill = wiring.history(s, eng, client, repo, verify=verify, stop=stop, concurrency=1)
    return GapRepair(fill, wiring.gap_repository(eng)).run(
        s.symbols, s.timeframe, asked.or_days(s.backfill_days, _now_ms()), delay_ms=_delay_ms(s),
        source=s.backfill_source, price=s.candle_price)


def status(settings: Settings | None = None, *, symbols: str | Sequence[str] | None = None,
           timeframe: str | None = None, price: str | None = None, now: Time = None,
           **overrides) -> StatusReport:
    """Per series in the store (all, or those of `symbols` / `timeframe` / `price`): first and
    last candle, stored and expected counts, freshness, known exchange gaps. A series is one
    symbol, timeframe and price series (trade, mark, index, premium)."""
    wanted = parse_symbols(symbols) if symbols is not None else None
    tf = parse_timeframe(timeframe).name if timeframe is not None else None
    price = check_price(price) if price is not None else None
    s = settings_for("status", settings, **overrides)
    eng = wiring.engine(s, create=False)
    wiring.repository(s, eng)  # checks the schema
    if wanted is not None:  # id forms and patterns against the symbols stored
        wanted = list(wiring.stored_symbols(s.model_copy(update={"symbols": tuple(wanted)}),
                                            eng).symbols)
    now_ms = to_ms(now, "now") or _now_ms()
    rows = Status(wiring.gap_repository(eng)).run(now_ms, wanted, tf, price)
    return StatusReport(redact_url(s.db_url()), rows)
