"""The Docker Compose stack for real (`make compose-test`; not part of `make test`).

docker/docker-compose.yml plus scripts/compose/test.yml (the simulator as the exchange, archive
and websocket), with 1s candles so that live candles arrive every second, run by `make up` as a
user runs it, on free host ports under its own project name and image tag, so it never touches a
user's own stack, .env or ohlcv:local. Checks what a user would, against PostgreSQL and the
simulator's REST API (the exchange's truth): the backfill window stored exactly, live candles
arriving, `ohlcv gaps check` exit 0 in a container, nothing lost across `docker compose restart
consume`, a killed `stream`, `make down` + `make up` and `docker stop` (SIGTERM) of stream and
consume; an unchanged second `make up` recreates no container and leaves no dangling image.
The stack is removed at the end, also when a check fails. Kafka UI (profile `ui`) is not run.

Run from the repository root by scripts/compose/run.sh, after scripts/compose/images.sh.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".cache" / "compose"
ENV_FILE = WORK / "test.env"
LOG_FILE = WORK / "stack.log"
FILES = ("docker/docker-compose.yml", "scripts/compose/test.yml")
PROJECT = os.environ.get("COMPOSE_TEST_PROJECT", "ohlcv-compose-test")
IMAGE = f"{PROJECT}:local"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
TF_MS = 1000
DAY_MS = 86_400_000
OHLCV = ("migrate", "topic", "backfill", "stream", "consume")
LIVE = ("stream", "consume")


# --- helpers ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def run(cmd: list[str], *, timeout: float = 600, check: bool = True, env: dict | None = None,
        ) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def make(target: str, *, env_file: Path = ENV_FILE, timeout: float = 1800, check: bool = True):
    return run(["make", "--no-print-directory", target, f"ENV_FILE={env_file}",
                f"COMPOSE_FILES={' '.join(FILES)}"],
               timeout=timeout, check=check, env={"COMPOSE_PROJECT_NAME": PROJECT})


def compose(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    files = [a for f in FILES for a in ("-f", f)]
    return run(["docker", "compose", *files, "--env-file", str(ENV_FILE), *args], timeout=timeout,
               check=check, env={"OHLCV_ENV_FILE": str(ENV_FILE), "COMPOSE_PROJECT_NAME": PROJECT})


def containers() -> dict[str, dict]:
    """Service -> `docker inspect` of its (first) container, every container of the project."""
    ids = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"]).stdout.split()
    if not ids:
        return {}
    out = {}
    for c in json.loads(run(["docker", "inspect", *ids]).stdout):
        out.setdefault(c["Config"]["Labels"]["com.docker.compose.service"], c)
    return out


def state(service: str) -> dict:
    return containers().get(service, {}).get("State", {})


def logs(tail: int = 60) -> str:
    return compose("logs", "--no-color", "--tail", str(tail), check=False).stdout[-12000:]


def wait_for(cond, what: str, timeout: float, step: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except Exception as exc:  # a service not up yet: keep waiting until the deadline
            value, last = None, exc
        else:
            last = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                                 f"{f' (last error: {last!r})' if last else ''}\n{logs()}")
        time.sleep(step)


def healthy(*services: str) -> bool:
    cs = containers()
    return all(cs.get(s, {}).get("State", {}).get("Health", {}).get("Status") == "healthy"
               for s in services)


class Stack:
    def __init__(self) -> None:
        self.pg_port, self.kafka_port, self.sim_port = free_port(), free_port(), free_port()
        self.password = secrets.token_hex(12)
        self.backfill_started_ms: int | None = None

    def env_text(self) -> str:
        return "\n".join([
            "# written by scripts/compose/test_stack.py (make compose-test); removed afterwards",
            f"COMPOSE_PROJECT_NAME={PROJECT}",
            "COMPOSE_PROFILES=postgres,kafka",  # no ui: kafbat/kafka-ui has no stand-in
            f"OHLCV_IMAGE={IMAGE}",
            "PUBLISH_ADDRESS=127.0.0.1",
            f"POSTGRES_PORT={self.pg_port}",
            f"KAFKA_EXTERNAL_PORT={self.kafka_port}",
            f"SIM_PORT={self.sim_port}",
            "POSTGRES_USER=ohlcv",
            f"POSTGRES_PASSWORD={self.password}",
            "POSTGRES_DB=ohlcv",
            f"SYMBOLS={','.join(SYMBOLS)}",
            "TIMEFRAME=1s",
            "BACKFILL_DAYS=1",
            "REALTIME_DELAY_SECONDS=0.5",
            "OHLCV_EXCHANGE_URL=http://sim:8900",
            "OHLCV_ARCHIVE_URL=http://sim:8900",
            "OHLCV_STREAM_URL=ws://sim:8901",
            "TOPIC_NAME=binance-ohlcv",
            "TOPIC_PARTITIONS=3",
            "CONSUMER_GROUP=ohlcv-db",
            "LOG_LEVEL=INFO",
            "",
        ])

    # --- PostgreSQL and the simulator, from the host --------------------------------------

    def db(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.pg_port, user="ohlcv",
                               password=self.password, dbname="ohlcv", connect_timeout=10,
                               autocommit=True)

    def latest(self) -> dict[str, int]:
        with self.db() as conn:
            rows = conn.execute(
                "SELECT symbol, (extract(epoch FROM max(open_time)) * 1000)::bigint FROM candles"
                " WHERE exchange = 'binance' AND timeframe = '1s' GROUP BY symbol").fetchall()
        return dict(rows)

    def stored_until(self, t_ms: int) -> bool:
        latest = self.latest()
        return all(latest.get(s, 0) >= t_ms for s in SYMBOLS)

    def stored(self, symbol: str) -> list[tuple]:
        with self.db() as conn:
            return conn.execute(
                "SELECT (extract(epoch FROM open_time) * 1000)::bigint, open, high, low, close,"
                " volume, quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume"
                " FROM candles WHERE exchange = 'binance' AND symbol = %s AND timeframe = '1s'"
                " ORDER BY open_time", (symbol,)).fetchall()

    def exchange_rows(self, symbol: str, start: int, end: int) -> list[tuple]:
        """The simulator's final 1s candles with open time in [start, end], from its REST API."""
        out, t = [], start
        market = symbol.replace("/", "")
        while t <= end:
            url = (f"http://127.0.0.1:{self.sim_port}/api/v3/klines?symbol={market}&interval=1s"
                   f"&startTime={t}&endTime={end}&limit=1000")
            with urllib.request.urlopen(url, timeout=30) as r:
                page = json.loads(r.read())
            if not page:
                break
            out += [(k[0], *map(Decimal, k[1:6]), Decimal(k[7]), int(k[8]), Decimal(k[9]),
                     Decimal(k[10])) for k in page]
            t = page[-1][0] + TF_MS
        return out

    def assert_exact(self) -> dict[str, int]:
        """Every symbol: from the backfill window's start to the newest stored candle, exactly
        the exchange's candles (none missing, none extra, every value equal)."""
        last = {}
        for symbol in SYMBOLS:
            rows = [(r[0], *r[1:7], int(r[7]), *r[8:]) for r in self.stored(symbol)]
            assert rows, f"{symbol}: nothing stored"
            first = rows[0][0]
            window_start = self.backfill_started_ms - DAY_MS
            assert abs(first - window_start) <= 120_000, (
                f"{symbol}: first candle {iso(first)}, the window starts at {iso(window_start)}")
            want = self.exchange_rows(symbol, first, rows[-1][0])
            assert len(rows) == len(want), f"{symbol}: {len(rows)} stored, the exchange has {len(want)}"
            bad = next((i for i, (a, b) in enumerate(zip(rows, want)) if a != b), None)
            assert bad is None, f"{symbol}: stored {rows[bad]} != exchange {want[bad]}"
            last[symbol] = rows[-1][0]
        return last

    def caught_up_and_exact(self, since_ms: int, timeout: float = 240) -> dict[str, int]:
        """Waits until every symbol has candles at least 5 s newer than since_ms, then checks."""
        wait_for(lambda: self.stored_until(since_ms + 5000),
                 f"candles newer than {iso(since_ms + 5000)} of every symbol", timeout)
        return self.assert_exact()


def ohlcv_pid_kill(service: str, sig: int = 9) -> None:
    """SIGKILL the `ohlcv` process inside the container (as a crash: PID 1, docker-init, exits
    with it and the restart policy applies, unlike `docker kill`, which counts as a stop)."""
    code = ("import os\n"
            "for p in os.listdir('/proc'):\n"
            "    if p.isdigit() and int(p) not in (1, os.getpid()):\n"
            "        try: cmd = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')\n"
            "        except OSError: continue\n"
            f"        if any(a.endswith(b'/ohlcv') for a in cmd) and b'{service}' in cmd:\n"
            f"            os.kill(int(p), {sig}); print(p)\n")
    r = compose("exec", "-T", service, "python", "-c", code)
    assert r.stdout.strip(), f"no ohlcv {service} process found in the container"


# --- the stack, once for the module ----------------------------------------------------------

@pytest.fixture(scope="module")
def stack():
    WORK.mkdir(parents=True, exist_ok=True)
    s = Stack()
    try:
        yield s
    finally:
        if ENV_FILE.exists():
            LOG_FILE.write_text(compose("logs", "--no-color", "--timestamps", check=False).stdout)
            compose("down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
        run(["docker", "image", "rm", "-f", IMAGE], check=False)
        left = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
                   check=False).stdout.split()
        vols = run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
                   check=False).stdout.split()
        ENV_FILE.unlink(missing_ok=True)
        print(f"\ncompose-test: stack logs in {LOG_FILE}; removed containers, volumes, network and {IMAGE}")
        assert not left and not vols, f"left behind: containers {left}, volumes {vols}"


# --- the checks, in order --------------------------------------------------------------------

def test_first_make_up_creates_env_and_starts_nothing(stack, tmp_path):
    env = tmp_path / "fresh.env"
    r = make("up", env_file=env, check=False, timeout=120)
    assert r.returncode != 0, "make up went on after creating the env file"
    assert env.read_text() == (ROOT / ".env.example").read_text()
    assert "POSTGRES_PASSWORD" in r.stdout and "nothing started" in r.stdout
    assert containers() == {}, "make up started containers before the settings were reviewed"


def test_make_up_starts_the_stack_and_every_service_gets_healthy(stack):
    ENV_FILE.write_text(stack.env_text())
    make("up", timeout=1800)
    wait_for(lambda: healthy("postgres", "kafka", "sim", *LIVE),
             "postgres, kafka, sim, stream and consume to be healthy", 600)
    for one_shot in ("migrate", "topic"):
        st = state(one_shot)
        assert st["Status"] == "exited" and st["ExitCode"] == 0, (one_shot, st)
    images = {c["Image"] for name, c in containers().items() if name in (*OHLCV, "sim")}
    assert len(images) == 1, f"the ohlcv services run {len(images)} different images"


def test_backfill_stores_every_symbols_window_exactly(stack):
    st = wait_for(lambda: (s := state("backfill")).get("Status") == "exited" and s,
                  "the backfill to finish", 900)
    assert st["ExitCode"] == 0, f"backfill exited {st['ExitCode']}\n{logs()}"
    started = containers()["backfill"]["State"]["StartedAt"]
    stack.backfill_started_ms = int(datetime.fromisoformat(started[:19] + "+00:00")
                                    .timestamp() * 1000)
    last = stack.assert_exact()
    for symbol in SYMBOLS:
        assert last[symbol] >= stack.backfill_started_ms - 60_000, (symbol, iso(last[symbol]))


def test_live_candles_arrive_through_kafka(stack):
    t = now_ms()
    stack.caught_up_and_exact(t, timeout=180)
    with stack.db() as conn:
        n = conn.execute("SELECT count(*) FROM candles WHERE source = 'stream' AND open_time >="
                         " to_timestamp(%s / 1000.0)", (t,)).fetchone()[0]
    assert n >= 2 * len(SYMBOLS), "the newest candles did not come from the stream"
    assert now_ms() - min(stack.latest().values()) < 60_000


def test_the_host_reaches_kafka_at_the_advertised_address(stack):
    """The external listener, published on PUBLISH_ADDRESS and advertised as it: a client on the
    host bootstraps there and then talks to the advertised address (metadata, then the topic)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{stack.kafka_port}",
                             request_timeout_ms=30_000)
    try:
        assert "binance-ohlcv" in consumer.topics()
        assert len(consumer.partitions_for_topic("binance-ohlcv")) == 3
    finally:
        consumer.close()


def gaps_check_in_a_container(stack) -> None:
    # From the first stored candle (assert_exact checks it is the window's start) to the newest
    # candle every symbol has (--end is exclusive): the default end, the last closed second, may
    # not have passed through Kafka yet.
    with stack.db() as conn:
        start = conn.execute("SELECT (extract(epoch FROM max(first)) * 1000)::bigint FROM (SELECT"
                             " min(open_time) AS first FROM candles GROUP BY symbol) f").fetchone()[0]
    end = min(stack.latest().values()) + TF_MS
    r = compose("exec", "-T", "consume", "ohlcv", "gaps", "check", "--start", iso(start),
                "--end", iso(end), check=False)
    assert r.returncode == 0, f"ohlcv gaps check exit {r.returncode}\n{r.stdout}\n{r.stderr}"


def test_gaps_check_in_a_container_exits_0(stack):
    gaps_check_in_a_container(stack)


def test_restart_consume_loses_nothing(stack):
    t = now_ms()
    compose("restart", "consume", timeout=180)
    wait_for(lambda: healthy("consume"), "consume to be healthy again", 300)
    stack.caught_up_and_exact(now_ms())
    assert state("consume")["StartedAt"] > iso(t)


def test_a_killed_stream_loses_nothing(stack):
    before = containers()["stream"]["RestartCount"]
    ohlcv_pid_kill("stream")
    wait_for(lambda: containers()["stream"]["RestartCount"] > before, "docker to restart stream", 120)
    wait_for(lambda: healthy("stream"), "stream to be healthy again", 300)
    stack.caught_up_and_exact(now_ms())


def test_unchanged_second_make_up_recreates_nothing(stack):
    def snapshot():
        return {name: (c["Id"], c["State"]["StartedAt"]) for name, c in containers().items()}

    dangling = lambda: set(run(["docker", "images", "-q", "-f", "dangling=true"]).stdout.split())  # noqa: E731
    before, dangling_before = snapshot(), dangling()
    make("up", timeout=900)
    after = snapshot()
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}, "recreated"
    for name in (*LIVE, "postgres", "kafka"):
        assert after[name][1] == before[name][1], f"{name} was restarted"
    assert dangling() <= dangling_before, "the build left dangling images"
    wait_for(lambda: state("backfill").get("Status") == "exited", "the rerun backfill to finish", 300)
    assert state("backfill")["ExitCode"] == 0


def test_scale_out_and_back_recreates_nothing_and_loses_nothing(stack):
    def ids(service: str) -> list[str]:
        return run(["docker", "ps", "-aq", "--no-trunc", "--filter", f"label=com.docker.compose.project={PROJECT}",
                    "--filter", f"label=com.docker.compose.service={service}"]).stdout.split()

    others = {name: c["Id"] for name, c in containers().items() if name != "consume"}
    (first,) = ids("consume")
    compose("up", "-d", "--scale", "consume=2", timeout=600)
    assert first in ids("consume") and len(ids("consume")) == 2
    t = now_ms()
    stack.caught_up_and_exact(t)  # two members of the group, the partitions shared: nothing lost
    make("up", timeout=900)  # back to the file's one consume
    assert ids("consume") == [first]
    assert {name: c["Id"] for name, c in containers().items() if name != "consume"} == others
    stack.caught_up_and_exact(now_ms())


def test_make_down_and_up_keep_the_data(stack):
    counts = {s: len(stack.stored(s)) for s in SYMBOLS}
    first = {s: stack.stored(s)[0][0] for s in SYMBOLS}
    make("down", timeout=300)
    assert containers() == {}
    make("up", timeout=900)
    wait_for(lambda: healthy("postgres", "kafka", *LIVE), "the stack to be healthy after make up", 600)
    t = now_ms()
    stack.caught_up_and_exact(t)
    for s in SYMBOLS:
        rows = stack.stored(s)
        assert rows[0][0] == first[s] and len(rows) > counts[s], s


def test_docker_stop_of_stream_and_consume_loses_nothing(stack):
    ids = [containers()[name]["Id"] for name in LIVE]
    t0 = time.monotonic()
    run(["docker", "stop", "--time", "30", *ids], timeout=120)
    took = time.monotonic() - t0
    for name, cid in zip(LIVE, ids):
        # The cooperative stop (README, exit codes): the work at hand finished, then exit 143
        # (0 from a build that exits 0); never 137, the SIGKILL after the grace period.
        st = json.loads(run(["docker", "inspect", cid]).stdout)[0]["State"]
        assert st["ExitCode"] in (0, 143), f"{name} exited {st['ExitCode']} on SIGTERM\n{logs()}"
        tail = run(["docker", "logs", "--tail", "50", cid]).stdout + run(["docker", "logs", "--tail", "50", cid]).stderr
        assert "SIGTERM received" in tail, f"{name} did not stop cooperatively:\n{tail[-3000:]}"
    assert took < 30, f"stopping took {took:.0f} s: SIGTERM not obeyed, SIGKILL after the grace"
    run(["docker", "start", *ids])
    wait_for(lambda: healthy(*LIVE), "stream and consume to be healthy after docker start", 300)
    stack.caught_up_and_exact(now_ms())
    gaps_check_in_a_container(stack)
