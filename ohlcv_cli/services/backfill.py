"""Backfill: fetch what the store is missing in a window, for several symbols at once.

The work is services.history's (the one road that fills history); this use case names the
window by the exchange's clock and turns what the fill did into one result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ohlcv_cli.core.markets import DEFAULT_PRICE
from ohlcv_cli.core.timeframes import Timeframe
from ohlcv_cli.core.window import HistoryWindow
from ohlcv_cli.services.history import FillHistory, Progress, SymbolResult

__all__ = ["Backfill", "BackfillResult", "Progress", "SymbolResult"]

STOPPED = "stopped before the end of the window"


@dataclass
class BackfillResult:
    timeframe: str
    start: int
    end: int
    symbols: list[SymbolResult] = field(default_factory=list)
    price: str = DEFAULT_PRICE

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.symbols)

    @property
    def written(self) -> int:
        return sum(r.written for r in self.symbols)

    @property
    def failed(self) -> list[SymbolResult]:
        return [r for r in self.symbols if r.error is not None]


class Backfill:
    def __init__(self, history: FillHistory) -> None:
        self.history = history

    def run(self, symbols: Sequence[str], tf: Timeframe, window: HistoryWindow, *,
            source: str = "auto", price: str = DEFAULT_PRICE) -> BackfillResult:
        """Fill the `price` series (trade, mark, index, premium) of the symbols in the window."""
        fetcher = self.history.fetcher
        fetcher.check_symbols(symbols)
        start, end = window.bounds(tf, fetcher.now_ms())
        result = BackfillResult(tf.name, start, end, price=price)
        result.symbols = self.history.run(symbols, tf, start, end, source=source, price=price)
        for r in result.symbols:
            if r.stopped and r.error is None:
                r.error = STOPPED
        return result
