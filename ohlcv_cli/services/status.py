"""Status: what the store holds per series (symbol, timeframe, price series), how complete and
how fresh it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ohlcv_cli.core.markets import DEFAULT_PRICE
from ohlcv_cli.core.ports import GapRepository
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.ranges import clip, count


@dataclass
class SeriesStatus:
    exchange: str
    symbol: str
    timeframe: str
    first: int  # open time of the oldest stored candle, ms
    last: int  # open time of the newest
    stored: int
    expected: int  # candles from first to last, without the ranges the exchange confirmed empty
    exchange_gap_ranges: int
    exchange_gap_candles: int
    age_ms: int  # since the newest candle closed
    exchange_gaps: list[tuple[int, int]] = field(default_factory=list, repr=False)  # [start, end)
    price: str = DEFAULT_PRICE  # trade, mark, index, premium

    @property
    def end(self) -> int:
        """The close of the newest candle: the series spans [first, end)."""
        return self.last + parse_timeframe(self.timeframe).ms

    @property
    def coverage(self) -> float:
        if self.expected <= 0:
            return 100.0
        return min(100.0, 100.0 * self.stored / self.expected)


class Status:
    def __init__(self, gaps: GapRepository) -> None:
        self.gaps = gaps

    def run(self, now_ms: int, symbols: Sequence[str] | None = None,
            timeframe: str | None = None, price: str | None = None) -> list[SeriesStatus]:
        """Every series stored (or those of `symbols`, `timeframe`, `price`)."""
        out = []
        for s in self.gaps.series(symbols, timeframe, price=price):
            tf = parse_timeframe(s.timeframe)
            end = s.last + tf.ms
            known = self.gaps.exchange_gaps(s.exchange, s.symbol, s.timeframe, price=s.price)
            inside = count(tf, clip(known, s.first, end))
            out.append(SeriesStatus(
                s.exchange, s.symbol, s.timeframe, s.first, s.last, s.stored,
                tf.count(s.first, end) - inside, len(known), count(tf, known), now_ms - end,
                known, s.price,
            ))
        return out
