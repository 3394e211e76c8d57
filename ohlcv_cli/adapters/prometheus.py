"""Prometheus metrics for stream and consume (prometheus_client), served on --metrics-port."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ohlcv_cli.core.ports import Metrics


class PrometheusMetrics(Metrics):
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.c_fetched = Counter("ohlcv_candles_fetched", "Closed candles fetched from the exchange",
                                 ["symbol"], registry=registry)
        self.c_published = Counter("ohlcv_candles_published", "Candles confirmed by the sink (broker or db)",
                                   ["symbol"], registry=registry)
        self.c_stored = Counter("ohlcv_candles_stored", "Rows written to the database (new or changed)",
                                registry=registry)
        self.c_dead = Counter("ohlcv_messages_dead_lettered", "Invalid messages sent to the dead-letter topic",
                              registry=registry)
        self.c_errors = Counter("ohlcv_errors", "Errors by kind (exchange, broker, storage)", ["kind"],
                                registry=registry)
        self.g_lag = Gauge("ohlcv_consumer_lag_messages", "Messages behind the end of the assigned partitions",
                           registry=registry)
        self.h_latency = Histogram(
            "ohlcv_close_to_stored_seconds", "From a candle's close to its row being committed",
            buckets=(0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 5, 10, 30, 60, 300, float("inf")),
            registry=registry)

    def fetched(self, symbol: str, n: int) -> None:
        self.c_fetched.labels(symbol).inc(n)

    def published(self, symbol: str, n: int) -> None:
        self.c_published.labels(symbol).inc(n)

    def stored(self, n: int) -> None:
        self.c_stored.inc(n)

    def latency(self, seconds: float) -> None:
        self.h_latency.observe(seconds)

    def error(self, kind: str) -> None:
        self.c_errors.labels(kind).inc()

    def lag(self, messages: int) -> None:
        self.g_lag.set(messages)

    def dead_lettered(self, n: int) -> None:
        self.c_dead.inc(n)


def serve(port: int) -> PrometheusMetrics:
    metrics = PrometheusMetrics()
    start_http_server(port, addr="0.0.0.0")
    return metrics
