"""The composition root's parts: settings per command, and the adapters built from them.

Adapters are imported on first use, so that importing the API stays cheap.
"""

from __future__ import annotations

import logging
from typing import Any

import re
from typing import Iterable, Mapping

from ohlcv_cli.core.errors import BadSymbol, ConfigError
from ohlcv_cli.core.markets import FAMILIES, check_market_price, check_price, market_of
from ohlcv_cli.core.ports import Metrics
from ohlcv_cli.core.settings import (
    DATABASE, EXCHANGE, KAFKA, LOGGING, SOURCES, Settings, load_settings,
)
from ohlcv_cli.core.symbols import is_pattern, is_symbol, needs_resolving, resolve_symbols

log = logging.getLogger(__name__)
DEFAULT_BROKER = "127.0.0.1:9092"

_WINDOW = frozenset({"symbols", "timeframe", "candle_price", "backfill_days"})
_LIVE = frozenset({"stream_source", "stream_url", "usdm_stream_url", "coinm_stream_url",
                   "stream_streams_per_connection"})
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
    | {"symbols", "timeframe", "candle_price", "stream_max_catchup_minutes", "metrics_port"},
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
    "export": LOGGING | DATABASE | {"symbols", "timeframe", "candle_price", "exchange"},
    "plot": LOGGING | DATABASE | {"candle_price", "exchange"},
}


def settings_for(command: str, settings: Settings | None = None, **overrides: Any) -> Settings:
    """The given settings, or settings built from the overrides (by field name), environment
    and `.env`, validating only what `command` reads."""
    if settings is not None:
        if any(v is not None for v in overrides.values()):
            raise ConfigError("pass either a Settings object or setting keywords, not both")
        return settings
    return load_settings(uses=USES[command], **overrides)


def with_price(s: Settings, price: str | None) -> Settings:
    """The settings with the API's `price=` (CANDLE_PRICE) applied when given, checked at once
    against the symbols already in ccxt form (before any database or exchange is touched)."""
    if price is not None:
        s = s.model_copy(update={"candle_price": check_price(price)})
    return check_prices(s)


def check_prices(s: Settings) -> Settings:
    """CANDLE_PRICE against every symbol in ccxt form: spot has only trade candles. (Id forms and
    patterns are checked once resolved: call again then.)"""
    check_market_price([t for t in s.symbols if is_symbol(t)], s.candle_price)
    return s


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


# A delivery contract's id (BTCUSDT_261225, BTCUSD_261225) and a COIN-M perpetual's (BTCUSD_PERP)
_DELIVERY_ID = re.compile(r"^(?P<pair>[A-Z0-9]+)_(?P<tail>[0-9]{6})$")


def families_of(tokens: Iterable[str]) -> set[str]:
    """The API families (spot, usdm, coinm) whose markets the symbols a user wrote need: a ccxt
    symbol names its own; an id form is spot's (BTCUSDT) unless it is a contract's
    (BTCUSD_PERP: COIN-M; BTCUSDT_261225: USD-M, BTCUSD_261225: COIN-M); a pattern with a `:`
    looks at both futures families, any other at spot."""
    out: set[str] = set()
    for t in tokens:
        if is_symbol(t):
            out.add(market_of(t).family.name)
        elif is_pattern(t):
            out.update(("usdm", "coinm") if ":" in t else ("spot",))
        elif t.endswith("_PERP"):
            out.add("coinm")
        elif (m := _DELIVERY_ID.match(t)) is not None:
            out.add("coinm" if m["pair"].endswith("USD") else "usdm")
        else:
            out.add("spot")
    return out or {"spot"}


def fetcher(s: Settings, families: Iterable[str] | None = None):
    """The process's one exchange client: one markets load and one weight budget for everything
    that asks the exchange (backfill, the stream's REST safety net, the consumer's listing
    check), loading the markets of the families SYMBOLS needs (or `families`). It gives up
    after EXCHANGE_RETRY_SECONDS of outage; `riding_out` gives the stream its view that
    retries for ever."""
    from ohlcv_cli.adapters.binance.rest import CcxtFetcher

    fams = sorted(set(families) if families is not None else families_of(s.symbols))
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
        families=tuple(fams),
    )


def markets_of(client) -> dict[str, str]:
    """The loaded families' symbols, each with its market id."""
    return client.markets()


def _title(symbol: str) -> str:
    try:
        return market_of(symbol).family.title
    except BadSymbol:
        return "?"


def resolve_in(tokens: Iterable[str], markets: Mapping[str, str], where: str) -> list[str]:
    """ccxt symbols for parsed tokens against `markets` (symbol -> id). An id more than one
    market has (BTCUSDT: spot BTC/USDT and the USD-M perpetual BTC/USDT:USDT) is a BadSymbol
    asking for the ccxt form."""
    tokens = list(tokens)
    by_id: dict[str, list[str]] = {}
    for sym, mid in sorted(markets.items()):
        by_id.setdefault(mid.upper(), []).append(sym)
    for t in tokens:
        found = by_id.get(t, [])
        if not is_symbol(t) and not is_pattern(t) and len(found) > 1:
            named = ", ".join(f"{sym} ({_title(sym)})" for sym in found)
            raise BadSymbol(f"symbol {t!r} is ambiguous in {where}: {named}; write the ccxt "
                            f"form, e.g. --symbols {found[0]}")
    ids = {mid: syms[0] for mid, syms in by_id.items() if len(syms) == 1}
    return resolve_symbols(tokens, markets, ids, where=where)


def where_of(exchange: str, families: Iterable[str]) -> str:
    return f"{exchange} " + " and ".join(FAMILIES[f].title for f in sorted(families))


def exchange_symbols(s: Settings, fetcher) -> Settings:
    """The settings with SYMBOLS' id forms (BTCUSDT) and patterns ('.*/USDT') resolved against
    the markets of the families loaded; unchanged (no request) when every item is a ccxt
    symbol."""
    if not needs_resolving(s.symbols):
        return s
    resolved = resolve_in(s.symbols, markets_of(fetcher),
                          where=where_of(s.exchange, families_of(s.symbols)))
    return s.model_copy(update={"symbols": tuple(resolved)})


def stored_ids(symbols: Iterable[str]) -> dict[str, str]:
    """Stored symbols with the ids Binance's conventions give them (core.markets)."""
    out = {}
    for sym in symbols:
        try:
            out[sym] = market_of(sym).id
        except BadSymbol:
            out[sym] = sym.replace("/", "")
    return out


def stored_symbols(s: Settings, eng) -> Settings:
    """The settings with SYMBOLS' id forms and patterns resolved against the symbols stored
    (for commands that read only the database)."""
    if not needs_resolving(s.symbols):
        return s
    from ohlcv_cli.adapters.sql.reader import SqlCandleReader

    stored = SqlCandleReader(eng).stored_symbols(s.exchange)
    resolved = resolve_in(s.symbols, stored_ids(stored), where=f"the store ({s.exchange})")
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
