"""Symbols that stopped trading while the stream runs: reported once, polled slowly."""

from __future__ import annotations

import logging
import time
from typing import Callable

from ohlcv_cli.core.timeframes import Timeframe

log = logging.getLogger("ohlcv_cli.services.stream")


class HaltedSymbols:
    """Symbols that stopped trading while the stream runs (halted, or delisted: -1121).

    A symbol whose closed candle is more than `check_after_s` late is checked against the
    exchange's status (at most once per `poll_s`); one that is not trading is reported once and
    then polled every `poll_s` instead of every quarter second, without holding up the others,
    until candles come again."""

    def __init__(self, fetcher, tf: Timeframe, *, poll_s: float = 60.0, check_after_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._status = getattr(fetcher, "is_trading", None)  # TradingStatus, when the fetcher has it
        self.tf = tf
        self.poll_s, self.check_after_s = poll_s, check_after_s
        self._clock = clock
        self.halted: dict[str, float] = {}  # symbol -> when to poll it next
        self._checked: dict[str, float] = {}  # symbol -> when its status was last asked

    def due(self, symbol: str) -> bool:
        at = self.halted.get(symbol)
        return at is None or self._clock() >= at

    def halt(self, symbol: str, reason: str) -> None:
        if symbol not in self.halted:
            log.warning("%s %s: not trading (%s); the other symbols go on, this one is polled "
                        "every %.0fs until it trades again", symbol, self.tf, reason, self.poll_s)
        self.halted[symbol] = self._clock() + self.poll_s

    def fetched(self, symbol: str, got_candles: bool) -> None:
        if symbol not in self.halted:
            return
        if got_candles:
            del self.halted[symbol]
            self._checked.pop(symbol, None)
            log.info("%s %s: trading again, streaming resumes", symbol, self.tf)
        else:
            self.halted[symbol] = self._clock() + self.poll_s

    def late(self, symbol: str) -> bool:
        """True when the symbol is behind because it does not trade (then it is not waited
        for); asks the exchange only when its candle is well overdue."""
        if symbol in self.halted:
            return True
        if self._status is None:
            return False
        now = self._clock()
        first = self._checked.setdefault(symbol, now)
        if now - first < self.check_after_s:
            return False
        self._checked[symbol] = now + self.poll_s - self.check_after_s  # next ask: in poll_s
        if self._status(symbol) is False:
            self.halt(symbol, "exchangeInfo status is not TRADING")
            return True
        return False

    def caught_up(self, symbol: str) -> None:
        self._checked.pop(symbol, None)
