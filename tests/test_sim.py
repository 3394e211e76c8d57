"""The simulator speaks Binance over real HTTP (plain urllib here, ccxt in the fetcher tests)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null") if e.headers.get("Content-Type", "").startswith("application/json") else None


def test_klines_semantics(sim):
    status, headers, rows = get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1m")
    assert status == 200 and len(rows) == 500  # default limit
    assert headers["X-MBX-USED-WEIGHT-1M"].isdigit()
    now = int(time.time() * 1000)
    last = rows[-1]
    assert last[0] <= now < last[0] + 60_000  # the current, in-progress candle is served
    assert all(isinstance(x, str) for i, x in enumerate(rows[0]) if i not in (0, 6, 8))
    assert len(rows[0]) == 12 and rows[0][6] == rows[0][0] + 59_999
    start = rows[0][0]
    _, _, page = get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start + 1}&limit=1000")
    assert page[0][0] == start + 60_000  # the first open time at or after startTime
    _, _, page = get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start}&endTime={start + 120_000}")
    assert [r[0] for r in page] == [start, start + 60_000, start + 120_000]  # endTime inclusive
    assert page[0] == sim.final_row("BTC/USDT", "1m", start)


@pytest.mark.parametrize("query,code", [
    ("symbol=NOPEUSDT&interval=1m", -1121),
    ("symbol=BTCUSDT&interval=7m", -1120),
    ("symbol=BTCUSDT&interval=1m&limit=1001", -1130),
    ("interval=1m", -1102),
])
def test_binance_error_bodies(sim, query, code):
    status, _, body = get(f"{sim.url}/api/v3/klines?{query}")
    assert status == 400 and body["code"] == code and body["msg"]


def test_weight_budget_answers_429_with_retry_after_then_418(sim_factory):
    sim = sim_factory(weight_limit=5, weight_window_s=60, ban_after=1)
    codes = [get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1")[0] for _ in range(4)]
    assert codes == [200, 200, 429, 418]
    status, headers, body = get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1")
    assert status == 418 and int(headers["Retry-After"]) >= 1 and body["code"] == -1003


def test_maintenance_listing_and_zero_volume(sim_factory):
    t0 = 1_704_067_200_000  # 2024-01-01
    sim = sim_factory(maintenance=[(t0 + 600_000, t0 + 1_200_000)], zero_volume_share=0.2)
    _, _, rows = get(f"{sim.url}/api/v3/klines?symbol=ETHUSDT&interval=1m&startTime={t0}&limit=30")
    opens = [r[0] for r in rows]
    assert t0 + 540_000 in opens and t0 + 1_200_000 in opens
    assert not any(t0 + 600_000 <= t < t0 + 1_200_000 for t in opens)
    zero = [r for r in rows if r[5] == "0.00000000"]
    assert zero and all(r[1] == r[2] == r[3] == r[4] and r[8] == 0 for r in zero)
    for prev, cur in zip(rows, rows[1:]):
        if cur[0] - prev[0] == 60_000:
            assert cur[1] == prev[4]  # open = previous close


def test_settle_lag_moves_the_just_closed_candle(sim_factory):
    sim = sim_factory(settle_lag_ms=2000)
    # a second without trades looks the same moving or final: take one with trades
    for _ in range(30):
        now = int(time.time() * 1000)
        closed = now // 1000 * 1000 - 1000
        if sim.final_row("BTC/USDT", "1s", closed)[5] != "0.00000000" and now % 1000 < 500:
            break
        time.sleep(0.5)
    _, _, rows = get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={closed}&limit=1")
    assert rows[0][0] == closed
    assert rows[0] != sim.final_row("BTC/USDT", "1s", closed)  # still moving
