"""Live funding (issue 19): each settlement of the streamed perpetuals, as it happens.

The websocket's `<symbol>@markPrice` stream gives the rate and the next funding time `T`
(MarkPrice events). The stream is not the record: once `T` has passed (plus `grace`), the
settlement is fetched over REST (`fundingRate`, from the newest one published on), which is, and
published to the sink (Kafka: a v2 "funding" message keyed by the symbol; the consumer stores it
in the funding table). Until REST has it, it is asked again every `retry_s`, for at most
`give_up_s` (then a warning: `ohlcv funding repair` fills it).

On start the last settlements are confirmed over REST too (from the newest stored one, at most
`catchup` back), so a stream stopped across a settlement loses nothing when it starts again.

A symbol in `poll` has no mark-price stream (the stream runs over REST, or its family has no
websocket URL): its next settlement is learned over REST instead (`premiumIndex`, the same rate and
next funding time), asked at start, with the first fetch after each settlement (not its
retries) and every `poll_s` while none is announced. `wake_in` tells a REST loop when the next
fetch is due.

One thread (the websocket stream's loop) calls `start`, `on_mark`, `due`, `take` and `publish`;
`fetch` runs in its REST pool. Publishing is idempotent downstream (the funding table's key), so
a settlement published twice changes nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from ohlcv_cli.core.errors import (
    BadSymbol, BrokerUnavailable, ExchangeRejected, ExchangeUnavailable, StorageError,
)
from ohlcv_cli.core.feed import MarkPrice
from ohlcv_cli.core.funding import TOLERANCE_MS, Settlement
from ohlcv_cli.core.timeframes import DAY_MS
from ohlcv_cli.core.timeutil import iso

log = logging.getLogger(__name__)


class FundingHistory(Protocol):
    def history(self, symbol: str, start: int, end: int, source: str = "rest"): ...
    def next_settlement(self, symbol: str) -> MarkPrice | None: ...  # for `poll` symbols


class FundingSink(Protocol):
    def publish_funding(self, settlements: Sequence[Settlement]) -> int: ...


class FundingLatest(Protocol):
    def latest(self, exchange: str, symbol: str, before: int | None = None
               ) -> Settlement | None: ...


@dataclass
class FundingFetched:
    symbol: str
    settlements: list[Settlement]
    error: Exception | None = None
    bug: BaseException | None = None
    next: MarkPrice | None = None  # a `poll` symbol's next settlement (premiumIndex)
    gone: str | None = None  # the exchange no longer lists the symbol (delisted): why


@dataclass
class _Symbol:
    confirmed: int  # every settlement up to this funding time is published
    due: set[int] = field(default_factory=set)  # announced settlement times (T) not yet seen
    first_asked: dict[int, float] = field(default_factory=dict)  # T -> when first asked
    startup: bool = True  # the start-up confirmation is still owed
    retry_at: float = 0.0
    failures: int = 0
    poll_at: float = 0.0  # a `poll` symbol with no settlement announced: ask again then


class LiveFunding:
    def __init__(self, source: FundingHistory, sink: FundingSink, symbols: Iterable[str], *,
                 exchange: str, now_ms: Callable[[], int], repo: FundingLatest | None = None,
                 catchup_ms: int = DAY_MS, grace_ms: int = 1000, retry_s: float = 2.0,
                 give_up_s: float = 600.0, poll: Iterable[str] = (), poll_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source, self.sink, self.repo = source, sink, repo
        self.symbols = list(symbols)
        self.poll = set(poll) & set(self.symbols)
        self.poll_s = poll_s
        self.exchange = exchange
        self.now_ms = now_ms
        self.catchup_ms, self.grace_ms = catchup_ms, grace_ms
        self.retry_s, self.give_up_s = retry_s, give_up_s
        self._clock = clock
        self._state: dict[str, _Symbol] = {}
        self._in_flight: set[str] = set()
        self._unpublished: list[Settlement] = []
        self.published = 0
        self.announced = 0

    # --- the loop's calls ---------------------------------------------------------------------
    def start(self) -> None:
        now = self.now_ms()
        for sym in self.symbols:
            latest = self.repo.latest(self.exchange, sym) if self.repo is not None else None
            floor = now - self.catchup_ms
            since = floor if latest is None else max(latest.funding_time, floor)
            self._state[sym] = _Symbol(since)
            log.info("%s funding: confirming settlements after %s over REST", sym, iso(since))

    def on_mark(self, ev: MarkPrice) -> None:
        st = self._state.get(ev.symbol)
        if st is None or ev.next_funding_time <= 0:
            return
        t = ev.next_funding_time
        if t > st.confirmed + TOLERANCE_MS and t not in st.due:
            st.due.add(t)
            self.announced += 1
            log.debug("%s funding: next settlement %s at rate %s", ev.symbol, iso(t), ev.rate)

    def due(self) -> list[tuple[str, int, int, bool]]:
        """(symbol, start, end, announce) of the REST fetches to start now (`fetch`'s
        arguments)."""
        now, wall = self.now_ms(), self._clock()
        out = []
        for sym, st in self._state.items():
            if sym in self._in_flight or st.retry_at > wall:
                continue
            passed = [t for t in st.due if t + self.grace_ms <= now]
            unknown = sym in self.poll and not st.due and st.poll_at <= wall
            if not passed and not st.startup and not unknown:
                continue
            # premiumIndex with the first ask after a settlement, never with its retries
            announce = sym in self.poll and (st.startup or not st.due or any(
                t not in st.first_asked for t in passed))
            for t in passed:
                st.first_asked.setdefault(t, wall)
            self._in_flight.add(sym)
            out.append((sym, st.confirmed + 1, now + 1, announce))
        return out

    def wake_in(self) -> float | None:
        """Seconds until `due` has something to start (None: nothing is expected)."""
        now, wall = self.now_ms(), self._clock()
        waits = []
        for sym, st in self._state.items():
            if sym in self._in_flight:
                continue
            later = max(0.0, st.retry_at - wall)
            if st.startup:
                waits.append(later)
            waits.extend(max(later, (t + self.grace_ms - now) / 1000) for t in st.due)
            if sym in self.poll and not st.due:
                waits.append(max(later, st.poll_at - wall))
        return min(waits) if waits else None

    def fetch(self, symbol: str, start: int, end: int, announce: bool = False
              ) -> FundingFetched:
        """In a REST worker: the settlements in [start, end), and with `announce` the
        symbol's next settlement (premiumIndex, for `poll` symbols)."""
        try:
            got = [s for page in self.source.history(symbol, start, end, "stream") for s in page]
            nxt = self.source.next_settlement(symbol) if announce else None
        except (BadSymbol, ExchangeRejected) as exc:  # delisted while streaming: the rest go on
            return FundingFetched(symbol, [], gone=str(exc))
        except ExchangeUnavailable as exc:
            return FundingFetched(symbol, [], error=exc)
        except BaseException as exc:  # re-raised in the loop's thread
            return FundingFetched(symbol, [], bug=exc)
        return FundingFetched(symbol, got, next=nxt)

    def take(self, item: FundingFetched) -> None:
        self._in_flight.discard(item.symbol)
        if item.bug is not None:
            raise item.bug
        if item.gone is not None:
            log.warning("%s funding: %s; no longer followed (the other symbols go on)",
                        item.symbol, item.gone)
            self._state.pop(item.symbol, None)
            self.poll.discard(item.symbol)
            return
        st = self._state[item.symbol]
        wall = self._clock()
        if item.error is not None:
            st.failures += 1
            st.retry_at = wall + min(30.0, self.retry_s * 2 ** st.failures)
            log.warning("%s funding: REST fetch failed (%s); retrying", item.symbol, item.error)
            return
        st.failures = 0
        st.startup = False
        fresh = [s for s in item.settlements if s.funding_time > st.confirmed]
        if fresh:
            self._unpublished.extend(fresh)
            st.confirmed = max(s.funding_time for s in fresh)
            for s in fresh:
                log.info("%s funding: settlement %s rate %s confirmed over REST", s.symbol,
                         iso(s.funding_time), s.rate)
        for t in [t for t in st.due if t <= st.confirmed + TOLERANCE_MS]:
            st.due.discard(t)
            st.first_asked.pop(t, None)
        if item.next is not None:
            self.on_mark(item.next)
        if item.symbol in self.poll:
            st.poll_at = wall + self.poll_s  # nothing announced (yet): ask again then
        for t in [t for t in st.due if t + self.grace_ms <= self.now_ms()]:
            if wall - st.first_asked.get(t, wall) >= self.give_up_s:
                log.warning("%s funding: the settlement of %s is not on REST after %.0fs; left "
                            "to `ohlcv funding repair`", item.symbol, iso(t), self.give_up_s)
                st.due.discard(t)
                st.first_asked.pop(t, None)
            else:
                st.retry_at = wall + self.retry_s  # REST does not have it yet: ask again soon
        self.publish()

    def publish(self) -> str | None:
        """Publish what REST confirmed; on a sink error keep it for the next call."""
        if not self._unpublished:
            return None
        try:
            self.sink.publish_funding(self._unpublished)
        except (BrokerUnavailable, StorageError) as exc:
            return str(exc)
        self.published += len(self._unpublished)
        self._unpublished = []
        return None
