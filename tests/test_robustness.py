"""Nothing stops the pipeline (issue 12): poison the database rejects, junk rows, unusable
exchange answers, short pages, a long exchange outage, log floods and symbols that stop trading.

Real services where the behaviour lives in an adapter (PostgreSQL, Kafka, the simulator over
HTTP, the `ohlcv` process); in-memory fakes of the small ports for the services."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from conftest import run_cli
from ohlcv_cli.adapters.binance.rest import CcxtFetcher
from ohlcv_cli.adapters.sql.gaps import SqlGapRepository
from ohlcv_cli.core import message
from ohlcv_cli.core.candle import Candle, from_kline, validate
from ohlcv_cli.core.errors import (
    BrokerUnavailable, ExchangeUnavailable, InvalidMessage, StorageError, StorageRejected,
)
from ohlcv_cli.core.ports import Metrics
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import iso, parse_iso
from ohlcv_cli.services.consume import Consume, Listing
from ohlcv_cli.services.stream import Stream

M = 60_000
T0 = parse_iso("2024-01-01")
YEAR_10000 = 253_402_300_800_000
HUGE = "9" * 200_000


def sim_candles(sim, symbol="SOL/USDT", n=5, start=T0, source="stream") -> list[Candle]:
    return [from_kline(r, exchange="binance", symbol=symbol, timeframe="1m", source=source)
            for r in sim.final_rows(symbol, "1m", start, start + n * M)]


# What validation used to let through and PostgreSQL cannot store (each kind of issue 12, 1.).
SCHEMA_POISON = {
    "61-character symbol": dict(symbol="A" * 30 + "/" + "B" * 30),
    "40-character exchange": dict(exchange="x" * 40),
    "trades 2^63": dict(trades=2**63),
    "numeric of 200,000 digits": dict(volume=HUGE),
    "open time in the year 10000": dict(open_time=YEAR_10000),
}


# --- 1. the database's own boundary: every rejection is StorageRejected, the COPY paths too ------
@pytest.mark.parametrize("expect_new", [True, False], ids=["direct COPY", "COPY + upsert"])
def test_rows_postgres_cannot_hold_raise_storage_rejected_not_psycopg(pg_url, repo_for, sim, expect_new):
    repo = repo_for(pg_url)
    good = sim_candles(sim)
    for kind, change in SCHEMA_POISON.items():
        bad = good[0]._replace(**{"open_time": good[0].open_time + 3_600_000, **change})
        with pytest.raises(StorageRejected) as info:
            repo.upsert([*good, bad], expect_new=expect_new)
        assert "\n" not in str(info.value), kind
    # the repository is still usable, and the good rows alone are stored exactly
    assert repo.upsert(good, expect_new=expect_new) == 5
    assert repo.candles("binance", "SOL/USDT", "1m") == good


def test_sqlite_rejections_are_storage_rejected_too(sqlite_url, repo_for, sim):
    repo = repo_for(sqlite_url)
    good = sim_candles(sim)
    for change in (dict(trades=2**63), dict(open_time=YEAR_10000)):
        with pytest.raises(StorageRejected):
            repo.upsert([*good, good[0]._replace(**{"open_time": T0 + 3_600_000, **change})])
    assert repo.upsert(good) == 5


def test_validation_holds_what_the_schema_holds_and_every_real_value(sim):
    good = sim_candles(sim, n=1)[0]
    for kind, change in SCHEMA_POISON.items():
        with pytest.raises(InvalidMessage):
            validate(good._replace(**change))
    for symbol in ("btc/usdt", "BTC-USDT", "BTC/USDT:USDT-2612", "BTCUSDT"):
        with pytest.raises(InvalidMessage, match="ccxt form"):
            validate(good._replace(symbol=symbol))
    validate(good._replace(symbol="BTC/USDT:USDT"))  # a perpetual's trade candle
    # the extremes Binance does send pass
    validate(good._replace(symbol="1000SATS/FDUSD", trades=2**63 - 1, open_time=YEAR_10000 - M,
                           volume="98765432109876543210.12345678", low="0.00000001"))


# --- 1. the consumer: rejected rows are found, dead-lettered, and the rest stored -----------------
@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class ListSource:
    def __init__(self, batches, idle_s: float = 0.0) -> None:
        self.batches = list(batches)
        self.committed: list[int] = []
        self.idle_s = idle_s

    def poll(self, timeout_ms=500):
        if self.batches:
            return self.batches.pop(0)
        time.sleep(self.idle_s)
        return []

    def commit(self, records) -> None:
        self.committed.append(max(r.offset for r in records) + 1)

    def rewind(self, records) -> None:
        self.batches.insert(0, records)

    def lag(self):
        return 0


class ListDlq:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def send_dead_letter(self, value, key, reason, origin) -> None:
        self.sent.append((value, reason, origin))

    def flush(self) -> None:
        pass


def records_of(values, key=b"SOL/USDT"):
    return [Rec("t", 0, i, key, v) for i, v in enumerate(values)]


def test_consumer_dead_letters_rows_the_database_rejects_and_stores_their_neighbours(pg_url, repo_for, sim):
    # a constraint the messages cannot know about: these candles pass validation, PostgreSQL
    # refuses some of them
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE candles ADD CONSTRAINT few_trades CHECK (trades < 1000000)"))
    engine.dispose()
    repo = repo_for(pg_url)
    good = sim_candles(sim, n=40)
    poison_at = {3, 17, 18, 39}
    batch = [c._replace(trades=5_000_000) if i in poison_at else c for i, c in enumerate(good)]
    source = ListSource([records_of([message.encode(c, 1) for c in batch])])
    dlq = ListDlq()
    stats = Consume(source, repo, dlq, max_backoff_s=0.01).run(max_idle_polls=1)
    assert repo.candles("binance", "SOL/USDT", "1m") == [c for i, c in enumerate(good) if i not in poison_at]
    assert sorted(o for _, _, o in dlq.sent) == sorted(f"t/0/{i}" for i in poison_at)
    assert all("few_trades" in reason for _, reason, _ in dlq.sent)
    assert source.committed == [40]  # the offsets moved on past the poison
    assert stats.dead_lettered == 4 and stats.db_retries == 0


class FlakyRepo:
    """Unavailable first, then rejecting one candle: retried while unavailable, split when rejected."""

    def __init__(self, bad_time: int, down: int) -> None:
        self.bad_time, self.down = bad_time, down
        self.rows: dict = {}

    def upsert(self, candles, expect_new=False):
        if self.down:
            self.down -= 1
            raise StorageError("connection refused")
        if any(c.open_time == self.bad_time for c in candles):
            raise StorageRejected("value too long")
        for c in candles:
            self.rows[c.open_time] = c
        return len(candles)


def test_unreachable_database_is_retried_rejected_rows_are_split_out(sim):
    good = sim_candles(sim, n=9)
    repo = FlakyRepo(good[4].open_time, down=3)
    dlq = ListDlq()
    stats = Consume(ListSource([records_of([message.encode(c, 1) for c in good])]), repo, dlq,
                    max_backoff_s=0.01).run(max_idle_polls=1)
    assert sorted(repo.rows) == [c.open_time for i, c in enumerate(good) if i != 4]
    assert dlq.sent == [(message.encode(good[4], 1), "value too long", "t/0/4")]
    assert stats.db_retries == 3


# --- 1. + 2. end to end: poison and junk on a real topic -> DLQ, neighbours stored, restart ok -----
@pytest.mark.kafka
def test_poison_and_junk_are_dead_lettered_and_a_restarted_consumer_goes_on(pg_url, repo_for, sim, kafka, topic):
    from kafka import KafkaConsumer, KafkaProducer

    broker, _ = kafka
    assert run_cli("topic", "create", "--kafka-broker", broker, "--topic", topic, "--partitions", "1").returncode == 0
    good = sim_candles(sim, n=4)
    other = good[0]._replace(open_time=good[0].open_time + 3_600_000)
    poison = {f"schema: {k}": (other.symbol.encode(), json.loads(message.encode(other._replace(**v), 1)))
              for k, v in SCHEMA_POISON.items()}
    poison["schema: open time in the year 10000"][1]["close_time"] = YEAR_10000 + M - 1
    poison["schema: 61-character symbol"] = (b"A" * 30 + b"/" + b"B" * 30, poison["schema: 61-character symbol"][1])
    poison.update({
        "not listed": (b"NOPE/USDT", json.loads(message.encode(other._replace(symbol="NOPE/USDT"), 1))),
        "lower case": (b"btc/usdt", json.loads(message.encode(other._replace(symbol="btc/usdt"), 1))),
        "other exchange": (b"SOL/USDT", json.loads(message.encode(other._replace(exchange="kraken"), 1))),
        "key is not the symbol": (b"BTC/USDT", json.loads(message.encode(other, 1))),
    })
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send(topic, key=b"SOL/USDT", value=message.encode(good[0], 1))
    for key, doc in poison.values():
        producer.send(topic, key=key, value=json.dumps(doc).encode())
    for c in good[1:]:
        producer.send(topic, key=b"SOL/USDT", value=message.encode(c, 1))
    producer.flush()
    env = {"DATABASE_URL": pg_url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic,
           "CONSUMER_GROUP": f"g-{topic}", "OHLCV_EXCHANGE_URL": sim.url}
    r = run_cli("consume", "--max-idle-polls", "4", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    repo = repo_for(pg_url)
    assert [c for c in repo.candles("binance", "SOL/USDT", "1m")] == good
    assert repo.count() == 4  # no junk row anywhere
    dlq = KafkaConsumer(f"{topic}.dlq", bootstrap_servers=broker, auto_offset_reset="earliest",
                        consumer_timeout_ms=5000, group_id=None)
    reasons = [dict(m.headers)["reason"].decode() for m in dlq]
    dlq.close()
    assert len(reasons) == len(poison), reasons
    expected = ["symbol", "exchange", "trades", "volume", "open_time", "not listed by binance",
                "ccxt form", "not served here", "is not the symbol"]
    for reason, word in zip(reasons, expected):
        assert word in reason, (reason, word)
    # a restarted consumer neither crashes nor stores or dead-letters anything again
    producer.send(topic, key=b"SOL/USDT", value=message.encode(other, 1))
    producer.flush()
    producer.close()
    r = run_cli("consume", "--max-idle-polls", "4", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 messages, 1 rows written, 0 dead-lettered" in r.stderr
    assert repo.count() == 5


# --- 2. the listing: loaded at start, reloaded at most once a minute, never blocking ---------------
class FakeListing:
    def __init__(self, symbols, down=False) -> None:
        self.symbols, self.down, self.calls = set(symbols), down, 0

    def listed_symbols(self):
        self.calls += 1
        if self.down:
            raise ExchangeUnavailable("exchange down")
        return set(self.symbols)


def test_listing_reloads_at_most_once_a_minute_and_a_new_listing_is_stored():
    now = [0.0]
    exchange = FakeListing({"BTC/USDT"})
    listing = Listing(exchange, clock=lambda: now[0])
    listing.start()
    assert listing.listed("BTC/USDT") and exchange.calls == 1
    assert not listing.listed("NEW/USDT")  # loaded just now: no reload
    now[0] = 30
    assert not listing.listed("NEW/USDT") and exchange.calls == 1
    exchange.symbols.add("NEW/USDT")  # listed by the exchange
    now[0] = 61
    assert listing.listed("NEW/USDT") and exchange.calls == 2
    assert not listing.listed("NOPE/USDT") and exchange.calls == 2


def test_an_unreachable_exchange_never_blocks_storing_well_formed_candles(sim):
    good = sim_candles(sim, n=3)
    repo = FlakyRepo(-1, down=0)
    c = Consume(ListSource([records_of([message.encode(x, 1) for x in good])]), repo, ListDlq(),
                listing=FakeListing(set(), down=True))
    assert c.run(max_idle_polls=1).stored == 3


# --- issue 8: close-to-stored is measured at the database commit ---------------------------------
class Latencies(Metrics):
    def __init__(self) -> None:
        self.seen: list[float] = []

    def latency(self, seconds: float) -> None:
        self.seen.append(seconds)


def test_close_to_stored_is_taken_at_the_commit_not_after_the_next_poll(caplog):
    closed_ago_s = 5.0
    t = int((time.time() - closed_ago_s) * 1000) // 1000 * 1000 - 1000
    c = Candle("binance", "BTC/USDT", "1s", t, "1.0", "2.0", "0.5", "1.5", "3.0", "4.5", 2, "1.0", "1.5", "stream")
    metrics = Latencies()
    source = ListSource([records_of([message.encode(c, 1)], key=b"BTC/USDT")], idle_s=1.0)
    caplog.set_level(logging.DEBUG, "ohlcv_cli.services.consume")  # the per-batch line
    Consume(source, FlakyRepo(-1, 0), ListDlq(), metrics=metrics).run(max_idle_polls=1)
    close_s = (t + 1000) / 1000
    assert len(metrics.seen) == 1
    assert metrics.seen[0] < time.time() - close_s - 0.8  # not the time after the 1 s poll
    logged = float(caplog.text.split("close-to-stored ")[1].split("s")[0])
    assert abs(logged - metrics.seen[0]) < 0.01


# --- 4. unusable 200 answers are retried like a 5xx -----------------------------------------------
def exchange_gap_rows(url):
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT symbol, start_time, end_time FROM exchange_gaps")).all()
    engine.dispose()
    return rows


def assert_complete(repo, sim, symbols, start, end):
    for s in symbols:
        stored = repo.candles("binance", s, "1m", start, end)
        want = [from_kline(r, exchange="binance", symbol=s, timeframe="1m", source="backfill")
                for r in sim.final_rows(s, "1m", start, end)]
        assert stored == want, s


def test_backfill_survives_unusable_answers_with_nothing_missing(pg_url, repo_for, sim_factory):
    sim = sim_factory(share_garbage=0.3)
    start, end = T0, T0 + 3 * 86_400_000
    r = run_cli("backfill", "--start", iso(start), "--end", iso(end), "--symbols", "BTC/USDT,ETH/USDT",
                env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url})
    assert r.returncode == 0, r.stderr[-3000:]
    assert sim.stats()["injected_garbage"] >= 3
    assert "ValueError" not in r.stderr and "Traceback" not in r.stderr
    assert_complete(repo_for(pg_url), sim, ["BTC/USDT", "ETH/USDT"], start, end)
    assert exchange_gap_rows(pg_url) == []


def test_fetcher_retries_every_kind_of_unusable_answer(sim_factory):
    sim = sim_factory(share_garbage=0.5)
    f = CcxtFetcher(exchange_url=sim.url, settle_ms=0, sleep=lambda s: None)
    got = [c for page in f.fetch_range("BTC/USDT", parse_timeframe("1m"), T0, T0 + 6000 * M) for c in page]
    assert [c.open_time for c in got] == list(range(T0, T0 + 6000 * M, M))
    assert sim.stats()["injected_garbage"] >= 5  # HTML, wrong shapes, empty, truncated: each seen


# --- 5. a short page is not the end of the data ---------------------------------------------------
def test_short_pages_create_no_false_exchange_gap(pg_url, repo_for, sim_factory):
    sim = sim_factory(share_short_pages=0.5, maintenance=[(T0 + 86_400_000, T0 + 86_400_000 + 90 * M)])
    start, end = T0, T0 + 2 * 86_400_000
    r = run_cli("backfill", "--start", iso(start), "--end", iso(end), "--symbols", "BTC/USDT",
                env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url})
    assert r.returncode == 0, r.stderr[-3000:]
    assert sim.stats()["injected_short"] >= 1
    assert_complete(repo_for(pg_url), sim, ["BTC/USDT"], start, end)
    gaps = SqlGapRepository(repo_for(pg_url).engine).exchange_gaps("binance", "BTC/USDT", "1m")
    assert gaps == [(T0 + 86_400_000, T0 + 86_400_000 + 90 * M)]  # only the real one, confirmed


# --- 6. retry by time: a 60 s outage during a backfill is ridden out ------------------------------
@pytest.mark.slow
def test_a_60s_exchange_outage_during_a_backfill_is_ridden_out(pg_url, repo_for, sim_factory):
    sim = sim_factory(outage_after_klines=4, outage_seconds=60)
    start, end = T0, T0 + 5 * 86_400_000
    t0 = time.monotonic()
    # run_cli sets EXCHANGE_MAX_RETRIES=2: a count of retries would give up within seconds
    r = run_cli("backfill", "--start", iso(start), "--end", iso(end), "--symbols", "BTC/USDT,ETH/USDT",
                env={"DATABASE_URL": pg_url, "OHLCV_EXCHANGE_URL": sim.url}, timeout=150)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert took >= 60 and sim.stats()["outage_503"] > 2
    assert_complete(repo_for(pg_url), sim, ["BTC/USDT", "ETH/USDT"], start, end)
    # one line when the outage starts, one when it ends (not one per retry)
    assert r.stderr.count("unavailable: ") == 1, r.stderr
    assert r.stderr.count("available again after") == 1, r.stderr


def test_retry_window_is_time_not_count(sqlite_url, sim_factory):
    sim = sim_factory(outage_after_klines=1, outage_seconds=60)
    t0 = time.monotonic()
    r = run_cli("backfill", "--days", "2", "--symbols", "BTC/USDT",
                env={"DATABASE_URL": sqlite_url, "OHLCV_EXCHANGE_URL": sim.url,
                     "EXCHANGE_RETRY_SECONDS": "3", "EXCHANGE_MAX_RETRIES": "1000"})
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr[-3000:]
    assert "error: BTC/USDT: binance unreachable" in r.stderr and "for 3s" in r.stderr
    assert 3 <= took < 20


# --- 8. log floods: one line when the broker goes, one when it is back ----------------------------
class DownSource(ListSource):
    def __init__(self, fails: int, batches) -> None:
        super().__init__(batches)
        self.fails = fails

    def poll(self, timeout_ms=500):
        if self.fails:
            self.fails -= 1
            raise BrokerUnavailable("Kafka broker 127.0.0.1:1 unavailable while polling: NoBrokersAvailable")
        return super().poll(timeout_ms)


def test_consumer_logs_a_broker_outage_once_not_per_retry(caplog, sim):
    caplog.set_level(logging.DEBUG, "ohlcv_cli")
    good = sim_candles(sim, n=2)
    c = Consume(DownSource(25, [records_of([message.encode(x, 1) for x in good])]), FlakyRepo(-1, 0),
                ListDlq(), max_backoff_s=0.001)
    assert c.run(max_idle_polls=1).stored == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "Kafka broker unavailable" in warnings[0].getMessage()
    assert sum("available again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO) == 1


class DownSink:
    def __init__(self, fails: int) -> None:
        self.fails, self.got = fails, []

    def publish(self, candles, fetched_at=None):
        if self.fails:
            self.fails -= 1
            raise BrokerUnavailable("Kafka broker 127.0.0.1:1 unavailable while publishing")
        self.got.extend(candles)
        return len(candles)


class StepFetcher:
    exchange_id = "binance"

    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def now_ms(self):
        return self.now

    def check_symbols(self, symbols):
        pass

    def fetch_range(self, symbol, tf, start, end, source="backfill"):
        yield [Candle("binance", symbol, "1s", t, "1", "1", "1", "1", "0", "0", 0, "0", "0", source)
               for t in range(start, end, tf.ms)]


def test_stream_logs_a_broker_outage_once_not_per_cycle(caplog):
    caplog.set_level(logging.DEBUG, "ohlcv_cli")
    fetcher, sink = StepFetcher(), DownSink(20)
    stream = Stream(fetcher, sink, ["BTC/USDT"], parse_timeframe("1s"), delay_s=0, sleep=lambda s: None)
    stream.run(max_cycles=25)
    assert sink.got  # it came back and published
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert sum("available again" in r.getMessage() for r in caplog.records) == 1


# --- 9. a symbol that stops trading while the stream runs -----------------------------------------
class Collect:
    def __init__(self) -> None:
        self.got: list[Candle] = []
        self.lock = threading.Lock()

    def publish(self, candles, fetched_at=None):
        with self.lock:
            self.got.extend(candles)
        return len(candles)

    def opens(self, symbol):
        with self.lock:
            return [c.open_time for c in self.got if c.symbol == symbol]


def wait_for(cond, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("delist", [False, True], ids=["halted (status BREAK)", "delisted (-1121)"])
def test_a_halted_symbol_does_not_disturb_the_others(sim_factory, delist):
    from ohlcv_cli.core.halts import HaltedSymbols

    sim = sim_factory()
    tf = parse_timeframe("1s")
    fetcher = CcxtFetcher(exchange_url=sim.url, settle_ms=300, retry_s=None)
    sink = Collect()
    stream = Stream(fetcher, sink, ["BTC/USDT", "ETH/USDT"], tf, delay_s=0.3)
    stream.halts = HaltedSymbols(fetcher, tf, poll_s=2.0, check_after_s=1.0)
    errors: list[BaseException] = []

    def run():
        try:
            stream.run()
        except BaseException as exc:  # noqa: BLE001 (the test reports it)
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: len(sink.opens("ETH/USDT")) >= 2 and len(sink.opens("BTC/USDT")) >= 2)
        sim.halt("ETH/USDT", delist=delist)
        halted_at = sim.now_ms()
        assert wait_for(lambda: "ETH/USDT" in stream.halts.halted, 10), errors
        before = sim.stats()["klines_by_symbol"].get("ETHUSDT", 0)
        btc_before = len(sink.opens("BTC/USDT"))
        time.sleep(4.0)
        # the others go on; the halted one is polled slowly (every 2 s here, not every 0.25 s)
        assert len(sink.opens("BTC/USDT")) >= btc_before + 3
        assert sim.stats()["klines_by_symbol"].get("ETHUSDT", 0) - before <= 4
        assert all(t < halted_at for t in sink.opens("ETH/USDT"))
        sim.resume("ETH/USDT")
        resumed_at = sim.now_ms()
        assert wait_for(lambda: any(t >= resumed_at for t in sink.opens("ETH/USDT")), 10), errors
        assert "ETH/USDT" not in stream.halts.halted
    finally:
        stream.stop.set()
        thread.join(10)
    assert not errors and not thread.is_alive()
    btc = sink.opens("BTC/USDT")
    assert btc == list(range(btc[0], btc[-1] + 1000, 1000))  # BTC: no gap at all


class HangingListing:
    def __init__(self) -> None:
        self.release = threading.Event()

    def listed_symbols(self):
        self.release.wait(30)
        return {"SOL/USDT"}


def test_a_hanging_exchange_holds_the_consumer_up_once_at_most(sim):
    exchange = HangingListing()
    good = sim_candles(sim, n=50)
    source = ListSource([records_of([message.encode(x, 1) for x in good[:25]]),
                         records_of([message.encode(x, 1) for x in good[25:]])])
    repo = FlakyRepo(-1, down=0)
    c = Consume(source, repo, ListDlq(), listing=Listing(exchange, wait_s=0.5))
    t0 = time.monotonic()
    assert c.run(max_idle_polls=1).stored == 50
    exchange.release.set()
    assert time.monotonic() - t0 < 2.0  # one wait of 0.5 s, not one per message
