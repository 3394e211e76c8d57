"""SIGINT and SIGTERM: one cooperative stop for every command, and the exit code that says which.

`docker stop` sends SIGTERM, Ctrl-C SIGINT; both take the same road. The first signal sets the
stop event: a command that watches it (backfill, gaps repair, stream, consume, run) finishes the
batch at hand (committed or rolled back whole, offsets committed after the rows) and returns,
then prints one line (`interrupted: 12,345 candles written; rerun to resume`) and exits 128 +
the signal's number: 130 for SIGINT, 143 for SIGTERM. A command that does not watch it (export)
is interrupted at once, as by Ctrl-C (`error: interrupted`, the same exit codes; Typer turns a
KeyboardInterrupt into exit 130 without a word, main() says it). A second signal interrupts at
once.
"""

from __future__ import annotations

import logging
import signal
import threading

import typer

from ohlcv_cli.cli.common import err_console

log = logging.getLogger("ohlcv")


class Signals:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.cooperative = False
        self.reported = False  # the command said what it did (exit_if_stopped)

    def install(self) -> None:
        """At the start of each command (main()); only the main thread can install handlers."""
        self.__init__()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handler)
            signal.signal(signal.SIGTERM, self._handler)

    def _handler(self, signum: int, _frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self.cooperative:
            log.info("%s received: finishing the work at hand", signal.Signals(signum).name)
            self.event.set()
            return
        raise KeyboardInterrupt  # not watched, or a second signal: stop now

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


signals = Signals()


def watch() -> threading.Event:
    """For a command that stops cooperatively: the event SIGINT and SIGTERM set."""
    signals.cooperative = True
    return signals.event


def stopped() -> bool:
    return signals.signum is not None


def exit_if_stopped(done: str) -> None:
    """After a signal: `interrupted: <done>; rerun to resume` and exit 130 or 143."""
    if signals.signum is None:
        return
    signals.reported = True
    err_console.print(f"interrupted: {done}; rerun to resume", markup=False, highlight=False,
                      soft_wrap=True)
    raise typer.Exit(signals.exit_code)
