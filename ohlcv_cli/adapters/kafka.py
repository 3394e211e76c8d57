"""Kafka through kafka-python: the topic admin, the candle publisher and the candle consumer.

The only module that imports kafka. Every kafka-python exception is translated here into
BrokerUnavailable (or InvalidMessage) with a one-line message.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Iterable, Iterator

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from ohlcv_cli.core import message
from ohlcv_cli.core.candle import Candle
from ohlcv_cli.core.errors import BrokerUnavailable, ConfigError

log = logging.getLogger(__name__)


def _broker_error(exc: BaseException, broker: str, doing: str) -> BrokerUnavailable:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return BrokerUnavailable(f"Kafka broker {broker} unavailable while {doing}: {name}: {text}"[:300])


@contextmanager
def _translate(broker: str, doing: str, *, config: bool = False) -> Iterator[None]:
    """The one place kafka-python's exceptions become BrokerUnavailable (`from exc`: the cause
    stays for debugging). `config=True` (building a client) also covers its ValueErrors."""
    try:
        yield
    except KafkaError as exc:
        raise _broker_error(exc, broker, doing) from exc
    except ValueError as exc:
        if not config:
            raise
        raise _broker_error(exc, broker, doing) from exc


# kafka-python waits up to 30 s between reconnect attempts by default (exponential, jittered):
# a consumer then resumed about 30 s after the broker was back. 1 s bounds that wait.
RECONNECT_BACKOFF_MAX_MS = 1000


def _connected(client) -> bool | None:
    """Whether kafka-python's client holds a live connection to a broker; None: cannot tell.

    While the broker is gone kafka-python's poll neither raises nor returns (it reconnects on
    its own) and a send just waits, so this is how an outage is seen when it starts. It reaches
    into the client (3.x: `client._manager._conns`), which has no public call for it."""
    try:
        conns = list(client._manager._conns.values())
    except AttributeError:
        return None
    return any(getattr(c, "connected", False) for c in conns)


def ensure_topic(broker: str, topic: str, partitions: int, *, timeout_s: float = 15) -> bool:
    """Create the topic (and its dead-letter topic) when missing; True if anything was created."""
    with _translate(broker, "connecting", config=True):
        admin = KafkaAdminClient(bootstrap_servers=broker, client_id="ohlcv-admin",
                                 request_timeout_ms=int(timeout_s * 1000),
                                 bootstrap_timeout_ms=int(timeout_s * 1000))
    created = False
    try:
        with _translate(broker, "creating topics"):
            existing = set(admin.list_topics())
            wanted = [NewTopic(t, partitions, 1) for t in (topic, f"{topic}.dlq") if t not in existing]
            if wanted:
                try:
                    admin.create_topics(wanted, timeout_ms=int(timeout_s * 1000))
                    created = True
                    log.info("created topics %s with %d partitions", [t.name for t in wanted],
                             partitions)
                except TopicAlreadyExistsError:
                    pass
    finally:
        admin.close()
    return created


class KafkaPublisher:
    """Idempotent producer, acks=all, key = symbol. `publish` returns only once the broker has
    confirmed every candle; if it cannot, it raises and the caller must not move on."""

    name = "Kafka broker"  # in the stream's outage lines

    def __init__(self, broker: str, topic: str, *, timeout_s: float = 15, linger_ms: int = 5) -> None:
        self.broker, self.topic = broker, topic
        self._timeout_s = timeout_s
        self._linger = linger_ms
        self._producer: KafkaProducer | None = None

    def _get(self) -> KafkaProducer:
        if self._producer is None:
            with _translate(self.broker, "connecting", config=True):
                self._producer = KafkaProducer(
                    bootstrap_servers=self.broker, client_id="ohlcv-stream", acks="all",
                    enable_idempotence=True, linger_ms=self._linger, batch_size=256 * 1024,
                    max_block_ms=int(self._timeout_s * 1000),
                    request_timeout_ms=int(self._timeout_s * 1000),
                    delivery_timeout_ms=int(self._timeout_s * 2000) + self._linger,
                    reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                    bootstrap_timeout_ms=int(self._timeout_s * 1000),
                )
        return self._producer

    def publish(self, candles: Iterable[Candle], fetched_at: int | None = None) -> int:
        candles = list(candles)
        if not candles:
            return 0
        now = fetched_at or int(time.time() * 1000)
        producer = self._get()
        with self._resetting("publishing"):
            futures = [producer.send(self.topic, key=message.key(c), value=message.encode(c, now))
                       for c in candles]
            self._flush(producer)
            for f in futures:
                f.get(timeout=self._timeout_s)
        return len(candles)

    def publish_funding(self, settlements, fetched_at: int | None = None) -> int:
        """Funding settlements as v2 "funding" messages, keyed by symbol, on the same topic."""
        from ohlcv_cli.core import funding_message

        settlements = list(settlements)
        if not settlements:
            return 0
        now = fetched_at or int(time.time() * 1000)
        producer = self._get()
        with self._resetting("publishing funding"):
            futures = [producer.send(self.topic, key=funding_message.key(s),
                                     value=funding_message.encode(s, now)) for s in settlements]
            self._flush(producer)
            for f in futures:
                f.get(timeout=self._timeout_s)
        return len(settlements)

    @contextmanager
    def _resetting(self, doing: str) -> Iterator[None]:
        """Translate, and drop the producer on failure: it may hold half-sent state, and a fresh
        one is safer after an outage."""
        try:
            with _translate(self.broker, doing):
                yield
        except BrokerUnavailable:
            self._reset()
            raise

    def _flush(self, producer: KafkaProducer) -> None:
        """Wait for the broker's confirmation, up to twice the timeout; but a producer without a
        single broker connection after a second has lost the broker: say so now, not after the
        timeout (the caller retries, and the watermark has not moved)."""
        deadline = time.monotonic() + self._timeout_s * 2
        while True:
            try:
                producer.flush(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                return
            except KafkaTimeoutError:
                if time.monotonic() >= deadline:
                    raise
                client = getattr(getattr(producer, "_sender", None), "_client", None)
                if _connected(client) is False:
                    raise BrokerUnavailable(f"Kafka broker {self.broker} unavailable while "
                                            "publishing: connection lost") from None

    def send_dead_letter(self, value: bytes | None, key: bytes | None, reason: str,
                         origin: str) -> None:
        producer = self._get()
        headers = [("reason", reason.encode()[:1000]), ("origin", origin.encode())]
        with self._resetting("sending to the dead-letter topic"):
            producer.send(f"{self.topic}.dlq", key=key, value=value or b"", headers=headers)

    def flush(self) -> None:
        if self._producer is None:
            return
        with self._resetting("flushing"):
            self._flush(self._producer)

    def _reset(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=0)
            except Exception:  # closing a broken producer must not hide the real error
                pass
            self._producer = None

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.flush(timeout=self._timeout_s)
                self._producer.close(timeout=self._timeout_s)
            except KafkaError as exc:
                log.warning("closing the producer: %s", exc)
            self._producer = None


class KafkaCandleSource:
    """A consumer-group member that polls raw records and commits offsets only when told."""

    def __init__(self, broker: str, topic: str, group: str, *, max_records: int = 5000,
                 session_timeout_ms: int = 10_000, from_beginning: bool = True,
                 timeout_s: float = 15) -> None:
        self.broker, self.topic, self.group = broker, topic, group
        self._max = max_records
        with _translate(broker, "connecting", config=True):
            self._consumer = KafkaConsumer(
                topic, bootstrap_servers=broker, group_id=group, client_id="ohlcv-consume",
                enable_auto_commit=False,
                auto_offset_reset="earliest" if from_beginning else "latest",
                max_poll_records=max_records, fetch_max_wait_ms=100,
                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_min_bytes=1,
                session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=session_timeout_ms // 4,
                max_poll_interval_ms=600_000, request_timeout_ms=max(30_000, session_timeout_ms + 5000),
                bootstrap_timeout_ms=int(timeout_s * 1000),
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
        self._was_connected = False

    def poll(self, timeout_ms: int = 500) -> list:
        """kafka-python's ConsumerRecords (topic, partition, offset, key, value), as they come."""
        with _translate(self.broker, "polling"):
            batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=self._max)
        out: list = []
        for records in batches.values():
            out.extend(records)
        if not out:
            connected = _connected(getattr(self._consumer, "_client", None))
            if connected is False and self._was_connected:
                raise BrokerUnavailable(f"Kafka broker {self.broker} unavailable while polling: "
                                        "connection lost")
            if connected:
                self._was_connected = True
        return out

    def commit(self, records: list) -> None:
        """Commit the offset after the last record of each partition in `records`."""
        last: dict[tuple[str, int], int] = {}
        for r in records:
            key = (r.topic, r.partition)
            if last.get(key, -1) < r.offset:
                last[key] = r.offset
        if not last:
            return
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o + 1, "", -1) for (t, p), o in last.items()}
        with _translate(self.broker, "committing offsets"):
            self._consumer.commit(offsets)

    def rewind(self, records: list) -> None:
        """Seek each partition back to the first of `records`, so they are polled again."""
        first: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        try:
            for tp, offset in first.items():
                if tp in self._consumer.assignment():
                    self._consumer.seek(tp, offset)
        except KafkaError as exc:
            log.warning("rewinding: %s (uncommitted records are redelivered after a rebalance)", exc)

    def lag(self) -> int | None:
        """Messages behind the end of the assigned partitions (None if unknown)."""
        try:
            assigned = self._consumer.assignment()
            if not assigned:
                return None
            ends = self._consumer.end_offsets(list(assigned))
            return sum(max(0, ends[tp] - self._consumer.position(tp)) for tp in assigned)
        except KafkaError:  # lag is a metric, never a reason to stop
            return None

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("closing the consumer: %s", exc)


def check_broker_address(broker: str) -> str:
    host, sep, port = broker.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"invalid KAFKA_BROKER {broker!r}: use host:port, e.g. 127.0.0.1:9092")
    return broker
