"""What a new user expects of a CLI (issue 17, points 4, 5, 8 and 9): help that shows defaults
and environment variables, flags without a value, `--version`, bare groups that just help;
symbols in any case, the exchange's id form and patterns; tables that fit 80 columns; no stray
SQLite file."""

from __future__ import annotations

import inspect
import logging
import os
import re

import pytest
import typer

from conftest import run_cli
from ohlcv_cli import open_store
from ohlcv_cli.core.errors import BadSymbol, StorageError
from ohlcv_cli.core.settings import Settings
from ohlcv_cli.core.symbols import parse_symbols

SIM_USDT = ["ADA/USDT", "BNB/USDT", "BTC/USDT", "DOGE/USDT", "ETH/USDT", "LTC/USDT", "SOL/USDT",
            "XRP/USDT"]
HOUR = ["--start", "2024-03-01", "--end", "2024-03-01T01:00"]


def _commands():
    from ohlcv_cli.cli import app

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def one_error_line(r, prefix: str) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), r.stderr
    return lines[0]


# --- point 5: help and habits -----------------------------------------------------------------
def test_every_option_shows_its_default_and_setting_options_their_real_env_var():
    from ohlcv_cli.core.settings import env_name

    real = {env_name(f) for f in Settings.model_fields}
    # options that set a setting, wherever a command has them
    backed = {"--days": "BACKFILL_DAYS", "--timeframe": "TIMEFRAME", "--source": None,
              "--database-url": "DATABASE_URL", "--kafka-broker": "KAFKA_BROKER",
              "--topic": "TOPIC_NAME", "--exchange-url": "OHLCV_EXCHANGE_URL",
              "--log-level": "LOG_LEVEL", "--log-format": "LOG_FORMAT"}
    seen = 0
    for path, cmd in _commands():
        for p in cmd.params:
            if not p.param_type_name == "option" or p.hidden or "--help" in p.opts:
                continue
            if p.is_flag:
                continue  # off unless given: nothing to show
            text = p.help or ""
            shown = "[default:" in text or (p.show_default or
                                            (cmd.context_settings or {}).get("show_default"))
            assert shown, (path, p.opts, text)
            for env in re.findall(r"\[env: ([A-Z_]+)\]", text):
                assert env in real, (path, p.opts, env)
            long = p.opts[0]
            if long in backed and path not in (["status"], ["plot"], ["export"]):
                want = backed[long]
                envs = re.findall(r"\[env: ([A-Z_]+)\]", text)
                assert envs and (want is None or envs == [want]), (path, long, text)
                seen += 1
    assert seen > 20


def test_help_text_shows_defaults_and_env_vars_literally():
    r = run_cli("backfill", "--help", env={"COLUMNS": "250"})
    assert r.returncode == 0
    for text in ("Days back from now [default: 7] [env: BACKFILL_DAYS]",
                 "[default: BTC/USDT,ETH/USDT] [env: SYMBOLS]", "[default: 1m] [env: TIMEFRAME]",
                 "[default: auto] [env: BACKFILL_SOURCE]",
                 "[default: 4] [env: BACKFILL_CONCURRENCY]"):
        assert text in r.stdout, text
    r = run_cli("stream", "--help", env={"COLUMNS": "250"})
    assert "[default: ws] [env: STREAM_SOURCE]" in r.stdout
    assert "[default: binance-ohlcv] [env: TOPIC_NAME]" in r.stdout


@pytest.mark.parametrize("args", [[], ["backfill"], ["gaps", "check"], ["gaps", "repair"],
                                  ["status"], ["export"], ["sim"]])
def test_flags_show_no_value(args):
    r = run_cli(*args, "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout
    assert "<bool>" not in r.stdout


def test_version():
    from ohlcv_cli import __version__

    r = run_cli("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"ohlcv {__version__}\n", "")


@pytest.mark.parametrize("args", [[], ["gaps"], ["db"], ["topic"]])
def test_bare_command_and_groups_print_help_and_exit_0(args):
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout and "Commands" in r.stdout
    assert r.stderr == ""  # no empty `error: ` line


def test_help_sentences_are_complete():
    """The command lists show each command's first paragraph: a whole sentence, on one line when
    there is room."""
    listings = {(): run_cli("--help", env={"COLUMNS": "250"}).stdout}
    for group in ("gaps", "db", "topic", "funding"):
        listings[(group,)] = run_cli(group, "--help", env={"COLUMNS": "250"}).stdout
    for path, cmd in _commands():
        if not path:
            continue
        first = " ".join(inspect.cleandoc(cmd.help or "").split("\n\n")[0].split())
        first = first.replace("`", "")  # markdown: code spans lose their backticks
        assert first.endswith((".", ")")), (path, first)
        row = next(ln for ln in listings[tuple(path[:-1])].splitlines()
                   if re.match(rf"│ {re.escape(path[-1])} ", ln))
        assert first in " ".join(row.strip("│ ").split()), (path, row)


def test_sim_help_describes_rest_websocket_and_archive():
    r = run_cli("sim", "--help", env={"COLUMNS": "250"})
    head = " ".join(r.stdout.split("Options")[0].split())
    assert "REST" in head and "websocket" in head and "archive" in head
    assert "spot REST API (ping, time, exchangeInfo, klines) with" not in head


# --- point 8: symbols ---------------------------------------------------------------------------
def test_symbols_parse_any_case_and_resolve_ids_and_patterns():
    from ohlcv_cli.core.symbols import resolve_symbols

    assert parse_symbols("btc/usdt, BTCUSDT ,.*/usdt,eth/btc") == [
        "BTC/USDT", "BTCUSDT", ".*/usdt", "ETH/BTC"]
    markets = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT", "ETH/BTC": "ETHBTC"}
    ids = {v: k for k, v in markets.items()}
    assert resolve_symbols(["ethbtc".upper(), ".*/usdt"], markets, ids) == [
        "ETH/BTC", "BTC/USDT", "ETH/USDT"]
    # without the exchange's ids (the store): the one symbol spelled so without its slash
    assert resolve_symbols(["ETHUSDT"], ["ETH/USDT", "BTC/USDT"]) == ["ETH/USDT"]
    with pytest.raises(BadSymbol, match="ambiguous"):
        resolve_symbols(["ABCD"], ["AB/CD", "ABC/D"])
    with pytest.raises(BadSymbol, match="selects no symbol"):
        resolve_symbols(["X.*"], markets, ids)
    with pytest.raises(BadSymbol, match="malformed symbol 'bad sym'"):
        parse_symbols("bad sym")


def test_symbols_command_lists_what_a_pattern_selects(sim):
    env = {"OHLCV_EXCHANGE_URL": sim.url}
    r = run_cli("symbols", ".*/usdt", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == SIM_USDT
    r = run_cli("symbols", "ETHBTC,sol/usdt", env=env)
    assert r.stdout.splitlines() == ["ETH/BTC", "SOL/USDT"], r.stderr
    r = run_cli("symbols", "NOPE.*", env=env)
    assert r.returncode == 2
    one_error_line(r, "error: symbol pattern 'NOPE.*' selects no symbol of binance spot")


def test_backfill_takes_id_form_lower_case_and_patterns(sim, sqlite_url):
    env = {"OHLCV_EXCHANGE_URL": sim.url, "DATABASE_URL": sqlite_url}
    r = run_cli("backfill", *HOUR, "--symbols", "btcusdt,eth/btc", env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("backfill", *HOUR, env={**env, "SYMBOLS": "(sol|xrp)/USDT"})
    assert r.returncode == 0, r.stderr
    with open_store(sqlite_url) as store:
        assert store.symbols() == ["BTC/USDT", "ETH/BTC", "SOL/USDT", "XRP/USDT"]
    r = run_cli("backfill", *HOUR, "--symbols", "zzz.*", env=env)
    assert r.returncode == 2
    one_error_line(r, "error: symbol pattern 'zzz.*' selects no symbol of binance spot")


def test_run_resolves_patterns_and_ids_for_its_backfill_and_its_stream(sim, sqlite_url):
    import time

    from ohlcv_cli.core.timeutil import iso
    start = iso(int(time.time() * 1000) - 120_000).replace(" ", "T")
    r = run_cli("run", "--start", start, "--symbols", "eth/btc,xrpusdt", "--max-cycles", "2",
                env={"OHLCV_EXCHANGE_URL": sim.url, "DATABASE_URL": sqlite_url,
                     "TIMEFRAME": "1s", "REALTIME_DELAY_SECONDS": "0.3"})
    assert r.returncode == 0, r.stderr
    assert "cycle 2" in r.stderr, r.stderr
    with open_store(sqlite_url) as store:
        assert store.symbols() == ["ETH/BTC", "XRP/USDT"]


def test_reads_take_any_case_the_id_form_and_patterns(sim, sqlite_url):
    env = {"OHLCV_EXCHANGE_URL": sim.url, "DATABASE_URL": sqlite_url}
    r = run_cli("backfill", *HOUR, "--symbols", "BTC/USDT,ETH/USDT", env=env)
    assert r.returncode == 0, r.stderr
    with open_store(sqlite_url) as store:
        assert len(store.candles("btc/usdt", "1m", "2024-03-01", "2024-03-01T01:00")) == 60
        assert len(store.candles("ETHUSDT", "5m", "2024-03-01", "2024-03-01T01:00")) == 12
        with pytest.raises(BadSymbol, match="unknown symbol 'SOLUSDT'"):
            store.candles("solusdt")
    r = run_cli("gaps", "check", *HOUR, "--symbols", "btcusdt,eth/usdt", "--json", env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("export", *HOUR, "--symbols", ".*/usdt", "--out", "-", env=env)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()[1:]
    assert len(rows) == 120
    assert {ln.split(",")[0].strip('"') for ln in rows} == {"BTC/USDT", "ETH/USDT"}
    r = run_cli("status", "--symbols", "eth.*", "--json", env=env)
    assert [x["symbol"] for x in __import__("json").loads(r.stdout)] == ["ETH/USDT"]


# --- point 9: no stray SQLite file --------------------------------------------------------------
def test_a_missing_sqlite_file_is_an_error_naming_it(tmp_path, sim):
    path = tmp_path / "ohlcv.db"
    with pytest.raises(StorageError, match=re.escape(str(path))):
        open_store(f"sqlite:///{path}")
    assert not path.exists()
    for args in (["status"], ["gaps", "check"], ["export", "--out", "x.csv"],
                 ["plot", "BTC/USDT", "--out", "x.png"], ["db", "current"]):
        r = run_cli(*args, cwd=tmp_path)  # the default sqlite:///ohlcv.db
        assert r.returncode == 2, (args, r.stderr)
        one_error_line(r, f"error: no database file {path}: `ohlcv db upgrade` or `ohlcv "
                          "backfill` creates it")
        assert not path.exists(), args
    r = run_cli("db", "upgrade", cwd=tmp_path)
    assert r.returncode == 0 and path.exists(), r.stderr
    os.remove(path)
    r = run_cli("backfill", *HOUR, "--symbols", "BTC/USDT", cwd=tmp_path,
                env={"OHLCV_EXCHANGE_URL": sim.url})
    assert r.returncode == 0 and path.exists(), r.stderr


# --- point 4: terminal output -------------------------------------------------------------------
def _table_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.strip()]


def _fits(out: str, width: int, symbols: str) -> None:
    """No line wider than the terminal, nothing ellipsized, and one line per row: every symbol
    whole, no cell wrapped."""
    for ln in _table_lines(out):
        assert len(ln) <= width, ln
    assert "…" not in out, out
    rows = [ln for ln in out.splitlines() if "│" in ln]
    body = [ln for ln in rows if any(f"│ {s} " in ln for s in symbols.split(","))]
    assert rows and len(rows) == len(body), out


def test_tables_fit_80_columns_and_do_not_wrap_at_160(sim, sqlite_url, repo_for):
    env = {"OHLCV_EXCHANGE_URL": sim.url, "DATABASE_URL": sqlite_url, "COLUMNS": "80"}
    syms = "BTC/USDT,DOGE/USDT,ETH/BTC"
    r = run_cli("backfill", "--start", "2024-03-01", "--end", "2024-03-02", "--symbols", syms,
                env=env)
    assert r.returncode == 0, r.stderr
    _fits(r.stdout, 80, syms)
    row = next(ln for ln in r.stdout.splitlines() if "DOGE/USDT" in ln)
    assert [c.strip() for c in row.strip("│").split("│")][:2] == ["DOGE/USDT", "1440"]
    assert "2024-03-01 00:00 → 03-02 00:00" in r.stdout  # the range, compact

    # an hour's hole: the range column as the table shows it
    import sqlalchemy as sa

    from ohlcv_cli.core.timeutil import parse_iso
    repo = repo_for(sqlite_url)
    with repo.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM candles WHERE symbol = 'DOGE/USDT' AND open_time >= :a "
                             "AND open_time < :b"),
                     {"a": repo.ts(parse_iso("2024-03-01T23:00")),
                      "b": repo.ts(parse_iso("2024-03-02"))})
    window = ["--start", "2024-03-01", "--end", "2024-03-02T00:00"]
    r = run_cli("gaps", "check", *window, "--symbols", syms, env=env)
    assert r.returncode in (0, 1), r.stderr
    _fits(r.stdout, 80, syms)
    row = "│ DOGE/USDT │ gaps   │      60 │   95.83 │ 2024-03-01 23:00 → 23:59 (60) │"
    assert row in r.stdout
    r = run_cli("status", env=env)
    assert r.returncode == 0, r.stderr
    _fits(r.stdout, 80, syms)
    assert "2024-03-01 00:00 → 23:59" in r.stdout
    r = run_cli("gaps", "repair", *window, "--symbols", syms, env=env)
    _fits(r.stdout, 80, syms)

    wide = {**env, "COLUMNS": "160"}
    for args in (["backfill", "--start", "2024-03-01", "--end", "2024-03-02", "--symbols", syms],
                 ["status"], ["gaps", "check", *window, "--symbols", syms]):
        r = run_cli(*args, "--wide", env=wide)
        _fits(r.stdout, 160, syms)


def test_logs_go_through_richs_handler_on_the_progress_console(monkeypatch):
    from rich.logging import RichHandler

    import importlib

    common = importlib.import_module("ohlcv_cli.cli.common")
    backfill = importlib.import_module("ohlcv_cli.cli.backfill")  # the module, not the command

    monkeypatch.setattr(common.err_console, "_force_terminal", True)
    try:
        common.setup_logging("INFO", "text")
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler, RichHandler)
        # the progress bars draw on this very console: log lines land above them
        assert handler.console is common.err_console is backfill.err_console
        common.setup_logging("INFO", "json")
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler.formatter, common.JsonFormatter)
        monkeypatch.setattr(common.err_console, "_force_terminal", False)
        common.setup_logging("INFO", "text")
        (handler,) = logging.getLogger().handlers
        assert type(handler) is logging.StreamHandler
    finally:
        logging.getLogger().handlers[:] = []


def test_on_a_terminal_log_lines_are_richs_and_plain_off_it(sim, sqlite_url):
    """A real terminal (a pty): the progress bars and Rich's log lines share stderr's console;
    off a terminal, plain timestamped lines."""
    import pty
    import subprocess
    import sys

    from conftest import SETTING_VARS

    env = {k: v for k, v in os.environ.items() if k not in SETTING_VARS}
    env.update({"OHLCV_EXCHANGE_URL": sim.url, "DATABASE_URL": sqlite_url, "COLUMNS": "120",
                "TERM": "xterm"})
    env.pop("NO_COLOR", None)
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "ohlcv_cli", "backfill", *HOUR, "--symbols",
                          "BTC/USDT"], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty closed: the process is gone
            break
        if not chunk:
            break
        out += chunk
    assert p.wait(60) == 0
    os.close(leader)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode("utf-8", "replace"))
    line = next(ln for ln in text.splitlines() if "60 written" in ln)
    # Rich's handler: [HH:MM:SS] LEVEL, no date; not the plain formatter's "2026-... INFO"
    assert re.search(r"\[?\d\d:\d\d:\d\d\]? INFO +ohlcv_cli\.", line), line
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO", text), text
    r = run_cli("backfill", *HOUR, "--symbols", "ETH/USDT",
                env={"OHLCV_EXCHANGE_URL": sim.url, "DATABASE_URL": sqlite_url})
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ohlcv", r.stderr, re.M), r.stderr
