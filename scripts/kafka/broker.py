"""Run a real single-node Apache Kafka broker (KRaft, broker+controller) locally.

Standard library only, so it can be imported by pytest fixtures and run from
the Makefile alike.  No Docker: the Kafka jars come from Maven Central via
``mvn`` (see ``pom.xml`` beside this file) and are started with the local
``java`` (17+).

Library use::

    from broker import KafkaBroker, free_port
    b = KafkaBroker(free_port(), free_port(), tmp_path / "kafka")
    b.start()            # blocks until "Kafka Server started"
    ... b.bootstrap ...  # "127.0.0.1:<port>"
    b.kill()             # simulate a crash (SIGKILL)
    b.start()            # same data_dir: topics and messages are kept
    b.stop()

CLI::

    python scripts/kafka/broker.py fetch
    python scripts/kafka/broker.py start [--port 9092] [--controller-port 9093] [--data-dir DIR]
    python scripts/kafka/broker.py stop  [--data-dir DIR]

Environment: ``OHLCV_KAFKA_CACHE`` overrides the jar cache directory
(default ``<repo>/.cache/kafka``); ``JAVA_HOME`` selects the JVM (else
``java`` on PATH).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
POM = HERE / "pom.xml"
READY_LINE = "Kafka Server started"
PID_FILE = "broker.pid"
_MARKER = ".complete"

__all__ = [
    "KafkaBroker",
    "default_cache_dir",
    "ensure_jars",
    "free_port",
    "main",
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$OHLCV_KAFKA_CACHE`` if set, else ``<repo>/.cache/kafka``."""
    env = os.environ.get("OHLCV_KAFKA_CACHE")
    return Path(env).expanduser().resolve() if env else REPO / ".cache" / "kafka"


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (chosen by the kernel).

    Never returns the same port twice within one process, so
    ``KafkaBroker(free_port(), free_port(), ...)`` cannot get a clash.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return f"<{path} not readable>"
    return "\n".join(data.splitlines()[-lines:])


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise RuntimeError("java not found (install a JDK/JRE 17+ or set JAVA_HOME)")
    return java


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# jars
# --------------------------------------------------------------------------


def ensure_jars(cache_dir: Path | None = None) -> Path:
    """Download Kafka + log4j2 jars into ``cache_dir/libs`` once; return that dir.

    Idempotent: a marker file holding the sha256 of ``pom.xml`` says the
    download is complete (changing the pom, e.g. the Kafka version, triggers a
    fresh download).  Jars are written to a temporary directory and renamed
    into place, so an interrupted download never looks complete.  Concurrent
    callers (e.g. pytest-xdist workers) are serialised with a file lock.
    mvn's output goes to ``cache_dir/mvn.log``; on failure a RuntimeError
    carries its tail.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    libs = cache_dir / "libs"
    marker = libs / _MARKER
    digest = _pom_digest()
    if marker.is_file() and marker.read_text().strip() == digest:
        return libs

    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and marker.read_text().strip() == digest:
            return libs  # someone else finished while we waited
        mvn = shutil.which("mvn")
        if not mvn:
            raise RuntimeError("mvn not found: Maven is needed to download the Kafka jars")
        tmp = cache_dir / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log = cache_dir / "mvn.log"
        cmd = [
            mvn, "-B", "-q", "-f", str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        with open(log, "w") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=HERE)
        jars = list(tmp.glob("kafka_2.13-*.jar")) if tmp.is_dir() else []
        if rc != 0 or not jars:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(
                f"downloading Kafka jars failed (mvn exit {rc}); {log}:\n{_tail(log)}"
            )
        (tmp / _MARKER).write_text(digest + "\n")
        if libs.exists():
            old = cache_dir / f"libs.old-{os.getpid()}"
            libs.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(libs)
    return libs


# --------------------------------------------------------------------------
# broker
# --------------------------------------------------------------------------

_LOG4J2 = """\
# written by scripts/kafka/broker.py
status = warn
name = ohlcv-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# the noisiest INFO loggers
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


class KafkaBroker:
    """One Kafka 4.x KRaft node (``process.roles=broker,controller``) on 127.0.0.1."""

    # JVM flags tuned for a small (2-core) machine: fast startup over peak speed.
    JVM_FLAGS = (
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xss512k",
        "-Djava.awt.headless=true",
        "-Dfile.encoding=UTF-8",
    )

    def __init__(
        self,
        port: int,
        controller_port: int,
        data_dir: Path,
        cache_dir: Path | None = None,
        heap: str = "512m",
    ) -> None:
        self.port = int(port)
        self.controller_port = int(controller_port)
        self.data_dir = Path(data_dir).resolve()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.heap = heap
        self._proc: subprocess.Popen | None = None
        self._atexit = False

    # ---- paths / properties ------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def stdout_file(self) -> Path:
        return self.data_dir / "stdout.log"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def server_properties(self) -> dict[str, str]:
        p, c = self.port, self.controller_port
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{c}",
            "listeners": f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.logs_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # small and quick
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "num.replica.fetchers": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            "log.index.size.max.bytes": str(1024 * 1024),
            "auto.leader.rebalance.enable": "false",
            # after a crash (kill()) the restarted node cannot re-register until
            # its old session expires (default 9 s): keep that short
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
        }

    # ---- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 90) -> "KafkaBroker":
        """Format storage if needed, launch the JVM, wait for "Kafka Server started"."""
        if self.is_running():
            return self
        for port in (self.port, self.controller_port):
            if _port_in_use(port):
                raise RuntimeError(f"port 127.0.0.1:{port} is already in use")
        libs = ensure_jars(self.cache_dir)
        java = _java()
        cp = f"{libs}/*"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            "# written by scripts/kafka/broker.py\n"
            + "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        )
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log=self.log_file))
        light = ["-Xmx128m", *self.JVM_FLAGS, "-cp", cp]

        if not (self.logs_dir / "meta.properties").exists():
            uuid = subprocess.run(
                [java, *light, "kafka.tools.StorageTool", "random-uuid"],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            fmt = subprocess.run(
                [java, *light, f"-Dlog4j2.configurationFile={log4j}",
                 "kafka.tools.StorageTool", "format", "--standalone",
                 "-t", uuid, "-c", str(self.properties_file)],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise RuntimeError(
                    f"kafka storage format failed ({fmt.returncode}):\n"
                    f"{fmt.stdout}\n{fmt.stderr}"
                )

        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        cmd = [
            java,
            f"-Xmx{self.heap}",
            "-Xms64m",
            *self.JVM_FLAGS,
            "-cp", cp,
            f"-Dlog4j2.configurationFile={log4j}",
            "kafka.Kafka",
            str(self.properties_file),
        ]
        with open(self.stdout_file, "ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.data_dir, start_new_session=True,
            )
        if not self._atexit:
            atexit.register(self._at_exit)
            self._atexit = True
        try:
            self._wait_ready(offset, timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self, offset: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.log_file.exists():
                with open(self.log_file, "rb") as f:
                    f.seek(offset)
                    if READY_LINE.encode() in f.read():
                        return
            rc = self._proc.poll() if self._proc else -1
            if rc is not None:
                raise RuntimeError(
                    f"kafka broker exited with code {rc} during startup\n"
                    f"--- {self.log_file}:\n{_tail(self.log_file)}\n"
                    f"--- {self.stdout_file}:\n{_tail(self.stdout_file, 20)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"kafka broker not ready after {timeout}s "
                    f"(no '{READY_LINE}' in {self.log_file})\n{_tail(self.log_file)}"
                )
            time.sleep(0.1)

    def _signal(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 30) -> None:
        """Graceful shutdown: SIGTERM, wait up to ``timeout``, then SIGKILL."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker (simulates a crash); data_dir stays for a restart."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def detach(self) -> None:
        """Leave the broker running after this Python process exits."""
        if self._atexit:
            atexit.unregister(self._at_exit)
            self._atexit = False
        self._proc = None

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=10)

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaBroker({self.bootstrap}, pid={self.pid}, data_dir={self.data_dir})"


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _read_pid(data_dir: Path) -> int | None:
    """The pid in data_dir/broker.pid if that process is alive and is our Kafka."""
    try:
        pid = int((data_dir / PID_FILE).read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    if b"kafka.Kafka" not in cmdline or str(data_dir).encode() not in cmdline:
        return None  # stale pid file, pid reused by something else
    return pid


def _configured_port(data_dir: Path) -> str:
    with contextlib.suppress(OSError):
        for line in (data_dir / "server.properties").read_text().splitlines():
            if line.startswith("advertised.listeners="):
                return line.rsplit("//", 1)[-1]
    return "?"


def _cmd_start(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is not None:
        where = _configured_port(data_dir)
        if where != f"127.0.0.1:{args.port}":
            print(f"error: kafka from {data_dir} already running on {where} (pid {pid})")
            return 1
        print(f"kafka already running on {where} (pid {pid})")
        return 0
    for port in (args.port, args.controller_port):
        if _port_in_use(port):
            print(f"error: port 127.0.0.1:{port} is already in use by another process")
            return 1
    broker = KafkaBroker(args.port, args.controller_port, data_dir, heap=args.heap)
    try:
        broker.start(timeout=args.timeout)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    pid = broker.pid
    (data_dir / PID_FILE).write_text(f"{pid}\n")
    broker.detach()
    print(f"kafka ready on {broker.bootstrap} (pid {pid})")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    pid = _read_pid(data_dir)
    if pid is None:
        (data_dir / PID_FILE).unlink(missing_ok=True)
        print(f"kafka not running ({data_dir})")
        return 0

    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a zombie (if we happen to be its parent) counts as dead
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return False
        return True

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    how = "stopped"
    if alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        how = "killed"
        while alive():
            time.sleep(0.05)
    (data_dir / PID_FILE).unlink(missing_ok=True)
    print(f"kafka {how} (pid {pid})")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    try:
        libs = ensure_jars()
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"kafka jars in {libs}")
    return 0


def main(argv: list[str] | None = None) -> int:
    default_data = str(default_cache_dir() / "run")
    ap = argparse.ArgumentParser(description="local single-node Kafka (KRaft) broker")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a detached broker, return once ready")
    s.add_argument("--port", type=int, default=9092)
    s.add_argument("--controller-port", type=int, default=9093)
    s.add_argument("--data-dir", default=default_data)
    s.add_argument("--heap", default="512m")
    s.add_argument("--timeout", type=float, default=90)
    s.set_defaults(func=_cmd_start)
    t = sub.add_parser("stop", help="stop the broker started with 'start'")
    t.add_argument("--data-dir", default=default_data)
    t.add_argument("--timeout", type=float, default=30)
    t.set_defaults(func=_cmd_stop)
    f = sub.add_parser("fetch", help="only download the jars")
    f.set_defaults(func=_cmd_fetch)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
