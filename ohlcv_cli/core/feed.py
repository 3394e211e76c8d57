"""A push source of final candles (the exchange's websocket) and the events it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Union

from ohlcv_cli.core.candle import Candle


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is open and subscribed to these symbols' streams."""

    connection: int
    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection is gone (closed, cut, silent, shut down, too old); it will reconnect.
    Whatever these symbols' streams sent meanwhile is lost for us."""

    connection: int
    symbols: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class MarkPrice:
    """A perpetual's mark-price update (`<symbol>@markPrice`): the funding rate `rate` (the
    exchange's decimal string) that settles at `next_funding_time` (ms), as of `event_time`."""

    symbol: str
    rate: str
    next_funding_time: int
    event_time: int
    mark_price: str | None = None


FeedEvent = Union[Candle, Connected, Disconnected, MarkPrice]


class CandleFeed(Protocol):
    """Pushes each final candle (and connection events) to `emit` from a thread of its own;
    `emit` is thread-safe. Reconnects on its own until `close()`."""

    def start(self, emit: Callable[[FeedEvent], None]) -> None: ...

    def close(self) -> None: ...
