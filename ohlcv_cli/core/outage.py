"""One log line when an outage starts and one when it ends, instead of one per retry."""

from __future__ import annotations

import logging
import threading
import time


class OutageLog:
    """Shared by every thread that talks to one service (the exchange, the broker, the database).

    `failed` logs a WARNING the first time (the outage starts), DEBUG afterwards; `ok` logs one
    INFO line when the service answers again, with how long it was down."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        self._lock = threading.Lock()
        self._since: float | None = None
        self.outages = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, reason: object, retry: str = "") -> None:
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
                self.outages += 1
        tail = f"; {retry}" if retry else ""
        if first:
            self.log.warning("%s unavailable: %s%s", self.what, reason, tail)
        else:
            self.log.debug("%s still unavailable: %s%s", self.what, reason, tail)

    def ok(self, started: float | None = None) -> None:
        """The service answered. `started` (time.monotonic() when the request was sent): an answer
        to a request sent before the outage began says nothing about its end (with many requests
        in flight, such answers still arrive after the first failure)."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._since is None or (started is not None and started < self._since):
                return
            since, self._since = self._since, None
        if since is not None:
            self.log.info("%s available again after %.1fs", self.what, time.monotonic() - since)
