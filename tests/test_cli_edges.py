"""The CLI's edge, end to end (a real `ohlcv` process): settings, one error line, quiet logs."""

from __future__ import annotations

import pytest

from conftest import run_cli


def one_error_line(r, prefix: str) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_a_bad_setting_a_command_does_not_read_does_not_break_it(sqlite_url):
    r = run_cli("sim", "--help", env={"SYMBOLS": "bad sym"})
    assert r.returncode == 0 and "--port" in r.stdout, r.stderr
    r = run_cli("db", "current", "--database-url", sqlite_url, env={"BACKFILL_DAYS": "0"})
    assert r.returncode == 0 and r.stdout.strip() == "0005 (head)", r.stderr
    r = run_cli("status", "--database-url", sqlite_url, env={"TIMEFRAME": "7m", "SYMBOLS": "x"})
    assert r.returncode == 0, r.stderr
    # ... but a command that reads it stops on it
    r = run_cli("backfill", "--database-url", sqlite_url, env={"SYMBOLS": "bad sym"})
    assert r.returncode == 2
    one_error_line(r, "error: malformed symbol 'bad sym'")


@pytest.mark.parametrize("args,env,message", [
    ([], {"LOG_LEVEL": "verbose"}, "error: invalid setting LOG_LEVEL: must be one of DEBUG, INFO"),
    (["--log-level", "loud"], {}, "error: invalid setting LOG_LEVEL"),
    ([], {"REALTIME_DELAY_SECONDS": "inf"}, "error: invalid setting REALTIME_DELAY_SECONDS"),
    ([], {"EXCHANGE_TIMEOUT_SECONDS": "1e400"}, "error: invalid setting EXCHANGE_TIMEOUT_SECONDS"),
    ([], {"DATABASE_URL": "mysql://u:secret@127.0.0.1/db"},
     "error: database URL 'mysql://u:***@127.0.0.1/db' needs the Python package 'mysqlclient', "
     "which is not installed: pip install mysqlclient"),
    ([], {"DATABASE_URL": "postgresql://u@127.0.0.1:abc/db"},
     "error: invalid setting DATABASE_URL: the port must be a number"),
    ([], {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "99999"},
     "error: invalid setting POSTGRES_PORT"),
    (["--days", "100000"], {}, "error: 100000 days back from now is before 1970-01-01"),
    ([], {"BACKFILL_DAYS": "100000"}, "error: 100000 days back from now is before 1970-01-01"),
])
def test_bad_settings_are_one_line_exit_2(args, env, message, sim, tmp_path):
    global_args = args if args[:1] == ["--log-level"] else []
    cmd_args = [] if global_args else args
    r = run_cli(*global_args, "backfill", *cmd_args, env={"OHLCV_EXCHANGE_URL": sim.url, **env})
    assert r.returncode == 2, r.stderr
    line = one_error_line(r, message)
    assert "secret" not in line
    assert sim.stats()["klines"] == 0  # refused before asking the exchange anything


def test_metrics_port_out_of_range_is_one_line(sqlite_url, sim):
    r = run_cli("stream", "--metrics-port", "70000", "--database-url", sqlite_url,
                env={"OHLCV_EXCHANGE_URL": sim.url})
    assert r.returncode == 2
    one_error_line(r, "error: invalid setting METRICS_PORT")


def test_gaps_check_has_no_exchange_url():
    r = run_cli("gaps", "check", "--exchange-url", "http://127.0.0.1:9")
    assert r.returncode == 2
    one_error_line(r, "error: No such option: --exchange-url")


def test_a_failing_symbol_is_reported_once(sqlite_url, sim_factory):
    sim = sim_factory(share_5xx=1.0)  # exchangeInfo answers, every klines request fails
    r = run_cli("backfill", "--days", "1", "--symbols", "BTC/USDT", "--database-url", sqlite_url,
                env={"OHLCV_EXCHANGE_URL": sim.url, "EXCHANGE_RETRY_SECONDS": "1"})
    assert r.returncode == 1, r.stderr
    mentions = [ln for ln in r.stderr.splitlines()
                if any(w in ln for w in ("unreachable", "failed", "ERROR", "error"))]
    assert len(mentions) == 1 and mentions[0].startswith("error: BTC/USDT: binance"), r.stderr
    assert "FAILED" in r.stdout


def test_run_whose_backfill_fails_exits_1_with_the_symbol_line_and_streams_nothing(sim_factory,
                                                                                 tmp_path):
    sim = sim_factory(share_5xx=1.0)
    r = run_cli("run", "--days", "1", "--symbols", "BTC/USDT", "--max-cycles", "1",
                env={"OHLCV_EXCHANGE_URL": sim.url, "EXCHANGE_RETRY_SECONDS": "1",
                     "TIMEFRAME": "1s"}, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: BTC/USDT: binance"), r.stderr
    assert "FAILED" in r.stdout and "cycle 1" not in r.stderr


def test_unreachable_broker_is_our_one_line_and_kafka_logs_only_with_debug():
    from broker import free_port

    env = {"KAFKA_TIMEOUT_SECONDS": "2"}
    broker = f"127.0.0.1:{free_port()}"
    r = run_cli("topic", "create", "--kafka-broker", broker, env=env)
    assert r.returncode == 2
    one_error_line(r, f"error: Kafka broker {broker} unavailable")
    debug = run_cli("--log-level", "DEBUG", "topic", "create", "--kafka-broker", broker, env=env)
    assert debug.returncode == 2 and " kafka." in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: Kafka broker")


@pytest.mark.kafka
def test_consume_before_the_topic_exists_logs_no_error(kafka, topic, sqlite_url):
    broker, _ = kafka
    r = run_cli("consume", "--kafka-broker", broker, "--topic", topic, "--database-url",
                sqlite_url, "--max-idle-polls", "6")
    assert r.returncode == 0, r.stderr
    assert " ERROR " not in r.stderr and " WARNING " not in r.stderr, r.stderr
    assert "consume stopped: 0 messages" in r.stderr


@pytest.mark.kafka
def test_run_through_kafka_backfills_streams_and_stops_cleanly(kafka, topic, sim, tmp_path):
    broker, _ = kafka
    r = run_cli("run", "--days", "1", "--symbols", "BTC/USDT", "--max-cycles", "3",
                env={"OHLCV_EXCHANGE_URL": sim.url, "KAFKA_BROKER": broker, "TOPIC_NAME": topic,
                     "TIMEFRAME": "1s", "REALTIME_DELAY_SECONDS": "0.3",
                     "CONSUMER_GROUP": f"g-{topic}"}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "cycle 3" in r.stderr and "error" not in r.stderr.lower(), r.stderr
    assert "BTC/USDT" in r.stdout and "86400" in r.stdout
