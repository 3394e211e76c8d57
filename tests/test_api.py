"""The public Python API: the README example as written, lazy imports, settings, supervision."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ohlcv_cli.api import supervise
from ohlcv_cli.core.errors import BadSymbol, ConfigError, StorageError, WorkerDied
from ohlcv_cli.core.settings import load_settings
from ohlcv_cli.core.timeframes import Timeframe

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_python_example() -> str:
    section = README.read_text().split("## Use from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(tmp_path):
    r = subprocess.run([sys.executable, "-c", readme_python_example()], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["BTC/USDT 168 ok", "ETH/USDT 168 ok", "complete",
                                     "BTC/USDT 1h 168 100 %", "ETH/USDT 1h 168 100 %"]
    assert r.stderr == ""  # a library prints nothing of its own


def test_importing_the_package_is_cheap_and_exports_the_commands():
    code = ("import sys, ohlcv_cli; heavy = [m for m in ('ccxt', 'kafka', 'sqlalchemy', 'typer', "
            "'rich', 'pydantic') if m in sys.modules]; assert not heavy, heavy; "
            "fs = [getattr(ohlcv_cli, n) for n in ('upgrade', 'backfill', 'stream', 'consume', "
            "'run', 'gaps_check', 'gaps_repair', 'status', 'topic_create', 'Settings')]; "
            "assert all(callable(f) for f in fs); "
            "assert not [m for m in ('ccxt', 'kafka', 'sqlalchemy') if m in sys.modules]")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unknown_override_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match="unknown setting 'symbolz'"):
        load_settings(symbolz="BTC/USDT")
    import ohlcv_cli

    with pytest.raises(ConfigError, match="unknown setting 'databse_url'"):
        ohlcv_cli.status(databse_url="sqlite:///x.db")


def test_only_the_settings_a_command_reads_are_validated(monkeypatch):
    monkeypatch.setenv("SYMBOLS", "bad sym")
    monkeypatch.setenv("BACKFILL_DAYS", "0")
    s = load_settings(uses={"database_url", "log_level"})
    assert s.symbols == ("BTC/USDT", "ETH/USDT") and s.backfill_days == 7  # defaults stand in
    with pytest.raises(BadSymbol, match="malformed symbol 'bad sym'"):
        load_settings(uses={"symbols"})
    with pytest.raises(ConfigError, match="invalid setting BACKFILL_DAYS"):
        load_settings(uses={"backfill_days"})


def test_the_timeframe_travels_parsed():
    s = load_settings(timeframe="5m")
    assert isinstance(s.timeframe, Timeframe) and s.timeframe.ms == 300_000


def test_api_failures_are_project_errors_with_one_line(tmp_path):
    import sqlite3

    import ohlcv_cli

    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(StorageError, match=r"^database schema is missing: run `ohlcv db upgrade`$"):
        ohlcv_cli.gaps_check(database_url=f"sqlite:///{tmp_path / 'empty.db'}", days=1)
    with pytest.raises(ConfigError, match="either a Settings object or setting keywords"):
        ohlcv_cli.status(load_settings(), database_url="sqlite:///y.db")


# --- `run` through Kafka: either side dying stops the other and is an error -------------------
class Side:
    def __init__(self, stop: threading.Event, fail: BaseException | None = None,
                 after_s: float = 0.05, returns: bool = False) -> None:
        self.stop, self.fail, self.after_s, self.returns = stop, fail, after_s, returns
        self.stopped_by_event = False

    def __call__(self):
        deadline = time.monotonic() + self.after_s
        while time.monotonic() < deadline or (self.fail is None and not self.returns):
            if self.stop.wait(0.01):
                self.stopped_by_event = True
                return "state"
        if self.fail is not None:
            raise self.fail
        return "state"


def test_a_consumer_thread_that_dies_stops_the_stream_and_raises():
    stop = threading.Event()
    stream_side = Side(stop)
    with pytest.raises(WorkerDied, match="^the consumer stopped: RuntimeError: boom$") as info:
        supervise(stream_side, Side(stop, RuntimeError("boom")), stop, join_timeout_s=5)
    assert stream_side.stopped_by_event and isinstance(info.value.__cause__, RuntimeError)


def test_a_consumer_that_returns_early_or_fails_with_our_error_is_fatal_too():
    stop = threading.Event()
    with pytest.raises(WorkerDied, match="returned while the stream was running"):
        supervise(Side(stop), Side(stop, returns=True), stop, join_timeout_s=5)
    stop = threading.Event()
    with pytest.raises(WorkerDied, match="^the consumer stopped: database error at x$"):
        supervise(Side(stop), Side(stop, StorageError("database error at x")), stop,
                  join_timeout_s=5)


def test_a_stream_that_dies_stops_the_consumer_and_raises():
    stop = threading.Event()
    consumer = Side(stop)
    with pytest.raises(WorkerDied, match="^the stream stopped: KeyError: 'x'$"):
        supervise(Side(stop, KeyError("x")), consumer, stop, join_timeout_s=5)
    assert consumer.stopped_by_event


def test_a_clean_stop_returns_the_stream_state():
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert supervise(Side(stop), Side(stop), stop, join_timeout_s=5) == "state"
