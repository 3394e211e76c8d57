#!/usr/bin/env bash
# make demo: the whole job with no service installed. The simulator; a three-day backfill of three
# symbols into the embedded SQLite default; then `ohlcv run` with 1s candles for about half a
# minute (backfill, then stream straight into the database from the simulator's websocket, which
# drops some final events and cuts the connection now and then: REST fills those holes); then
# what is stored; then a USD-M perpetual beside its spot pair (trade and mark-price candles).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OHLCV=${OHLCV:-.venv/bin/ohlcv}
SIM_PORT=${SIM_PORT:-8900}
RUN_SECONDS=${RUN_SECONDS:-30}
DEMO_DIR=${DEMO_DIR:-.cache/demo}
ROOT=$(pwd)
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR"/ohlcv.db*

WS_PORT=${WS_PORT:-$((SIM_PORT + 1))}
"$ROOT/$OHLCV" sim --port "$SIM_PORT" --ws-port "$WS_PORT" --zero-volume-share 0.01 --settle-lag-ms 300 \
  --ws-drop-final 0.05 --ws-disconnect-every 12 >"$DEMO_DIR/sim.log" 2>&1 &
SIM_PID=$!
trap 'kill $SIM_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "listening" "$DEMO_DIR/sim.log" 2>/dev/null && break
  kill -0 $SIM_PID 2>/dev/null || break
  sleep 0.1
done
grep -q "listening" "$DEMO_DIR/sim.log" || { echo "error: the simulator did not start:"; cat "$DEMO_DIR/sim.log"; exit 1; }

export OHLCV_EXCHANGE_URL="http://127.0.0.1:$SIM_PORT"
export OHLCV_STREAM_URL="ws://127.0.0.1:$WS_PORT"
export OHLCV_ARCHIVE_URL="http://127.0.0.1:$SIM_PORT"   # the simulator serves the archive layout too
export SYMBOLS="BTC/USDT,ETH/USDT,SOL/USDT"
export LOG_LEVEL=WARNING
cd "$DEMO_DIR"

echo "== ohlcv backfill --days 3   (1m candles into $DEMO_DIR/ohlcv.db, the embedded default: the published whole days from the archive files -- a day's file appears a day after it ends --, the rest from REST)"
"$ROOT/$OHLCV" backfill --days 3
echo
START=$("$ROOT/$PY" -c "import datetime as d; print((d.datetime.now(d.timezone.utc) - d.timedelta(minutes=2)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
echo "== ohlcv run --timeframe 1s --start $START   (backfill, then the websocket with REST as the safety net; stopped after ${RUN_SECONDS}s)"
# stopped by SIGINT, run exits 130 after one line saying what it wrote
LOG_LEVEL=INFO timeout --preserve-status -s INT "$RUN_SECONDS" "$ROOT/$OHLCV" run --timeframe 1s --start "$START" 2>run.log || [ $? -eq 130 ]
# the window to check ends where the stream stopped: candles closing after that were never due
END=$("$ROOT/$PY" -c "import datetime as d; print((d.datetime.now(d.timezone.utc) - d.timedelta(seconds=2)).strftime('%Y-%m-%dT%H:%M:%SZ'))")
grep -E "websocket|run stopped" run.log | sed -E 's/^[0-9-]+ ([0-9:]+),[0-9]+ [A-Z]+ [a-z_.]+: /\1 /' | tail -n 8
echo
echo "== ohlcv status"
"$ROOT/$OHLCV" status
echo
echo "== ohlcv gaps check --timeframe 1s --start $START --end $END   (exit 0: no gaps)"
"$ROOT/$OHLCV" gaps check --timeframe 1s --start "$START" --end "$END"
echo
echo "== a few rows (sqlite3 ohlcv.db)"
"$ROOT/$PY" - <<'PY'
import sqlite3
conn = sqlite3.connect("ohlcv.db")
cols = "symbol, timeframe, open_time, open, high, low, close, volume, trades, source"
print(cols)
for row in conn.execute(f"SELECT {cols} FROM candles WHERE timeframe = '1s' ORDER BY open_time DESC, symbol LIMIT 6"):
    print(" | ".join(str(v) for v in row))
PY

echo
echo "== futures beside spot: ohlcv backfill --symbols BTC/USDT,BTC/USDT:USDT --timeframe 1h --days 2   (BTC/USDT:USDT is the USD-M perpetual: its own series, no collision with spot)"
"$ROOT/$OHLCV" backfill --symbols BTC/USDT,BTC/USDT:USDT --timeframe 1h --days 2
echo
echo "== ohlcv backfill --symbols BTC/USDT:USDT --timeframe 1h --days 2 --price mark   (the perpetual's mark-price candles)"
"$ROOT/$OHLCV" backfill --symbols BTC/USDT:USDT --timeframe 1h --days 2 --price mark
echo
echo "== ohlcv backfill --symbols BTC/USDT --price mark   (spot has only trade candles: one line, exit 2)"
"$ROOT/$OHLCV" backfill --symbols BTC/USDT --timeframe 1h --days 2 --price mark || echo "(exit $?)"
echo
echo "== ohlcv gaps check --symbols BTC/USDT:USDT --timeframe 1h --days 2 --price mark"
"$ROOT/$OHLCV" gaps check --symbols BTC/USDT:USDT --timeframe 1h --days 2 --price mark
echo
echo "== ohlcv status --timeframe 1h"
"$ROOT/$OHLCV" status --timeframe 1h
echo
echo "== the newest rows of each, from Python: open_store().candles(symbol, '1h', price=...)"
"$ROOT/$PY" - <<'PY'
import pandas as pd
from ohlcv_cli import open_store

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 12)
with open_store("sqlite:///ohlcv.db") as store:
    for symbol, price in (("BTC/USDT", "trade"), ("BTC/USDT:USDT", "trade"), ("BTC/USDT:USDT", "mark")):
        df = store.candles(symbol, "1h", price=price, exact=True)
        print(f"{symbol} {price}:")
        print(df[["open", "high", "low", "close", "volume", "trades"]].tail(3).to_string())
        print()
PY
