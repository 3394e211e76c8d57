"""Binance's request-weight budget: what the IP may still spend in the current window, shared by
every thread of the process (one client, one budget)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class WeightBudget:
    """Request weight per fixed window on the exchange's clock, shared by every thread.

    Each request reserves its weight before it is sent; each answer's X-MBX-USED-WEIGHT header
    (which also counts other clients on the same IP) raises the count if it is higher.
    """

    def __init__(self, limit: int, window_ms: int, clock: Callable[[], int],
                 sleep: Callable[[float], None] = time.sleep, margin_ms: int = 100) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self._clock = clock
        self._sleep = sleep
        # after a spent window, wait this much past its end (our estimate of the exchange's clock
        # is off by up to half a round trip); at most a twentieth of a short window
        self._margin = min(margin_ms, window_ms // 20)
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0
        self.waited_s = 0.0

    def acquire(self, cost: int) -> None:
        while True:
            with self._lock:
                now = self._clock()
                window = now // self.window_ms
                if window != self._window:
                    self._window, self._used = window, 0
                if self._used + cost <= self.limit:
                    self._used += cost
                    return
                wait = ((window + 1) * self.window_ms + self._margin - now) / 1000
            log.debug("weight budget spent (%d/%d); waiting %.2fs", self._used, self.limit, wait)
            self.waited_s += wait
            self._sleep(wait)

    def observe(self, used: int, sent_ms: int, answered_ms: int) -> None:
        """The exchange's count from an answer. It belongs to the window the exchange counted
        the request in, somewhere between sending and answering: used only when both lie in the
        current window (an answer that crosses a boundary would charge the new window with the
        old one's count, and stall a whole window for nothing)."""
        with self._lock:
            w = answered_ms // self.window_ms
            if w == sent_ms // self.window_ms == self._window and used > self._used:
                self._used = used
