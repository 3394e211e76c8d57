"""A throwaway PostgreSQL 15 cluster on loopback, for tests, benchmarks and `make pg`.

Standard library only. The server refuses to run as root, so as root the cluster belongs to the
`postgres` OS user (initdb and pg_ctl run through runuser).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def _bindir() -> Path:
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        which = shutil.which("initdb")
        if which:
            return Path(which).parent
        raise RuntimeError("PostgreSQL server binaries not found: install postgresql (Debian) or set PG_BINDIR")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, data_dir: Path | None = None, port: int | None = None, durable: bool = False):
        self.base = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="ohlcv-pg-"))
        self.data = self.base / "data"
        self.port = port or free_port()
        self.durable = durable
        self.bindir = _bindir()
        self._as_root = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "PgCluster":
        self.base.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            shutil.chown(self.base, "postgres", "postgres")
            os.chmod(self.base, 0o755)
        if not (self.data / "PG_VERSION").exists():
            r = self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--locale=C", "--no-sync", check=False)
            if r.returncode:
                raise RuntimeError(f"initdb failed: {r.stderr.strip()}")
        opts = [
            f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.base}",
            "-c shared_buffers=256MB", "-c max_connections=100", "-c max_wal_size=2GB",
            "-c checkpoint_timeout=30min",
        ]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        r = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"),
                      "-o", " ".join(opts), "-w", "-t", "60", "start", check=False)
        if r.returncode:
            log = (self.base / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"postgres failed to start: {r.stderr.strip()}\n{log}")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def create_database(self, name: str) -> str:
        r = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
                      "postgres", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"', check=False)
        if r.returncode and "already exists" not in r.stderr:
            raise RuntimeError(r.stderr.strip())
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("action", choices=["start", "stop"])
    ap.add_argument("--dir", default=".cache/pg")
    ap.add_argument("--port", type=int, default=5432)
    ap.add_argument("--durable", action="store_true", help="keep fsync on (benchmarks)")
    a = ap.parse_args(argv)
    c = PgCluster(Path(a.dir).resolve(), a.port, a.durable)
    try:
        if a.action == "start":
            c.start()
            print(f"postgres ready: DATABASE_URL={c.url}")
        else:
            c.stop()
            print("postgres stopped")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
