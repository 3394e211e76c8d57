"""The simulator's futures: USD-M /fapi and COIN-M /dapi over real HTTP, read by real ccxt."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import ccxt
import pytest

from ohlcv_cli.adapters.binance.rest import _rebase_all
from ohlcv_sim.futures import FuturesSpec, default_futures, quarter_delivery

DAY, HOUR, MIN = 86_400_000, 3_600_000, 60_000


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        ctype = e.headers.get("Content-Type", "")
        return e.code, dict(e.headers), json.loads(body) if ctype.startswith("application/json") else None


def ccxt_client(url: str) -> ccxt.binance:
    ex = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot", "linear", "inverse"]},
                                   "fetchCurrencies": False, "fetchMargins": False}})
    ex.urls["api"] = _rebase_all(ex.urls["api"], url)
    return ex


def test_ccxt_loads_the_default_futures_markets_with_their_unified_symbols(sim):
    now = int(time.time() * 1000)
    markets = ccxt_client(sim.url).load_markets()
    cur = next(s for s in sim.config.futures if s.contract_type == "CURRENT_QUARTER"
               and s.delivery > now)
    yymmdd = cur.expiry
    ids = {sym: m["id"] for sym, m in markets.items()}
    assert ids["BTC/USDT"] == "BTCUSDT"  # spot unchanged beside the perpetual of the same pair
    assert ids["BTC/USDT:USDT"] == "BTCUSDT"
    assert ids[f"BTC/USDT:USDT-{yymmdd}"] == f"BTCUSDT_{yymmdd}"
    assert ids["BTC/USD:BTC"] == "BTCUSD_PERP"
    assert ids[f"BTC/USD:BTC-{yymmdd}"] == f"BTCUSD_{yymmdd}"
    assert ids["ETH/USD:ETH"] == "ETHUSD_PERP" and ids["WLD/USDT:USDT"] == "WLDUSDT"
    assert markets["BTC/USDT:USDT"]["linear"] and markets["BTC/USD:BTC"]["inverse"]
    assert markets[f"BTC/USD:BTC-{yymmdd}"]["expiry"] == cur.delivery
    # the delivery is the last Friday of the quarter's last month at 08:00 UTC
    d = time.gmtime(cur.delivery / 1000)
    assert d.tm_wday == 4 and d.tm_hour == 8 and d.tm_mon in (3, 6, 9, 12) and d.tm_mday > 21
    # the previous quarter's contract is delivered: listed, SETTLING, not active
    prev = [m for m in markets.values() if m.get("expiry") and m["expiry"] < now]
    assert {m["id"][:7] for m in prev} == {"BTCUSDT", "BTCUSD_"}
    assert all(not m["active"] for m in prev)
    wld = markets["WLD/USDT:USDT"]
    assert wld["created"] == now // HOUR * HOUR - 36 * HOUR or \
        wld["created"] == (now // HOUR - 1) * HOUR - 36 * HOUR  # an hour may have turned


def test_default_quarterlies_follow_now():
    # 2026-12-02: current quarter delivers 2026-12-25, the previous one 2026-09-25
    now = 1796169600000
    specs = {s.market_id: s for s in default_futures(now)}
    assert specs["BTCUSDT_261225"].delivery == quarter_delivery(2026, 12) == 1798185600000
    assert specs["BTCUSDT_261225"].onboard == specs["BTCUSDT_260925"].delivery
    assert specs["BTCUSD_260925"].status(now) == "SETTLING"
    assert specs["WLDUSDT"].onboard == now - 36 * HOUR


def test_futures_klines_weight_by_limit_on_each_family_budget(sim):
    weights = []
    for limit in (99, 100, 499, 500, 1000, 1001, 1500):
        status, headers, rows = get(f"{sim.url}/fapi/v1/klines?symbol=BTCUSDT&interval=1m"
                                    f"&limit={limit}")
        assert status == 200 and len(rows) == limit
        weights.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
    steps = [b - a for a, b in zip([0] + weights, weights)]
    if any(x < 0 for x in steps):
        pytest.skip("the weight window turned during the test")
    assert steps == [1, 2, 2, 5, 5, 10, 10]
    # COIN-M counts on its own budget, spot on its own
    _, headers, _ = get(f"{sim.url}/dapi/v1/klines?symbol=BTCUSD_PERP&interval=1m&limit=10")
    assert headers["X-MBX-USED-WEIGHT-1M"] == "1"
    _, headers, _ = get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=10")
    assert headers["X-MBX-USED-WEIGHT-1M"] == "2"


@pytest.mark.parametrize("path,query,code", [
    ("/fapi/v1/klines", "symbol=BTCUSDT&interval=1m&limit=1501", -1130),
    ("/fapi/v1/klines", "symbol=BTCUSD_PERP&interval=1m", -1121),
    ("/dapi/v1/klines", "symbol=BTCUSDT&interval=1m", -1121),
    ("/fapi/v1/klines", "symbol=BTCUSDT&interval=1s", -1120),
    ("/fapi/v1/indexPriceKlines", "symbol=BTCUSDT&interval=1m", -1102),
    ("/dapi/v1/klines", "symbol=BTCUSD_PERP&interval=1m&startTime=0&endTime=17280000001",
     -4088),
])
def test_futures_error_bodies(sim, path, query, code):
    status, _, body = get(f"{sim.url}{path}?{query}")
    assert status == 400 and body["code"] == code and body["msg"]


def test_futures_budget_answers_429_from_exchange_info_limit(sim_factory):
    sim = sim_factory(futures_weight_limit=12, ban_after=100)
    _, _, info = get(f"{sim.url}/fapi/v1/exchangeInfo")
    assert info["rateLimits"][0] == {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                     "intervalNum": 1, "limit": 12}
    codes = [get(f"{sim.url}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=500")[0]
             for _ in range(3)]
    assert 429 in codes
    status, headers, body = get(f"{sim.url}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=500")
    assert status == 429 and int(headers["Retry-After"]) >= 1 and body["code"] == -1003
    # the COIN-M and spot budgets are untouched
    assert get(f"{sim.url}/dapi/v1/klines?symbol=BTCUSD_PERP&interval=1m&limit=5")[0] == 200
    assert get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=5")[0] == 200


def test_coinm_window_answers_the_newest_rows_up_to_end_time(sim):
    end = int(time.time() * 1000) // HOUR * HOUR - DAY
    start = end - 10 * DAY
    _, _, rows = get(f"{sim.url}/dapi/v1/klines?symbol=BTCUSD_PERP&interval=1h"
                     f"&startTime={start}&endTime={end}&limit=5")
    assert [r[0] for r in rows] == [end - 4 * HOUR + i * HOUR for i in range(5)]
    assert rows == sim.futures_final_rows("BTCUSD_PERP", "coinm", "trade", "1h", end - 4 * HOUR,
                                          end + 1)
    # USD-M answers the oldest from startTime
    _, _, rows = get(f"{sim.url}/fapi/v1/klines?symbol=BTCUSDT&interval=1h"
                     f"&startTime={start}&endTime={end}&limit=5")
    assert rows[0][0] == start and len(rows) == 5


def test_no_candle_before_onboard_or_at_after_delivery(sim_factory):
    now = int(time.time() * 1000)
    onboard = now // HOUR * HOUR - 3 * HOUR + 30 * MIN
    delivery = now // HOUR * HOUR - HOUR
    spec = FuturesSpec("BTC", "USDT", "usdm", 6_500_000, onboard, delivery, "CURRENT_QUARTER")
    sim = sim_factory(futures=[spec])
    mid = spec.market_id
    _, _, rows = get(f"{sim.url}/fapi/v1/klines?symbol={mid}&interval=1m"
                     f"&startTime={onboard - HOUR}&limit=1500")
    assert rows[0][0] == onboard and rows[-1][0] == delivery - MIN
    assert len(rows) == (delivery - onboard) // MIN
    _, _, rows = get(f"{sim.url}/fapi/v1/markPriceKlines?symbol={mid}&interval=1m&limit=3")
    assert rows[-1][0] == delivery - MIN  # newest: the last minute before delivery
    _, _, info = get(f"{sim.url}/fapi/v1/exchangeInfo")
    assert info["symbols"][0]["status"] == "SETTLING" and info["symbols"][0]["deliveryDate"] == delivery


def test_time_and_ping_per_family(sim):
    for prefix in ("/fapi/v1", "/dapi/v1"):
        status, _, body = get(f"{sim.url}{prefix}/time")
        assert status == 200 and abs(body["serverTime"] - time.time() * 1000) < 5_000
        assert get(f"{sim.url}{prefix}/ping")[:3:2] == (200, {})


def hours_of(sim, prefix, path, ident):
    """A day of hourly premium rows: they take both signs."""
    _, _, rows = get(f"{sim.url}{prefix}/{path}?symbol={ident}&interval=1h&limit=48")
    return rows


def _agg(rows):
    """The coarser candle of 1m price rows, aggregated as the exchange does."""
    return [rows[0][0], rows[0][1], max(rows, key=lambda r: float(r[2]))[2],
            min(rows, key=lambda r: float(r[3]))[3], rows[-1][4], "0",
            rows[0][0] + len(rows) * MIN - 1, "0", sum(r[8] for r in rows), "0", "0", "0"]


@pytest.mark.parametrize("family,path,param,ident,basic", [
    ("usdm", "markPriceKlines", "symbol", "BTCUSDT", 60),
    ("usdm", "indexPriceKlines", "pair", "BTCUSDT", 60),
    ("usdm", "premiumIndexKlines", "symbol", "ETHUSDT", 12),
    ("coinm", "markPriceKlines", "symbol", "BTCUSD_PERP", 60),
    ("coinm", "indexPriceKlines", "pair", "BTCUSD", 60),
    ("coinm", "premiumIndexKlines", "symbol", "ETHUSD_PERP", 12),
])
def test_price_klines_have_placeholders_and_aggregate_exactly(sim, family, path, param, ident,
                                                              basic):
    prefix = "/fapi/v1" if family == "usdm" else "/dapi/v1"
    hour = int(time.time() * 1000) // HOUR * HOUR - 3 * HOUR
    _, _, minutes = get(f"{sim.url}{prefix}/{path}?{param}={ident}&interval=1m"
                        f"&startTime={hour}&endTime={hour + HOUR - 1}&limit=1500")
    assert len(minutes) == 60
    assert all(r[5] == r[7] == r[9] == r[10] == r[11] == "0" and r[8] == basic for r in minutes)
    assert all(len(r[1].split(".")[1]) == 8 for r in minutes)
    if basic == 12:  # premium: small signed values
        assert all(abs(float(r[4])) < 0.01 for r in minutes)
        assert len({r[4].startswith("-") for r in minutes + hours_of(sim, prefix, path, ident)}) == 2
    _, _, hours = get(f"{sim.url}{prefix}/{path}?{param}={ident}&interval=1h"
                      f"&startTime={hour}&endTime={hour}")
    assert hours == [_agg(minutes)]
    _, _, five = get(f"{sim.url}{prefix}/{path}?{param}={ident}&interval=5m"
                     f"&startTime={hour}&endTime={hour}")
    assert five == [_agg(minutes[:5])]
    price = {"markPriceKlines": "mark", "indexPriceKlines": "index",
             "premiumIndexKlines": "premium"}[path]
    assert minutes == sim.futures_final_rows(ident, family, price, "1m", hour, hour + HOUR)


def test_series_differ_and_spot_is_unchanged(sim):
    hour = int(time.time() * 1000) // HOUR * HOUR - 2 * HOUR
    q = f"interval=1h&startTime={hour}&endTime={hour}"
    spot = get(f"{sim.url}/api/v3/klines?symbol=BTCUSDT&{q}")[2]
    perp = get(f"{sim.url}/fapi/v1/klines?symbol=BTCUSDT&{q}")[2]
    mark = get(f"{sim.url}/fapi/v1/markPriceKlines?symbol=BTCUSDT&{q}")[2]
    index = get(f"{sim.url}/fapi/v1/indexPriceKlines?pair=BTCUSDT&{q}")[2]
    coinm = get(f"{sim.url}/dapi/v1/indexPriceKlines?pair=BTCUSD&{q}")[2]
    assert spot == [sim.final_row("BTC/USDT", "1h", hour)]
    assert len({json.dumps(x) for x in (spot, perp, mark, index, coinm)}) == 5
    assert perp[0][5] != "0" and mark[0][5] == "0"


def test_a_delivery_contracts_index_rows_are_its_pairs_clipped(sim):
    now = int(time.time() * 1000)
    prev = next(s for s in sim.config.futures if s.family == "usdm" and s.delivery
                and s.delivery <= now)
    a, b = prev.delivery - 2 * HOUR, prev.delivery + 2 * HOUR
    pair_rows = sim.futures_final_rows("BTCUSDT", "usdm", "index", "1h", a, b)
    own = sim.futures_final_rows(prev.market_id, "usdm", "index", "1h", a, b)
    assert len(pair_rows) == 4 and own == pair_rows[:2]
    _, _, served = get(f"{sim.url}/fapi/v1/indexPriceKlines?pair=BTCUSDT&interval=1h"
                       f"&startTime={a}&endTime={b - 1}")
    assert served == pair_rows
    # the contract's own series end at delivery
    _, _, mark = get(f"{sim.url}/fapi/v1/markPriceKlines?symbol={prev.market_id}&interval=1h"
                     f"&startTime={a}&endTime={b - 1}")
    assert [r[0] for r in mark] == [a, a + HOUR]


# --- archive -------------------------------------------------------------------------------------
def _file(sim, path: str):
    import hashlib
    import io
    import zipfile

    try:
        with urllib.request.urlopen(sim.url + path, timeout=10) as r:
            data = r.read()
        with urllib.request.urlopen(sim.url + path + ".CHECKSUM", timeout=10) as r:
            checksum = r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, None
    assert checksum.split()[0] == hashlib.sha256(data).hexdigest()
    z = zipfile.ZipFile(io.BytesIO(data))
    return 200, z.read(z.namelist()[0]).decode().splitlines()


def _day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def test_futures_archive_files_match_rest_with_headers_in_newer_files_only(sim):
    today = int(time.time() * 1000) // DAY * DAY
    new, old = today - 3 * DAY, today - 40 * DAY
    for root, family, kind, ident, price in [
        ("um", "usdm", "klines", "BTCUSDT", "trade"),
        ("um", "usdm", "markPriceKlines", "ETHUSDT", "mark"),
        ("um", "usdm", "indexPriceKlines", "BTCUSDT", "index"),
        ("cm", "coinm", "premiumIndexKlines", "BTCUSD_PERP", "premium"),
        ("cm", "coinm", "klines", "BTCUSD_PERP", "trade"),
    ]:
        for day, header in ((new, True), (old, False)):
            path = (f"/data/futures/{root}/daily/{kind}/{ident}/1h/{ident}-1h-{_day(day)}.zip")
            status, lines = _file(sim, path)
            assert status == 200, path
            assert lines[0].startswith("open_time,") == header
            if header and root == "cm":
                assert "base_asset_volume" in lines[0] and "taker_buy_base_asset_volume" in lines[0]
            body = lines[1:] if header else lines
            rest = sim.futures_final_rows(ident, family, price, "1h", day, day + DAY)
            assert body == [",".join(str(x) for x in r) for r in rest]  # ms times, REST strings
    # yesterday's daily file is not published yet; the day before is
    assert _file(sim, f"/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{_day(today - DAY)}.zip")[0] == 404


def test_futures_archive_ends_at_delivery_and_starts_at_onboard(sim):
    now = int(time.time() * 1000)
    prev = next(s for s in sim.config.futures if s.family == "coinm" and s.delivery
                and s.delivery <= now)
    ident = prev.market_id
    day = prev.delivery // DAY * DAY
    status, lines = _file(sim, f"/data/futures/cm/daily/klines/{ident}/1h/{ident}-1h-{_day(day)}.zip")
    assert status == 200 and len(lines) == 8  # 00:00 .. 07:00, delivery at 08:00
    assert _file(sim, f"/data/futures/cm/daily/klines/{ident}/1h/{ident}-1h-"
                      f"{_day(day + DAY)}.zip")[0] == 404
    assert _file(sim, f"/data/futures/um/daily/klines/WLDUSDT/1h/WLDUSDT-1h-"
                      f"{_day(now - 4 * DAY)}.zip")[0] == 404  # before its listing


def test_archive_faults_can_target_one_futures_kind(sim_factory):
    day = _day(int(time.time() * 1000) - 3 * DAY)
    sim = sim_factory(archive_faults=[f"missing:um.premiumIndexKlines@BTCUSDT:{day}",
                                      f"corrupt:cm@ETHUSD_PERP:{day}"])
    assert _file(sim, f"/data/futures/um/daily/premiumIndexKlines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip")[0] == 404
    assert _file(sim, f"/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip")[0] == 200
    assert _file(sim, f"/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip")[0] == 200
    with pytest.raises(AssertionError):  # the zip does not match its CHECKSUM
        _file(sim, f"/data/futures/cm/daily/klines/ETHUSD_PERP/1h/ETHUSD_PERP-1h-{day}.zip")


# --- websocket -----------------------------------------------------------------------------------
def _ws_take(url: str, n: int, timeout: float = 4.0) -> list:
    import asyncio

    from websockets.asyncio.client import connect

    async def run():
        out = []
        async with connect(url) as ws:
            end = time.time() + timeout
            while len(out) < n and time.time() < end:
                try:
                    out.append(json.loads(await asyncio.wait_for(ws.recv(), end - time.time())))
                except asyncio.TimeoutError:
                    break
        return out
    return asyncio.run(run())


@pytest.fixture
def ws_sim():
    from ohlcv_sim import SimConfig, SimServer

    server = SimServer(SimConfig(), ws_port=0).start()
    yield server
    server.stop()


def test_usdm_routed_streams_push_klines_and_mark_price_the_legacy_url_nothing(ws_sim):
    sim = ws_sim
    assert sim.usdm_ws_url == sim.ws_url + "/fapi" and sim.coinm_ws_url == sim.ws_url + "/dapi"
    got = _ws_take(f"{sim.usdm_ws_url}/market/stream?streams=btcusdt@markPrice@1s/"
                   "solusdt@kline_1m", 4)
    names = {m["stream"] for m in got}
    assert names == {"btcusdt@markPrice@1s", "solusdt@kline_1m"}
    mark = next(m["data"] for m in got if m["stream"] == "btcusdt@markPrice@1s")
    assert mark["e"] == "markPriceUpdate" and mark["s"] == "BTCUSDT"
    rate, nxt = sim.funding.current("usdm", "BTCUSDT", mark["E"])
    assert mark["r"] == rate and mark["T"] == nxt > mark["E"]
    minute = mark["E"] // MIN * MIN
    assert mark["p"] == sim.futures_final_row("BTCUSDT", "usdm", "mark", "1m", minute)[4]
    assert mark["i"] == sim.futures_final_row("BTCUSDT", "usdm", "index", "1m", minute)[4]
    kline = next(m["data"] for m in got if m["stream"] == "solusdt@kline_1m")
    assert kline["e"] == "kline" and kline["k"]["s"] == "SOLUSDT" and kline["k"]["x"] is False
    raw = _ws_take(f"{sim.usdm_ws_url}/market/ws/ethusdt@markPrice@1s", 1)
    assert raw[0]["e"] == "markPriceUpdate" and raw[0]["s"] == "ETHUSDT"  # bare event
    assert _ws_take(f"{sim.usdm_ws_url}/stream?streams=btcusdt@kline_1m", 1, 2.5) == []


def test_coinm_streams_push_mark_and_index_price_klines(ws_sim):
    sim = ws_sim
    got = _ws_take(f"{sim.coinm_ws_url}/stream?streams=btcusd_perp@markPriceKline_1m/"
                   "btcusd@indexPriceKline_1m/ethusd_perp@kline_1m", 3)
    by = {m["stream"]: m["data"] for m in got}
    assert by["btcusd_perp@markPriceKline_1m"]["e"] == "markPrice_kline"
    assert by["btcusd_perp@markPriceKline_1m"]["ps"] == "BTCUSD"
    assert by["btcusd_perp@markPriceKline_1m"]["k"]["s"] == "BTCUSD_PERP"
    assert by["btcusd@indexPriceKline_1m"]["e"] == "indexPrice_kline"
    assert by["ethusd_perp@kline_1m"]["s"] == "ETHUSD_PERP"
    k = by["btcusd_perp@markPriceKline_1m"]["k"]
    final = sim.futures_final_row("BTCUSD_PERP", "coinm", "mark", "1m", k["t"])
    assert k["o"] == final[1] and k["v"] == "0"


# --- funding -------------------------------------------------------------------------------------
def test_funding_history_is_inclusive_ascending_and_jittered_with_interval_changes(sim):
    now = int(time.time() * 1000)
    change = now // (8 * HOUR) * (8 * HOUR) - 3 * DAY
    rows = sim.funding_settlements("BTCUSDT", "usdm", change - 2 * DAY, now)
    times = [r["fundingTime"] for r in rows]
    assert times == sorted(times)
    bounds = [t // 1000 * 1000 for t in times]
    assert all(0 <= t - b <= 15 for t, b in zip(times, bounds)) and any(t != b for t, b in zip(times, bounds))
    gaps = {b - a for a, b in zip(bounds, bounds[1:]) if b <= change}
    assert gaps == {8 * HOUR}  # 8 h until the change ...
    assert {b - a for a, b in zip(bounds, bounds[1:]) if a >= change} == {4 * HOUR}  # ... 4 h after
    # REST: both ends inclusive, so an endTime on the exact boundary misses the jittered row
    t = rows[3]["fundingTime"]
    _, _, page = get(f"{sim.url}/fapi/v1/fundingRate?symbol=BTCUSDT&startTime={t}&endTime={t}")
    assert page == [rows[3]] and set(page[0]) == {"symbol", "fundingTime", "fundingRate", "markPrice"}
    b = t // 1000 * 1000
    if t != b:
        _, _, page = get(f"{sim.url}/fapi/v1/fundingRate?symbol=BTCUSDT&startTime={b - HOUR}&endTime={b}")
        assert page == []
    _, _, page = get(f"{sim.url}/fapi/v1/fundingRate?symbol=SOLUSDT&startTime={now - 30 * HOUR}&limit=1000")
    assert {b - a for a, b in zip([r["fundingTime"] // 1000 for r in page],
                                  [r["fundingTime"] // 1000 for r in page[1:]])} == {3600}
    _, _, coinm = get(f"{sim.url}/dapi/v1/fundingRate?symbol=BTCUSD_PERP&limit=5")
    assert len(coinm) == 5 and "markPrice" not in coinm[0]
    delivery = next(s for s in sim.config.futures if s.family == "coinm" and s.delivery)
    assert get(f"{sim.url}/dapi/v1/fundingRate?symbol={delivery.market_id}")[2] == []
    assert get(f"{sim.url}/dapi/v1/fundingRate")[2]["code"] == -1102


def test_funding_info_and_premium_index_agree_with_the_schedule(sim):
    now = int(time.time() * 1000)
    _, _, info = get(f"{sim.url}/fapi/v1/fundingInfo")
    assert {r["symbol"]: r["fundingIntervalHours"] for r in info} == {
        "BTCUSDT": 4, "SOLUSDT": 1, "WLDUSDT": 4}
    _, _, p = get(f"{sim.url}/fapi/v1/premiumIndex?symbol=SOLUSDT")
    assert p["nextFundingTime"] == (now // HOUR + 1) * HOUR or p["nextFundingTime"] == (now // HOUR + 2) * HOUR
    rate = p["lastFundingRate"]
    settled = sim.funding.settlements("usdm", "SOLUSDT", p["nextFundingTime"],
                                      p["nextFundingTime"] + 15)
    assert settled[0].rate == rate  # what is announced is what settles
    _, _, d = get(f"{sim.url}/dapi/v1/premiumIndex?symbol=BTCUSD_PERP")
    assert isinstance(d, list) and d[0]["pair"] == "BTCUSD" and d[0]["nextFundingTime"] % (8 * HOUR) == 0
    # ccxt reads them
    ex = ccxt_client(sim.url)
    ex.load_markets()
    assert ex.fetch_funding_rate("BTC/USDT:USDT")["fundingTimestamp"] % (4 * HOUR) == 0
    assert ex.fetch_funding_intervals()["SOL/USDT:USDT"]["interval"] == "1h"
    hist = ex.fetch_funding_rate_history("ETH/USDT:USDT", limit=3)
    assert len(hist) == 3 and all(h["timestamp"] % (8 * HOUR) <= 15 for h in hist)


def test_funding_endpoints_have_their_own_limit_answered_429(sim_factory):
    sim = sim_factory(funding_limit=3)
    codes = [get(f"{sim.url}/fapi/v1/fundingRate?symbol=BTCUSDT&limit=1")[0] for _ in range(3)]
    assert codes == [200, 200, 200]
    status, headers, body = get(f"{sim.url}/fapi/v1/fundingInfo")
    assert status == 429 and int(headers["Retry-After"]) >= 1 and body["code"] == -1003
    # klines and premiumIndex are not held back by it
    assert get(f"{sim.url}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1")[0] == 200
    assert get(f"{sim.url}/fapi/v1/premiumIndex?symbol=BTCUSDT")[0] == 200
    assert sim.stats()["usdm"]["funding_rejected_429"] == 1


def test_monthly_funding_archive_matches_rest(sim_factory):
    now = int(time.time() * 1000)
    t = time.gmtime(now / 1000)
    y, m = (t.tm_year, t.tm_mon - 1) if t.tm_mon > 1 else (t.tm_year - 1, 12)
    label = f"{y}-{m:02d}"
    sim = sim_factory(archive_faults=[f"missing:fundingRate@ETHUSDT:{label}"])
    status, lines = _file(sim, f"/data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-{label}.zip")
    assert status == 200 and lines[0] == "calc_time,funding_interval_hours,last_funding_rate"
    import calendar
    start = calendar.timegm((y, m, 1, 0, 0, 0)) * 1000
    end = calendar.timegm((y + (m == 12), m % 12 + 1, 1, 0, 0, 0)) * 1000
    rest = sim.funding_settlements("BTCUSDT", "usdm", start, end - 1)
    assert lines[1:] == [f"{r['fundingTime']},{sim.funding.interval_at('BTCUSDT', r['fundingTime'] - 20)},"
                         f"{r['fundingRate']}" for r in rest]
    assert _file(sim, f"/data/futures/um/monthly/fundingRate/ETHUSDT/ETHUSDT-fundingRate-{label}.zip")[0] == 404
