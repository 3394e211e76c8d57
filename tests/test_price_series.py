"""Price series in the store (issue 18): a contract's trade, mark, index and premium candles and
the spot market's trade candles are five series; none overwrites another, gaps and derived
timeframes are per series; migration 0005 keeps the rows stored before as trade candles; the
Kafka message v2 carries the series and `ohlcv consume` stores v1 and v2 messages."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from conftest import run_cli
from ohlcv_cli.adapters.sql.gaps import SqlGapRepository
from ohlcv_cli.adapters.sql.reader import SqlCandleReader
from ohlcv_cli.adapters.sql.schema import _config, current_revision, make_engine, upgrade
from ohlcv_cli.core import message
from ohlcv_cli.core.candle import Candle, from_kline, validate
from ohlcv_cli.core.errors import InvalidMessage, StorageRejected
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.core.timeutil import parse_iso

M1, H1 = parse_timeframe("1m"), parse_timeframe("1h")
M = 60_000
T0 = parse_iso("2024-05-01")
PERP = "BTC/USDT:USDT"


def _fmt(d: Decimal) -> str:
    return format(d.quantize(Decimal("0.00000001")), "f")


def series(sim, price: str, symbol: str = PERP, start: int = T0, n: int = 120,
           source: str = "backfill") -> list[Candle]:
    """Candles of one series, each series with values of its own: trade from the simulator's
    BTC/USDT (the perpetual's trade series: from ETH/USDT, so that no two series are alike),
    mark and index shifted from it with zero volumes, premium small signed ratios."""
    source_symbol = "ETH/USDT" if (symbol, price) == (PERP, "trade") else "BTC/USDT"
    rows = sim.final_rows(source_symbol, "1m", start, start + n * M)
    out = []
    for i, r in enumerate(rows):
        c = from_kline(r, exchange="binance", symbol=symbol, timeframe="1m", source=source,
                       price=price)
        if price in ("mark", "index"):
            shift = Decimal(1 if price == "mark" else 2)
            o, h, lo, cl = (_fmt(Decimal(x) + shift) for x in (c.open, c.high, c.low, c.close))
            c = c._replace(open=o, high=h, low=lo, close=cl, volume="0", quote_volume="0",
                           trades=60, taker_buy_base_volume="0", taker_buy_quote_volume="0")
        elif price == "premium":
            base = Decimal(i % 50 - 25) / 10**6
            c = c._replace(open=_fmt(base), high=_fmt(base + Decimal("0.000002")),
                           low=_fmt(base - Decimal("0.000002")),
                           close=_fmt(base + Decimal("0.000001")), volume="0", quote_volume="0",
                           trades=12, taker_buy_base_volume="0", taker_buy_quote_volume="0")
        out.append(validate(c))
    return out


def five(sim, **kw) -> dict[tuple[str, str], list[Candle]]:
    got = {(PERP, p): series(sim, p, **kw) for p in ("trade", "mark", "index", "premium")}
    got[("BTC/USDT", "trade")] = series(sim, "trade", symbol="BTC/USDT", **kw)
    return got


def test_five_series_at_one_open_time_are_five_rows(db_url, repo_for, sim):
    repo = repo_for(db_url)
    stored = five(sim, n=30)
    for batch in stored.values():  # one series after the other: the COPY path of new rows
        assert repo.upsert(batch, expect_new=True) == 30
    assert repo.count() == 150
    for (symbol, price), batch in stored.items():
        assert repo.candles("binance", symbol, "1m", price=price) == batch
    # one open time, five rows, five different closes
    first = {(c.symbol, c.price): c.close for b in stored.values() for c in b[:1]}
    assert len(set(first.values())) == 5
    assert any(c.open.startswith("-") for c in stored[(PERP, "premium")])  # stored signed, exact
    # the default is the trade series, as before
    assert repo.candles("binance", PERP, "1m") == stored[(PERP, "trade")]
    assert repo.latest_open_time("binance", PERP, "1m", price="mark") == T0 + 29 * M


def test_upsert_is_idempotent_per_series(db_url, repo_for, sim):
    repo = repo_for(db_url)
    stored = five(sim, n=20)
    everything = [c for b in stored.values() for c in b]
    assert repo.upsert(everything) == 100  # one statement, five series
    assert repo.upsert(everything) == 0
    assert repo.upsert(everything, expect_new=True) == 0  # COPY fails, the upsert finds nothing
    changed = stored[(PERP, "mark")][3]._replace(close=stored[(PERP, "mark")][3].high,
                                                 source="repair")
    assert repo.upsert([changed]) == 1
    assert repo.candles("binance", PERP, "1m", price="mark")[3] == changed
    # the trade, index and premium rows of that minute are untouched
    for price in ("trade", "index", "premium"):
        assert repo.candles("binance", PERP, "1m", price=price) == stored[(PERP, price)]
    assert repo.candles("binance", "BTC/USDT", "1m") == stored[("BTC/USDT", "trade")]


def test_the_database_refuses_an_unknown_series(db_url, repo_for, sim):
    repo = repo_for(db_url)
    bad = series(sim, "trade", n=1)[0]._replace(price="last")
    with pytest.raises(StorageRejected):
        repo.upsert([bad])
    assert repo.count() == 0


def test_gaps_are_per_series(db_url, repo_for, sim):
    repo = repo_for(db_url)
    gaps = SqlGapRepository(repo.engine)
    trade, mark = series(sim, "trade", n=60), series(sim, "mark", n=60)
    repo.upsert(trade)
    repo.upsert(mark[:10] + mark[20:50])  # mark misses 10 minutes inside and its last 10
    end = T0 + 60 * M
    assert repo.missing_ranges("binance", PERP, M1, T0, end) == []
    assert repo.missing_ranges("binance", PERP, M1, T0, end, price="mark") == [
        (T0 + 10 * M, T0 + 20 * M), (T0 + 50 * M, end)]
    assert repo.missing_ranges("binance", PERP, M1, T0, end, price="index") == [(T0, end)]
    gaps.record_exchange_gaps("binance", PERP, "1m", [(T0 + 10 * M, T0 + 20 * M)], price="mark")
    assert gaps.exchange_gaps("binance", PERP, "1m", price="mark") == [(T0 + 10 * M, T0 + 20 * M)]
    assert gaps.exchange_gaps("binance", PERP, "1m") == []  # not a gap of the trade series
    # a trade gap at the same start is a row of its own
    gaps.record_exchange_gaps("binance", PERP, "1m", [(T0 + 10 * M, T0 + 11 * M)])
    assert gaps.exchange_gaps("binance", PERP, "1m") == [(T0 + 10 * M, T0 + 11 * M)]
    assert gaps.exchange_gaps("binance", PERP, "1m", price="mark") == [(T0 + 10 * M, T0 + 20 * M)]
    assert gaps.first_open_time("binance", PERP, "1m", price="mark") == T0
    summaries = {(s.symbol, s.price): (s.stored, s.first, s.last) for s in gaps.series()}
    assert summaries == {(PERP, "trade"): (60, T0, T0 + 59 * M),
                         (PERP, "mark"): (40, T0, T0 + 49 * M)}
    assert [s.price for s in gaps.series(price="mark")] == ["mark"]


def _hourly(candles: list[Candle]) -> list[list]:
    """What the 1h candle of each whole hour of 1m candles is (Binance's aggregation)."""
    out = []
    for h in range(0, len(candles), 60):
        part = candles[h:h + 60]
        out.append([part[0].open_time, part[0].open, max(Decimal(c.high) for c in part),
                    min(Decimal(c.low) for c in part), part[-1].close,
                    sum(Decimal(c.volume) for c in part), sum(c.trades for c in part)])
    return out


def _rows(table) -> list[list]:
    d = table.to_pydict()
    return [[d["open_time"][i], Decimal(d["open"][i]), Decimal(d["high"][i]),
             Decimal(d["low"][i]), Decimal(d["close"][i]), Decimal(d["volume"][i]),
             d["trades"][i]] for i in range(table.num_rows)]


def test_derived_timeframes_are_per_series(db_url, repo_for, sim):
    repo = repo_for(db_url)
    reader = SqlCandleReader(repo.engine)
    gaps = SqlGapRepository(repo.engine)
    stored = {p: series(sim, p, n=180) for p in ("trade", "mark", "premium")}
    # the third hour of mark misses a minute the exchange confirmed it has none of
    hole = T0 + 150 * M
    stored["mark"] = [c for c in stored["mark"] if c.open_time != hole]
    for batch in stored.values():
        repo.upsert(batch)
    end = T0 + 180 * M
    for price in ("trade", "premium"):
        table, incomplete = reader.derived("binance", PERP, H1, M1, T0, end, [], price=price)
        assert _rows(table) == [[r[0], *(Decimal(x) for x in r[1:6]), r[6]]
                                for r in _hourly(stored[price])], price
        assert incomplete == []
    premium = _rows(reader.derived("binance", PERP, H1, M1, T0, end, [], price="premium")[0])
    assert any(r[3] < 0 for r in premium)  # a negative premium aggregates exactly
    # mark: two whole hours; the third is incomplete until its hole is a known exchange gap
    table, incomplete = reader.derived("binance", PERP, H1, M1, T0, end, [], price="mark")
    assert _rows(table) == [[r[0], *(Decimal(x) for x in r[1:6]), r[6]]
                            for r in _hourly(stored["mark"][:120])]
    assert incomplete == [T0 + 120 * M]
    gaps.record_exchange_gaps("binance", PERP, "1m", [(hole, hole + M)])  # a trade gap: no help
    known = gaps.exchange_gaps("binance", PERP, "1m", price="mark")
    assert reader.derived("binance", PERP, H1, M1, T0, end, known, price="mark")[1] == [
        T0 + 120 * M]
    gaps.record_exchange_gaps("binance", PERP, "1m", [(hole, hole + M)], price="mark")
    known = gaps.exchange_gaps("binance", PERP, "1m", price="mark")
    table, incomplete = reader.derived("binance", PERP, H1, M1, T0, end, known, price="mark")
    assert incomplete == [] and table.num_rows == 3
    third = _rows(table)[2]
    assert third[6] == 59 * 60  # 59 mark minutes of 60 basic data each; no trade row mixed in
    mark_max = max(Decimal(c.high) for c in stored["mark"][120:])
    assert third[2] == mark_max
    assert reader.stored_prices("binance", PERP) == ["trade", "mark", "premium"]
    assert reader.stored_timeframes("binance", PERP, price="index") == []


# --- migration 0005 --------------------------------------------------------------------------

_OLD_ROW = ("INSERT INTO candles (exchange, symbol, timeframe, open_time, open, high, low, close,"
            " volume, quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume, source)"
            " VALUES ('binance', :s, '1m', :t, '100.10000000', '101.00000000', '99.00000000',"
            " '100.50000000', '2.00000000', '201.00000000', 7, '1.00000000', '100.00000000',"
            " 'backfill')")
_OLD_GAP = ("INSERT INTO exchange_gaps (exchange, symbol, timeframe, start_time, end_time)"
            " VALUES ('binance', 'BTC/USDT', '1m', :a, :b)")


def _downgrade(engine, revision: str) -> None:
    with engine.begin() as conn:
        command.downgrade(_config(conn), revision)


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_migration_keeps_spot_rows_as_trade_and_downgrades(dialect, pg_cluster, tmp_path,
                                                           repo_for):
    if dialect == "postgresql":
        url = pg_cluster.create_database(f"mig0005_{tmp_path.name[-20:].lower()}")
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0004")
    ts = (lambda ms: repo_for(url).ts(ms))
    with engine.begin() as conn:
        for i in range(3):
            conn.execute(sa.text(_OLD_ROW), {"s": "BTC/USDT", "t": ts(T0 + i * M)})
        conn.execute(sa.text(_OLD_GAP), {"a": ts(T0 + 3 * M), "b": ts(T0 + 5 * M)})
    assert upgrade(engine, "0005") == ("0004", "0005")
    repo = repo_for(url)
    kept = repo.candles("binance", "BTC/USDT", "1m")
    assert [(c.open_time, c.price, c.open, c.source) for c in kept] == [
        (T0 + i * M, "trade", "100.10000000", "backfill") for i in range(3)]
    gaps = SqlGapRepository(repo.engine)
    assert gaps.exchange_gaps("binance", "BTC/USDT", "1m") == [(T0 + 3 * M, T0 + 5 * M)]
    if dialect == "postgresql":  # 0003's call (no price) still reads the trade series
        with engine.connect() as conn:
            n = conn.execute(sa.text(
                "SELECT count(*) FROM ohlcv_derived_candles('binance', 'BTC/USDT', '3m', '1m',"
                " :a, :b)"), {"a": ts(T0), "b": ts(T0 + 6 * M)}).scalar()
        assert n == 1
    # the same minute of the mark series is a row of its own; downgrading then is refused
    mark = kept[0]._replace(symbol=PERP, price="mark")
    assert repo.upsert([mark]) == 1 and repo.count() == 4
    with pytest.raises(RuntimeError, match="mark, index or premium"):
        _downgrade(engine, "0004")
    assert current_revision(engine) == "0005" and repo.count() == 4
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM candles WHERE price = 'mark'"))
    _downgrade(engine, "0004")
    assert current_revision(engine) == "0004"
    with engine.connect() as conn:
        cols = [r[0] for r in conn.execute(sa.text("SELECT * FROM candles")).cursor.description]
        assert "price" not in cols
        assert conn.execute(sa.text("SELECT count(*) FROM candles")).scalar() == 3
        assert conn.execute(sa.text("SELECT count(*) FROM exchange_gaps")).scalar() == 1
    assert upgrade(engine, "0005") == ("0004", "0005")
    assert [c.price for c in repo.candles("binance", "BTC/USDT", "1m")] == ["trade"] * 3
    engine.dispose()


# --- the Kafka message, schema_version 2 ------------------------------------------------------

MARK = Candle("binance", PERP, "1m", 1_700_000_040_000, "37000.01000000", "37010.00000000",
              "36990.50000000", "37005.00000000", "0", "0", 60, "0", "0", "stream", "mark")
V1 = (b'{"schema_version":1,"exchange":"binance","symbol":"BTC/USDT","timeframe":"1m",'
      b'"open_time":1700000040000,"close_time":1700000099999,"open":"37000.01000000",'
      b'"high":"37010.00000000","low":"36990.50000000","close":"37005.00000000",'
      b'"volume":"12.34500000","quote_volume":"456789.12000000","trades":321,'
      b'"taker_buy_base_volume":"6.00000000","taker_buy_quote_volume":"222000.00000000",'
      b'"source":"stream","fetched_at":1700000101000}')


def test_v2_message_carries_type_market_and_price():
    raw = message.encode(MARK, fetched_at=5)
    doc = json.loads(raw)
    assert (doc["schema_version"], doc["type"], doc["market"], doc["price"]) == (
        2, "candle", "usdm", "mark")
    assert message.decode(raw) == (MARK, 5)
    premium = MARK._replace(price="premium", open="-0.00012345", high="0.00000100",
                            low="-0.00020000", close="-0.00001000", symbol="BTC/USD:BTC")
    assert json.loads(message.encode(premium, 1))["market"] == "coinm"
    assert message.decode(message.encode(premium, 1))[0] == premium


def test_v1_message_is_a_spot_trade_candle():
    c, fetched = message.decode(V1)
    assert (c.symbol, c.price, c.close, fetched) == ("BTC/USDT", "trade", "37005.00000000",
                                                     1_700_000_101_000)


def _v2(**change) -> bytes:
    doc = json.loads(message.encode(MARK, 1))
    doc.update(change)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


@pytest.mark.parametrize("raw,reason", [
    (_v2(market="spot"), "market 'spot' does not agree with the symbol BTC/USDT:USDT: a usdm"),
    (_v2(market=...), "market None does not agree"),
    (_v2(symbol="BTC/USDT", market="spot"), "BTC/USDT is a spot market: it has only trade"),
    (_v2(price="last"), "unknown price series 'last'"),
    (_v2(price=...), "price missing or not a string"),
    (_v2(type="trade_tick"), "unknown message type 'trade_tick'"),
    (_v2(type=...), "unknown message type None"),
    (_v2(open="-1.00000000"), "open is negative"),  # only the premium index is signed
    (V1.replace(b'"BTC/USDT"', b'"BTC/USDT:USDT"'), "schema_version 1 holds spot candles only"),
])
def test_invalid_v2_messages_are_named(raw, reason):
    with pytest.raises(InvalidMessage, match=reason.replace("(", r"\(")):
        message.decode(raw)


def test_a_registered_type_is_routed_not_rejected():
    def parse(doc: dict) -> tuple:
        if not isinstance(doc.get("rate"), str):
            raise InvalidMessage("rate missing")
        return doc["symbol"], doc["rate"]

    message.register_type("funding_test", parse)
    raw = message.encode_other("funding_test", {"symbol": PERP, "rate": "0.0001"}, 9)
    with pytest.raises(message.OtherMessageType) as got:
        message.decode(raw)
    assert (got.value.type, got.value.item, got.value.fetched_at) == (
        "funding_test", (PERP, "0.0001"), 9)
    with pytest.raises(InvalidMessage, match="rate missing"):
        message.decode(message.encode_other("funding_test", {"symbol": PERP}, 9))


def test_consume_stores_v1_and_v2_mark_messages(pg_url, repo_for, sim, kafka, topic):
    """A v1 message written before the upgrade and v2 messages of a perpetual's mark series on
    one topic: `ohlcv consume` stores both, each in its own series."""
    from kafka import KafkaConsumer, KafkaProducer

    broker, _ = kafka
    assert run_cli("topic", "create", "--kafka-broker", broker, "--topic", topic,
                   "--partitions", "1").returncode == 0
    marks = series(sim, "mark", n=5, source="stream")
    trades = series(sim, "trade", symbol="BTC/USDT", n=5, source="stream")
    old = json.loads(message.encode(trades[0], 1))
    for k in ("type", "market", "price"):
        old.pop(k)
    old["schema_version"] = 1
    spot_as_mark = json.loads(message.encode(trades[1], 1))
    spot_as_mark["price"] = "mark"
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send(topic, key=b"BTC/USDT", value=json.dumps(old).encode())
    producer.send(topic, key=b"BTC/USDT", value=json.dumps(spot_as_mark).encode())
    for c in marks:
        producer.send(topic, key=message.key(c), value=message.encode(c, 1))
    # the same open time of the perpetual's trade series: a row of its own
    producer.send(topic, key=PERP.encode(), value=message.encode(
        marks[0]._replace(price="trade", open=trades[0].open, high=trades[0].high,
                          low=trades[0].low, close=trades[0].close), 1))
    producer.flush()
    producer.close()
    r = run_cli("consume", "--max-idle-polls", "6",
                env={"DATABASE_URL": pg_url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic,
                     "CONSUMER_GROUP": "v2-test", "OHLCV_EXCHANGE_URL": sim.url})
    assert r.returncode == 0, r.stderr
    repo = repo_for(pg_url)
    assert repo.candles("binance", PERP, "1m", price="mark") == marks
    assert repo.candles("binance", "BTC/USDT", "1m") == trades[:1]
    assert [c.close for c in repo.candles("binance", PERP, "1m")] == [trades[0].close]
    assert repo.count() == 7
    dlq = KafkaConsumer(f"{topic}.dlq", bootstrap_servers=broker, auto_offset_reset="earliest",
                        consumer_timeout_ms=5000, group_id=None)
    reasons = [dict(m.headers)["reason"].decode() for m in dlq]
    dlq.close()
    assert reasons == ["BTC/USDT is a spot market: it has only trade candles, not mark"]


# --- files: export names and columns per series ----------------------------------------------

def test_freqtrade_layout_names_futures_series_as_freqtrade_does(db_url, repo_for, sim, tmp_path):
    """Mark 1h derived from mark 1m only, written where freqtrade's futures mode looks for it,
    and read back by freqtrade's own loader (candle types futures and mark)."""
    history = pytest.importorskip("freqtrade.data.history")
    from freqtrade.enums import CandleType

    from ohlcv_cli.adapters.files import export

    repo = repo_for(db_url)
    reader = SqlCandleReader(repo.engine)
    stored = {p: series(sim, p, n=180) for p in ("trade", "mark")}
    for batch in stored.values():
        repo.upsert(batch)
    paths = {}
    for price in ("trade", "mark"):
        [(path, symbols)] = export.targets("feather", str(tmp_path), [PERP], True, "freqtrade",
                                           "1h", "binance", price)
        paths[price] = path
        table, _ = reader.derived("binance", PERP, H1, M1, T0, T0 + 180 * M, [], price=price)
        with export.open_writer("feather", path, False, "exact", "freqtrade", price) as w:
            w.write(table, PERP)
    assert paths == {"trade": str(tmp_path / "binance/futures/BTC_USDT_USDT-1h-futures.feather"),
                     "mark": str(tmp_path / "binance/futures/BTC_USDT_USDT-1h-mark.feather")}
    for price, kind in (("trade", CandleType.FUTURES), ("mark", CandleType.MARK)):
        df = history.load_pair_history(PERP, "1h", tmp_path / "binance", data_format="feather",
                                       fill_up_missing=False, candle_type=kind)
        assert df["close"].tolist() == [float(r[4]) for r in _hourly(stored[price])], price
    assert export.freqtrade_name("BTC/USDT", "1h") == "BTC_USDT-1h.feather"
    assert export.freqtrade_name("BTC/USD:BTC-261225", "1d", "premium") == \
        "futures/BTC_USD_BTC-261225-1d-premiumIndex.feather"


def test_export_names_a_series_other_than_trade(tmp_path):
    from ohlcv_cli.adapters.files import export
    from ohlcv_cli.adapters.sql.reader import SCHEMA

    names = [p for p, _ in export.targets("csv", str(tmp_path), [PERP, "BTC/USD:BTC"], True,
                                          price="mark")]
    assert names == [str(tmp_path / "BTC-USDT_USDT-mark.csv"),
                     str(tmp_path / "BTC-USD_BTC-mark.csv")]
    assert export.targets("csv", str(tmp_path), ["BTC/USDT"], True) == [
        (str(tmp_path / "BTC-USDT.csv"), ["BTC/USDT"])]  # spot trade: as before
    import pyarrow as pa

    row = pa.table([[T0], ["-0.00012345"], ["0.00000100"], ["-0.00020000"], ["-0.00001000"],
                    ["0"], ["0"], [12], ["0"], ["0"]], schema=SCHEMA)
    out = tmp_path / "all.csv"
    with export.open_writer("csv", str(out), True, "exact", price="premium") as w:
        w.write(row, PERP)
    assert out.read_text().splitlines() == [
        '"symbol","price","open_time","open","high","low","close","volume","quote_volume",'
        '"trades","taker_buy_base_volume","taker_buy_quote_volume"',
        '"BTC/USDT:USDT","premium","2024-05-01T00:00:00Z","-0.00012345","0.00000100",'
        '"-0.00020000","-0.00001000","0","0",12,"0","0"']
    with pytest.raises(Exception, match="spot market"):
        export.freqtrade_name("BTC/USDT", "1h", "mark")


def test_consume_routes_other_message_types_to_their_handler(pg_url, repo_for, sim):
    """The hook a "funding" message type uses: a registered type goes to the store function given
    for it, in the batch's order of commits; what it rejects is dead-lettered (found by halving);
    a registered type without a handler here is dead-lettered, never dropped silently."""
    from test_robustness import ListDlq, ListSource, Rec

    from ohlcv_cli.services.consume import Consume

    message.register_type("rate_test", lambda doc: (doc["symbol"], doc["rate"]))
    message.register_type("unhandled_test", lambda doc: doc)
    kept: list = []

    def store_rates(items: list) -> int:
        if any(rate == "bad" for _, rate in items):
            raise StorageRejected("rate out of range")
        kept.extend(items)
        return len(items)

    marks = series(sim, "mark", n=3, source="stream")
    values = [message.encode(marks[0], 1),
              message.encode_other("rate_test", {"symbol": PERP, "rate": "0.0001"}, 1),
              message.encode_other("rate_test", {"symbol": PERP, "rate": "bad"}, 1),
              message.encode_other("unhandled_test", {"symbol": PERP}, 1),
              *(message.encode(c, 1) for c in marks[1:]),
              message.encode_other("rate_test", {"symbol": PERP, "rate": "0.0002"}, 1)]
    source = ListSource([[Rec("t", 0, i, PERP.encode(), v) for i, v in enumerate(values)]])
    dlq = ListDlq()
    repo = repo_for(pg_url)
    stats = Consume(source, repo, dlq, handlers={"rate_test": store_rates},
                    exchanges=("binance",)).run(max_idle_polls=2)
    assert repo.candles("binance", PERP, "1m", price="mark") == marks
    assert kept == [(PERP, "0.0001"), (PERP, "0.0002")]
    assert [(reason, origin) for _, reason, origin in dlq.sent] == [
        ("unhandled_test messages are not stored by this consumer", "t/0/3"),
        ("rate out of range", "t/0/2")]
    assert source.committed == [len(values)] and stats.stored == 5


class _CsvHandle:
    """An archive file's CSV held in memory (the archive adapter downloads and verifies it)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def rows(self, file, start=None, end=None):
        for line in self.text.splitlines():
            if line.startswith("open_time"):
                continue
            r = line.split(",")
            r[0] = int(r[0])
            if (start is None or r[0] >= start) and (end is None or r[0] < end):
                yield r

    def chunks(self):
        yield self.text.encode()

    def close(self) -> None:
        pass


def test_an_archive_file_is_stored_as_its_series(db_url, repo_for, sim):
    """A mark price archive file of the perpetual lands in the mark series beside the trade
    candles of the same minutes (PostgreSQL's COPY path and SQLite's rows)."""
    from ohlcv_cli.adapters.sql.archive import SqlArchiveWriter
    from ohlcv_cli.core.archive import ArchiveFile, Period

    repo = repo_for(db_url)
    trade, mark = series(sim, "trade", n=60), series(sim, "mark", n=60)
    repo.upsert(trade)
    header = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
              "taker_buy_volume,taker_buy_quote_volume,ignore\n")
    text = header + "".join(
        f"{c.open_time},{c.open},{c.high},{c.low},{c.close},{c.volume},{c.open_time + M - 1},"
        f"{c.quote_volume},{c.trades},{c.taker_buy_base_volume},{c.taker_buy_quote_volume},0\n"
        for c in mark)
    file = ArchiveFile("BTCUSDT-1m-2024-05-01.zip", Period("daily", T0, T0 + 60 * M), True, 1,
                       _CsvHandle(text))
    writer = SqlArchiveWriter(repo.engine)
    assert writer.write_archive(file, "binance", PERP, M1, price="mark") == 60
    assert writer.write_archive(file, "binance", PERP, M1, price="mark") == 0  # idempotent
    assert repo.candles("binance", PERP, "1m", price="mark") == [
        c._replace(source="archive") for c in mark]
    assert repo.candles("binance", PERP, "1m") == trade
