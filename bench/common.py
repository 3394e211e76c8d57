"""Shared benchmark plumbing: a durable PostgreSQL cluster, the simulator as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "pg"))
sys.path.insert(0, str(ROOT / "scripts" / "kafka"))

from cluster import PgCluster, free_port  # noqa: E402

OHLCV = [sys.executable, "-m", "ohlcv_cli"]


def fresh_db(cluster: PgCluster, name: str) -> str:
    """A new database in the cluster, migrated by the same code as `ohlcv db upgrade`."""
    from ohlcv_cli.adapters.sql.schema import make_engine, upgrade

    url = cluster.create_database(name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def start_pg() -> PgCluster:
    """fsync stays on: the seed's one-commit-per-row baseline must pay what it pays in production."""
    return PgCluster(durable=True).start()


class Sim:
    """`ohlcv sim` in a process of its own, so it never competes for the client's GIL."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([*OHLCV, "sim", "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        self.first_line = line
        if "listening" not in line:
            raise RuntimeError(f"simulator did not start: {line}")
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/sim/stats") as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def run_measured(args: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command; returns (result, wall seconds, peak RSS in MiB of that process alone)."""
    import tempfile

    full = {**os.environ, **env}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, env=full, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # wait4 gives this child's own peak RSS
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(args, proc.returncode, out.read(), err.read())
    return result, wall, usage.ru_maxrss / 1024
