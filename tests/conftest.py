"""Real services for the tests: a throwaway PostgreSQL cluster, the simulator over HTTP, and
(for the live pipeline) a real Apache Kafka broker. Nothing here is a mock."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "pg"))
sys.path.insert(0, str(ROOT / "scripts" / "kafka"))

from cluster import PgCluster  # noqa: E402

from ohlcv_cli.adapters.sql.candles import SqlCandleRepository  # noqa: E402
from ohlcv_cli.adapters.sql.schema import make_engine, upgrade  # noqa: E402
from ohlcv_sim import SimConfig, SimServer  # noqa: E402

# Settings a developer may have exported must not leak into tests.
SETTING_VARS = (
    "SYMBOLS", "TIMEFRAME", "BACKFILL_DAYS", "REALTIME_DELAY_SECONDS", "KAFKA_BROKER", "TOPIC_NAME",
    "TOPIC_PARTITIONS", "CONSUMER_GROUP", "DATABASE_URL", "POSTGRES_USER", "POSTGRES_PASSWORD",
    "POSTGRES_DB", "POSTGRES_HOST", "POSTGRES_PORT", "EXCHANGE", "OHLCV_EXCHANGE_URL",
    "BINANCE_API_KEY", "BINANCE_SECRET_KEY", "EXCHANGE_TIMEOUT_SECONDS", "EXCHANGE_WEIGHT_LIMIT",
    "EXCHANGE_MAX_RETRIES", "EXCHANGE_RETRY_SECONDS", "BACKFILL_CONCURRENCY", "BACKFILL_BATCH_SIZE",
    "STREAM_MAX_CATCHUP_MINUTES", "METRICS_PORT", "LOG_LEVEL", "LOG_FORMAT",
    "BACKFILL_SOURCE", "OHLCV_ARCHIVE_URL", "BACKFILL_IN_FLIGHT", "ARCHIVE_CONCURRENCY",
    "STREAM_SOURCE", "OHLCV_STREAM_URL", "STREAM_STREAMS_PER_CONNECTION",
    "OHLCV_USDM_STREAM_URL", "OHLCV_COINM_STREAM_URL", "CANDLE_PRICE",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in SETTING_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env, and the SQLite default lands here


@pytest.fixture(scope="session")
def pg_cluster():
    url = os.environ.get("OHLCV_TEST_PG_ADMIN_URL")
    if url:
        yield None
        return
    cluster = PgCluster().start()
    yield cluster
    cluster.destroy()


_db_ids = itertools.count()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh, migrated database in the session's cluster."""
    name = f"t{os.getpid()}_{next(_db_ids)}"
    url = pg_cluster.create_database(name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request) -> str:
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@pytest.fixture
def repo_for():
    engines = []

    def make(url: str) -> SqlCandleRepository:
        engine = make_engine(url)
        engines.append(engine)
        return SqlCandleRepository(engine)

    yield make
    for e in engines:
        e.dispose()


@pytest.fixture
def sim_factory():
    servers = []

    def make(**config) -> SimServer:
        server = SimServer(SimConfig(**config)).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def sim(sim_factory) -> SimServer:
    return sim_factory()


def run_cli(*args: str, env: dict | None = None, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
    """Run `ohlcv` as a user would: a real process, its exit code, stdout and stderr."""
    full_env = {k: v for k, v in os.environ.items() if k not in SETTING_VARS}
    full_env.update({"COLUMNS": "200", "EXCHANGE_MAX_RETRIES": "2"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ohlcv_cli", *args], capture_output=True, text=True,
        env=full_env, timeout=timeout, cwd=cwd,
    )


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """A real Apache Kafka broker (KRaft, one node) for the session; OHLCV_TEST_KAFKA_BROKER
    names an existing one instead (then the tests that restart the broker are skipped)."""
    external = os.environ.get("OHLCV_TEST_KAFKA_BROKER")
    if external:
        yield external, None
        return
    from broker import KafkaBroker, free_port

    broker = KafkaBroker(free_port(), free_port(), tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker.bootstrap, broker
    broker.stop()


_topic_ids = itertools.count()


@pytest.fixture
def topic(kafka) -> str:
    """A fresh topic name per test (created by the code under test)."""
    return f"candles-{os.getpid()}-{next(_topic_ids)}"
