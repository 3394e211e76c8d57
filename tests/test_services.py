"""Stream and consume services with in-memory fakes of their small interfaces (no patching)."""

from __future__ import annotations

from dataclasses import dataclass

from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.errors import BrokerUnavailable, ExchangeUnavailable, StorageError
from ohlcv_cli.core.message import encode
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.services.consume import Consume
from ohlcv_cli.services.stream import Stream

S1 = parse_timeframe("1s")
T0 = 1_800_000_000_000


def candle(t: int, symbol: str = "BTC/USDT", source: str = "stream") -> Candle:
    return Candle("binance", symbol, "1s", t, "1.0", "2.0", "0.5", "1.5", "3.0", "4.5", 2, "1.0", "1.5", source)


class FakeFetcher:
    exchange_id = "binance"

    def __init__(self) -> None:
        self.now = T0
        self.missing: set[int] = set()
        self.fail = False

    def now_ms(self) -> int:
        return self.now

    def check_symbols(self, symbols) -> None:
        pass

    def fetch_range(self, symbol, tf, start, end, source="backfill"):
        if self.fail:
            raise ExchangeUnavailable("exchange down")
        yield [candle(t, symbol, source) for t in range(start, end, tf.ms) if t not in self.missing]


class FakeSink:
    def __init__(self) -> None:
        self.got: list[Candle] = []
        self.down = False

    def publish(self, candles, fetched_at=None) -> int:
        if self.down:
            raise BrokerUnavailable("broker down")
        self.got.extend(candles)
        return len(candles)


class FakeRepo:
    def __init__(self, latest=None) -> None:
        self.rows: dict = {}
        self.latest = latest
        self.down = 0

    def latest_open_time(self, exchange, symbol, timeframe):
        return self.latest

    def upsert(self, candles, expect_new=False) -> int:
        if self.down:
            self.down -= 1
            raise StorageError("db down")
        n = 0
        for c in candles:
            n += self.rows.get(c.open_time) != c
            self.rows[c.open_time] = c
        return n


def make_stream(fetcher, sink, repo=None, **kw) -> Stream:
    return Stream(fetcher, sink, ["BTC/USDT"], S1, repo=repo, delay_s=0, workers=1, **kw)


def test_watermark_never_moves_past_unconfirmed_candles():
    f, sink = FakeFetcher(), FakeSink()
    s = make_stream(f, sink)
    s.init_watermarks()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert s.cycle(pool).candles == 1  # on start: the last closed candle at once
        f.now += 5000
        sink.down = True
        assert s.cycle(pool).error == "broker down"
        f.now += 5000
        sink.down = False
        assert s.cycle(pool).candles == 10  # the outage's candles, none lost
        f.fail = True
        f.now += 3000
        assert s.cycle(pool).error == "exchange down"
        f.fail = False
        assert s.cycle(pool).candles == 3
    times = [c.open_time for c in sink.got]
    assert times == list(range(T0 - 1000, T0 + 13_000, 1000))


def test_a_candle_late_at_the_exchange_is_retried_not_skipped():
    f, sink = FakeFetcher(), FakeSink()
    s = make_stream(f, sink)
    s.init_watermarks()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        s.cycle(pool)
        f.now += 2000
        f.missing = {T0 + 1000}  # the newest closed candle is not there yet
        r = s.cycle(pool)
        assert r.behind == 1 and r.candles == 1
        f.missing = set()
        assert s.cycle(pool).candles == 1
    assert [c.open_time for c in sink.got] == [T0 - 1000, T0, T0 + 1000]


def test_resume_after_newest_stored_bounded_by_max_catchup():
    f = FakeFetcher()
    s = make_stream(f, FakeSink(), repo=FakeRepo(latest=T0 - 10_000))
    assert s.init_watermarks() == {"BTC/USDT": T0 - 9000}
    s = make_stream(f, FakeSink(), repo=FakeRepo(latest=T0 - 10 * 86_400_000), max_catchup_ms=60_000)
    assert s.init_watermarks() == {"BTC/USDT": T0 - 60_000}


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class FakeSource:
    def __init__(self, batches) -> None:
        self.batches = list(batches)
        self.committed: list[int] = []
        self.log: list[str] = []

    def poll(self, timeout_ms=500):
        return self.batches.pop(0) if self.batches else []

    def commit(self, records) -> None:
        self.log.append("commit")
        self.committed.append(max(r.offset for r in records) + 1)

    def rewind(self, records) -> None:
        self.batches.insert(0, records)

    def lag(self):
        return 0


class FakeDlq:
    def __init__(self, log) -> None:
        self.sent: list[tuple] = []
        self.log = log

    def send_dead_letter(self, value, key, reason, origin) -> None:
        self.sent.append((value, reason, origin))

    def flush(self) -> None:
        self.log.append("dlq flush")


def test_consume_stores_then_commits_and_dead_letters_poison():
    good = [Rec("t", 0, i, b"BTC/USDT", encode(candle(T0 + i * 1000), 1)) for i in range(3)]
    poison = Rec("t", 0, 3, b"x", b"{not json")
    source = FakeSource([good + [poison]])
    repo = FakeRepo()
    repo.down = 2  # the database is down for two attempts: nothing is committed meanwhile
    dlq = FakeDlq(source.log)
    c = Consume(source, repo, dlq, max_backoff_s=0.01)
    c.stop.wait = lambda s: None
    stats = c.run(max_idle_polls=1)
    assert sorted(repo.rows) == [T0, T0 + 1000, T0 + 2000]
    assert source.committed == [4] and source.log == ["dlq flush", "commit"]
    assert dlq.sent == [(b"{not json", "not JSON", "t/0/3")]
    assert stats.db_retries == 2 and stats.dead_lettered == 1 and stats.stored == 3
