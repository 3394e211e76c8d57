"""Fill ranges of a series from the exchange: fetch, upsert in batches, record what the exchange
confirmed it has no candles for. Shared by backfill and gap repair; not a use case of its own."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.ports import CandleRepository, ExchangeGapRepository, Fetcher
from ohlcv_cli.core.ranges import Range, uncovered
from ohlcv_cli.core.timeframes import Timeframe


@dataclass
class Filled:
    fetched: int = 0
    written: int = 0
    empty: list[Range] = field(default_factory=list)  # confirmed empty at the exchange, recorded
    stopped: bool = False  # `stop` was set before every range was fetched


def fill(fetcher: Fetcher, repo: CandleRepository, gaps: ExchangeGapRepository | None,
         symbol: str, tf: Timeframe, ranges: Sequence[Range], *, source: str,
         batch_size: int, expect_new: bool = False, settled: int | None = None,
         progress: Callable[[int], None] | None = None,
         stop: threading.Event | None = None) -> Filled:
    """Fetch `ranges` (missing open times) into the repository.

    A part of a range that the fetch covered but got no candle for is empty at the exchange, if
    it ends before the exchange's settled close (`settled`, else asked after each range). Those
    are recorded after the candles around them are stored, so a rerun skips them. `progress`
    gets the candles done so far (fetched or found empty)."""
    out = Filled()
    buffer: list[Candle] = []
    done = 0
    for a, b in ranges:
        times: list[int] = []
        for page in fetcher.fetch_range(symbol, tf, a, b, source):
            buffer.extend(page)
            times.extend(c.open_time for c in page)
            if len(buffer) >= batch_size:
                out.written += repo.upsert(buffer, expect_new=expect_new)
                buffer.clear()
            if progress is not None:
                progress(done + len(times))
            if stop is not None and stop.is_set():
                out.stopped = True
                break
        out.fetched += len(times)
        if out.stopped:
            break
        end = fetcher.closed_end(tf) if settled is None else settled
        out.empty.extend(g for g in uncovered(tf, a, b, times) if g[1] <= end)
        done += tf.count(a, b)
        if progress is not None:
            progress(done)
    if buffer:
        out.written += repo.upsert(buffer, expect_new=expect_new)
    if gaps is not None and out.empty:
        gaps.record_exchange_gaps(fetcher.exchange_id, symbol, tf.name, out.empty)
    return out

