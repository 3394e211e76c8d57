"""Shared plumbing of the live benchmarks: PostgreSQL and a Kafka broker for one run, `ohlcv
stream` and `ohlcv consume` as processes of their own, and reads of what landed."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg

from common import OHLCV, start_pg

from broker import KafkaBroker, free_port


@contextmanager
def pg_and_kafka() -> Iterator[tuple]:
    """(a durable PostgreSQL cluster, a real Kafka broker's bootstrap address), both stopped
    after the run."""
    cluster = start_pg()
    kdir = Path(tempfile.mkdtemp(prefix="ohlcv-bench-kafka-"))
    broker = KafkaBroker(free_port(), free_port(), kdir, heap="1g").start()
    try:
        yield cluster, broker.bootstrap
    finally:
        broker.stop()
        cluster.destroy()


def run_pipeline(env: dict, seconds: float, log_dir: Path, prefix: str = "") -> None:
    """`ohlcv consume` and `ohlcv stream` for `seconds`, their stderr in
    <prefix>consume.log and <prefix>stream.log; the stream stops first, the consumer after it
    has written what was published last."""
    logs = {cmd: open(log_dir / f"{prefix}{cmd}.log", "w") for cmd in ("consume", "stream")}
    procs = [subprocess.Popen([*OHLCV, cmd], env=env, stdout=subprocess.DEVNULL, stderr=logs[cmd])
             for cmd in ("consume", "stream")]
    try:
        time.sleep(seconds)
    finally:
        procs[1].send_signal(signal.SIGTERM)
        procs[1].wait(120)
        time.sleep(3)
        procs[0].send_signal(signal.SIGTERM)
        procs[0].wait(120)
        for f in logs.values():
            f.close()


def query(url: str, sql: str, *args) -> list[tuple]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(sql, args).fetchall()
