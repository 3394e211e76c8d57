"""The composition root's parts: settings per command, and the adapters built from them.

Adapters are imported on first use, so that importing the API stays cheap.
"""

from __future__ import annotations

import logging
from typing import Any

from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.ports import Metrics
from ohlcv_cli.core.settings import (
    DATABASE, EXCHANGE, KAFKA, LOGGING, SOURCES, Settings, load_settings,
)
from ohlcv_cli.core.symbols import needs_resolving, resolve_symbols

log = logging.getLogger(__name__)
DEFAULT_BROKER = "127.0.0.1:9092"

_WINDOW = frozenset({"symbols", "timeframe", "backfill_days"})
_LIVE = frozenset({"stream_source", "stream_url", "stream_streams_per_connection"})
# The settings each command reads: only these are validated when it runs.
USES: dict[str, frozenset[str]] = {
    "sim": LOGGING,
    "upgrade": LOGGING | DATABASE,
    "db_current": LOGGING | DATABASE,
    "status": LOGGING | DATABASE,
    "backfill": LOGGING | DATABASE | EXCHANGE | _WINDOW | SOURCES
    | {"backfill_concurrency", "backfill_batch_size"},
    "gaps_check": LOGGING | DATABASE | _WINDOW | {"exchange", "realtime_delay_seconds"},
    "gaps_repair": LOGGING | DATABASE | EXCHANGE | _WINDOW | SOURCES | {"backfill_batch_size"},
    "stream": LOGGING | DATABASE | EXCHANGE | KAFKA | _LIVE
    | {"symbols", "timeframe", "stream_max_catchup_minutes", "metrics_port"},
    # the exchange too: the consumer checks symbols against its listing
    "consume": LOGGING | DATABASE | KAFKA | EXCHANGE
    | {"consumer_group", "consumer_workers", "metrics_port"},
    # run's start-up fills history as `backfill` does: the same sources, pages in flight
    "run": LOGGING | DATABASE | EXCHANGE | KAFKA | _WINDOW | SOURCES
    | {"backfill_concurrency", "backfill_batch_size", "stream_max_catchup_minutes",
       "consumer_group", "metrics_port"} | _LIVE,
    "topic_create": LOGGING | KAFKA,
    "symbols": LOGGING | EXCHANGE,
    # the read API (ohlcv_cli.api.read)
    "export": LOGGING | DATABASE | {"symbols", "timeframe", "exchange"},
    "plot": LOGGING | DATABASE | {"exchange"},
}


def settings_for(command: str, settings: Settings | None = None, **overrides: Any) -> Settings:
    """The given settings, or settings built from the overrides (by field name), environment
    and `.env`, validating only what `command` reads."""
    if settings is not None:
        if any(v is not None for v in overrides.values()):
            raise ConfigError("pass either a Settings object or setting keywords, not both")
        return settings
    return load_settings(uses=USES[command], **overrides)


# --- adapters -------------------------------------------------------------------------------
def engine(s: Settings, create: bool = True):
    """`create` False (commands that only read): a missing SQLite file is an error naming its
    path, not a new empty database."""
    from ohlcv_cli.adapters.sql.schema import make_engine

    return make_engine(s.db_url(), create=create)


def repository(s: Settings, eng):
    """The candle repository, after checking the schema is current. The embedded SQLite
    default upgrades itself; any other database must be upgraded with `ohlcv db upgrade`."""
    from ohlcv_cli.adapters.sql.candles import SqlCandleRepository
    from ohlcv_cli.adapters.sql.schema import ensure_current

    ensure_current(eng, auto_upgrade=s.uses_embedded_default())
    return SqlCandleRepository(eng)


def gap_repository(eng):
    from ohlcv_cli.adapters.sql.gaps import SqlGapRepository

    return SqlGapRepository(eng)


def fetcher(s: Settings):
    """The process's one exchange client: one markets load and one weight budget for everything
    that asks the exchange (backfill, the stream's REST safety net, the consumer's listing
    check). It gives up after EXCHANGE_RETRY_SECONDS of outage; `riding_out` gives the stream
    its view that retries for ever."""
    from ohlcv_cli.adapters.binance.rest import CcxtFetcher

    return CcxtFetcher(
        s.exchange,
        exchange_url=s.exchange_url,
        api_key=s.binance_api_key.get_secret_value() if s.binance_api_key else None,
        secret=s.binance_secret_key.get_secret_value() if s.binance_secret_key else None,
        settle_ms=int(s.realtime_delay_seconds * 1000),
        timeout_ms=int(s.exchange_timeout_seconds * 1000),
        max_retries=s.exchange_max_retries,
        retry_s=s.exchange_retry_seconds,
        weight_limit=s.exchange_weight_limit,
    )


def exchange_symbols(s: Settings, fetcher) -> Settings:
    """The settings with SYMBOLS' id forms (BTCUSDT) and patterns ('.*/USDT') resolved against
    the exchange's spot markets; unchanged (no request) when every item is a ccxt symbol."""
    if not needs_resolving(s.symbols):
        return s
    markets = fetcher.spot_markets()
    ids = {mid.upper(): sym for sym, mid in markets.items()}
    resolved = resolve_symbols(s.symbols, markets, ids, where=f"{s.exchange} spot")
    return s.model_copy(update={"symbols": tuple(resolved)})


def stored_symbols(s: Settings, eng) -> Settings:
    """The settings with SYMBOLS' id forms and patterns resolved against the symbols stored
    (for commands that read only the database)."""
    if not needs_resolving(s.symbols):
        return s
    from ohlcv_cli.adapters.sql.reader import SqlCandleReader

    stored = SqlCandleReader(eng).stored_symbols(s.exchange)
    resolved = resolve_symbols(s.symbols, stored, where=f"the store ({s.exchange})")
    return s.model_copy(update={"symbols": tuple(resolved)})


def riding_out(client):
    """The stream's view of the client: it rides out any exchange outage."""
    return client.with_retry(None)


def history(s: Settings, eng, client, repo, *, verify: bool = True, stop=None, progress=None,
            file_progress=None, concurrency: int | None = None):
    """The one road that fills history (backfill, gaps repair, run's start-up), with the archive
    pass of the configured source."""
    from ohlcv_cli.services.history import FillHistory

    return FillHistory(client, repo, gap_repository(eng),
                       archive=archive_pass(s, eng, client, verify=verify, stop=stop),
                       in_flight=s.backfill_in_flight,
                       concurrency=s.backfill_concurrency if concurrency is None else concurrency,
                       batch_size=s.backfill_batch_size, stop=stop, progress=progress,
                       file_progress=file_progress)


def broker(s: Settings) -> str:
    from ohlcv_cli.adapters.kafka import check_broker_address

    return check_broker_address(s.kafka_broker or DEFAULT_BROKER)


def metrics(s: Settings) -> Metrics:
    if s.metrics_port is None:
        return Metrics()
    from ohlcv_cli.adapters.prometheus import serve

    try:
        return serve(s.metrics_port)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on port {s.metrics_port}: "
                          f"{exc.strerror or exc}") from None


def archive_pass(s: Settings, eng, fetcher, *, verify: bool = True, stop=None):
    """The archive pass for the configured source, or None for `rest`."""
    if s.backfill_source == "rest":
        return None
    base = s.archive_base(explicit=s.backfill_source == "archive")
    if base is None:
        log.debug("OHLCV_EXCHANGE_URL is set but OHLCV_ARCHIVE_URL is not: history comes from REST "
                  "only (set OHLCV_ARCHIVE_URL to the same exchange's archive)")
        return None
    from ohlcv_cli.adapters.binance.archive import BinanceArchive
    from ohlcv_cli.adapters.sql.archive import SqlArchiveWriter
    from ohlcv_cli.services.archive import ArchivePass

    return ArchivePass(BinanceArchive(base, timeout_s=s.exchange_timeout_seconds * 3,
                                      max_retries=s.exchange_max_retries),
                       SqlArchiveWriter(eng), fetcher, verify=verify,
                       concurrency=s.archive_concurrency, stop=stop)
