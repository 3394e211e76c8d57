"""The small interfaces services know their collaborators by."""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

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

    def fetch_range(
        self, symbol: str, tf: Timeframe, start: int, end: int, source: str = "backfill"
    ) -> Iterator[list[Candle]]:
        """Pages of final candles with open time in [start, end), oldest first."""


class CandleRepository(Protocol):
    def upsert(self, candles: Iterable[Candle]) -> int:
        """Insert or update; returns how many rows were written (new or changed)."""

    def latest_open_time(self, exchange: str, symbol: str, timeframe: str) -> int | None: ...

    def missing_ranges(
        self, exchange: str, symbol: str, tf: Timeframe, start: int, end: int
    ) -> list[tuple[int, int]]:
        """[first, end) ranges inside [start, end) with no stored candle."""
