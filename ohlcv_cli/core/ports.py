"""The small interfaces services know their collaborators by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, Sequence

from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.timeframes import Timeframe


class Fetcher(Protocol):
    exchange_id: str

    def now_ms(self) -> int:
        """The exchange's clock."""

    def check_symbols(self, symbols: Iterable[str]) -> None:
        """Raise BadSymbol for the first symbol the exchange does not list."""

    def closed_end(self, tf: Timeframe) -> int:
        """Exclusive end of the closed candles by the exchange's clock (a boundary)."""

    def trading_span(self, symbol: str) -> tuple[int | None, int | None]:
        """(first open time, end of trading) of the symbol on the exchange (a listing, a
        delivery); None where there is no bound (a spot market)."""

    def fetch_range(
        self, symbol: str, tf: Timeframe, start: int, end: int, source: str = "backfill",
        price: str = "trade",
    ) -> Iterator[list[Candle]]:
        """Pages of final candles of the `price` series with open time in [start, end), oldest
        first."""


class SymbolListing(Protocol):
    """What the consumer asks the exchange: which symbols it lists (the fetcher adapter)."""

    def listed_symbols(self) -> set[str]:
        """Every symbol the exchange lists now; ExchangeUnavailable when it cannot be asked."""


class TradingStatus(Protocol):
    """What the stream asks the exchange about a symbol that stopped producing candles."""

    def is_trading(self, symbol: str) -> bool | None:
        """True: trading; False: halted or delisted; None: the exchange cannot say now."""


class CandleRepository(Protocol):
    def upsert(self, candles: Iterable[Candle], expect_new: bool = False) -> int:
        """Insert or update; returns how many rows were written (new or changed). `expect_new`
        hints that the rows are most likely absent (a faster path is tried first)."""

    def latest_open_time(self, exchange: str, symbol: str, timeframe: str, *,
                         price: str = "trade") -> int | None: ...

    def missing_ranges(
        self, exchange: str, symbol: str, tf: Timeframe, start: int, end: int, *,
        price: str = "trade",
    ) -> list[tuple[int, int]]:
        """[first, end) ranges inside [start, end) with no stored candle of the series."""


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """What the store holds for one exchange, symbol, price series and timeframe."""

    exchange: str
    symbol: str
    timeframe: str
    stored: int
    first: int  # open time of the oldest candle, ms
    last: int  # open time of the newest candle, ms
    price: str = "trade"  # the price series (last, so positional constructions keep working)


class ExchangeGapRepository(Protocol):
    """Ranges the exchange confirmed it has no candles for (table exchange_gaps)."""

    def exchange_gaps(
        self, exchange: str, symbol: str, timeframe: str, start: int | None = None,
        end: int | None = None, *, price: str = "trade",
    ) -> list[tuple[int, int]]:
        """Recorded [start, end) ranges without candles at the exchange that overlap
        [start, end) (all when no bounds), oldest first, not clipped."""

    def record_exchange_gaps(
        self, exchange: str, symbol: str, timeframe: str, ranges: Iterable[tuple[int, int]], *,
        price: str = "trade",
    ) -> int:
        """Remember ranges the exchange has no candles for, merged with overlapping or adjacent
        ranges already recorded; returns how many ranges were given."""


class StoreSummary(Protocol):
    """Summaries of the stored candles, per series."""

    def first_open_time(self, exchange: str, symbol: str, timeframe: str, *,
                        price: str = "trade") -> int | None:
        """Open time of the oldest stored candle of the series, or None."""

    def series(
        self, symbols: Sequence[str] | None = None, timeframe: str | None = None, *,
        price: str | None = None,
    ) -> list[SeriesSummary]:
        """One summary per (exchange, symbol, price, timeframe) in the store, sorted (price
        None: every series)."""


class GapRepository(ExchangeGapRepository, StoreSummary, Protocol):
    """Both, as one SQL adapter holds them: what a gap check and `status` read."""


class CandleSink(Protocol):
    """Where the stream puts closed candles: Kafka, or the database directly (`ohlcv run`).
    `publish` returns only once every candle is durably accepted, or raises. An optional
    `name` ("Kafka broker", "database") names it in the outage log lines."""

    def publish(self, candles: Iterable[Candle], fetched_at: int | None = None) -> int: ...


class Metrics:
    """Observability hooks the services call; the default does nothing."""

    def fetched(self, symbol: str, n: int) -> None: ...
    def published(self, symbol: str, n: int) -> None: ...
    def stored(self, n: int) -> None: ...
    def latency(self, seconds: float) -> None: ...
    def error(self, kind: str) -> None: ...
    def lag(self, messages: int) -> None: ...
    def dead_lettered(self, n: int) -> None: ...


class RawRecord(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class MessageSource(Protocol):
    """A consumer-group member: poll raw records, commit after they are stored."""

    def poll(self, timeout_ms: int = 500) -> list: ...
    def commit(self, records: list) -> None: ...
    def rewind(self, records: list) -> None: ...
    def lag(self) -> int | None: ...


class DeadLetters(Protocol):
    def send_dead_letter(self, value: bytes | None, key: bytes | None, reason: str,
                         origin: str) -> None: ...
    def flush(self) -> None: ...
