"""Draw the pictures in docs/ from the simulator: `python scripts/docs_pictures.py`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ohlcv_cli.adapters.sql.candles import SqlCandleRepository  # noqa: E402
from ohlcv_cli.adapters.sql.schema import make_engine, upgrade  # noqa: E402
from ohlcv_cli.core.candle import from_kline  # noqa: E402
from ohlcv_cli.core.timeutil import parse_iso  # noqa: E402
from ohlcv_cli.api.read import Store  # noqa: E402
from ohlcv_sim import SimConfig, SimServer  # noqa: E402

H, D = 3_600_000, 86_400_000


def main() -> None:
    t0 = parse_iso("2024-03-01")
    maint = (t0 + 9 * D + 2 * H, t0 + 9 * D + 7 * H)
    sim = SimServer(SimConfig(maintenance=[maint]))
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/docs.db")
        upgrade(engine)
        repo = SqlCandleRepository(engine)

        def put(symbol, tf, start, end, holes=()):
            rows = [r for r in sim.final_rows(symbol, tf, start, end)
                    if not any(a <= r[0] < b for a, b in holes)]
            repo.upsert([from_kline(r, exchange="binance", symbol=symbol, timeframe=tf,
                                    source="backfill") for r in rows])

        put("BTC/USDT", "1m", t0, t0 + 14 * D, holes=[(t0 + 4 * D + 5 * H, t0 + 4 * D + 11 * H)])
        put("ETH/USDT", "1m", t0 + 3 * D, t0 + 14 * D, holes=[(t0 + 8 * D, t0 + 9 * D)])
        put("SOL/USDT", "1h", t0 - 10 * D, t0 + 14 * D, holes=[(t0 + 2 * D, t0 + 2 * D + 9 * H)])
        store = Store(engine)
        store.gaps.record_exchange_gaps("binance", "BTC/USDT", "1m", [maint])
        store.gaps.record_exchange_gaps("binance", "ETH/USDT", "1m", [maint])
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        n, _ = store.plot("BTC/USDT", "1h", t0 + 3 * D, t0 + 6 * D, str(docs / "chart.png"))
        print(f"docs/chart.png: {n} candles")
        store.plot_coverage(str(docs / "coverage.png"))
        print("docs/coverage.png")
        engine.dispose()


if __name__ == "__main__":
    main()
