#!/usr/bin/env bash
# make demo: the simulator, a two-day backfill of three symbols into the embedded SQLite default,
# the summary and a few rows. Needs no service.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OHLCV=${OHLCV:-.venv/bin/ohlcv}
SIM_PORT=${SIM_PORT:-8900}
DEMO_DIR=${DEMO_DIR:-.cache/demo}
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR"/ohlcv.db*
ROOT=$(pwd)

"$OHLCV" sim --port "$SIM_PORT" --zero-volume-share 0.01 >"$DEMO_DIR/sim.log" 2>&1 &
SIM_PID=$!
trap 'kill $SIM_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  grep -q "listening" "$DEMO_DIR/sim.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "listening" "$DEMO_DIR/sim.log" || { echo "error: the simulator did not start:"; cat "$DEMO_DIR/sim.log"; exit 1; }

export OHLCV_EXCHANGE_URL="http://127.0.0.1:$SIM_PORT"
export SYMBOLS="BTC/USDT,ETH/USDT,SOL/USDT"
cd "$DEMO_DIR"
echo "== ohlcv backfill --days 2 (into ./ohlcv.db, the embedded default)"
"$ROOT/$OHLCV" backfill --days 2
echo
echo "== a few rows (sqlite3 ohlcv.db)"
"$ROOT/$PY" - <<'PY'
import sqlite3
conn = sqlite3.connect("ohlcv.db")
cols = "symbol, open_time, open, high, low, close, volume, trades, source"
print(cols)
for row in conn.execute(f"SELECT {cols} FROM candles ORDER BY open_time DESC, symbol LIMIT 6"):
    print(" | ".join(str(v) for v in row))
for sym, n, lo, hi in conn.execute("SELECT symbol, count(*), min(open_time), max(open_time) FROM candles GROUP BY symbol"):
    print(f"{sym}: {n} candles, {lo} .. {hi}")
PY
