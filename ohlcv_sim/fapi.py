"""The simulator's futures REST: USD-M under `/fapi/v1`, COIN-M under `/dapi/v1`.

ping, time, exchangeInfo, klines, markPriceKlines, indexPriceKlines (by `pair`) and
premiumIndexKlines, with Binance's futures rules: `limit` default 500, at most 1500 (-1130 above),
weight by limit ([1,100) 1, [100,500) 2, [500,1000] 5, above 10) charged to the family's own
budget (`SimConfig.futures_weight_limit` per minute, `X-MBX-USED-WEIGHT-1M` on every answer);
COIN-M: startTime..endTime over 200 days is -4088, and within the window the newest `limit` rows
are answered (startTime only: the window ends 200 days later or now; endTime only: it starts 200
days before). No candle before a contract's onboardDate or at/after its deliveryDate.
"""

from __future__ import annotations

import json

from ohlcv_sim.engine import INTERVALS, encode_rows
from ohlcv_sim.futures import index_series, symbol_info

DAY = 86_400_000
PREFIX = {"usdm": "/fapi/v1", "coinm": "/dapi/v1"}
PRICE_OF = {"/klines": "trade", "/markPriceKlines": "mark", "/indexPriceKlines": "index",
            "/premiumIndexKlines": "premium"}
FIXED_WEIGHTS = {"/ping": 1, "/time": 1, "/exchangeInfo": 1}
# funding: USD-M's fundingRate and fundingInfo weigh nothing on the IP budget but share their own
# limit (SimConfig.funding_limit per funding_window_s, 500 per 5 minutes); COIN-M's weigh 1 on
# its IP budget (Binance's /dapi docs name no limit of their own); premiumIndex weighs 1 with a
# symbol on USD-M, 10 otherwise
FUNDING = {"/fundingRate", "/fundingInfo"}
FUNDING_MAX_LIMIT = 1000
FUTURES_INTERVALS = {k: v for k, v in INTERVALS.items() if k != "1s"}
MAX_LIMIT = 1500
COINM_WINDOW = 200 * DAY
UNTHROTTLED_LIMIT = 100_000_000


def klines_weight(limit: int) -> int:
    """Binance's futures klines weight by limit."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def family_of_path(path: str) -> str | None:
    if path.startswith("/fapi/v1/"):
        return "usdm"
    if path.startswith("/dapi/v1/"):
        return "coinm"
    return None


def handle(h, path: str, params: dict, now: int) -> None:
    """Answer one futures request on handler `h` (server._Handler)."""
    sim = h.server.sim
    family = family_of_path(path)
    endpoint = path[len(PREFIX[family]):] if family else None
    if endpoint in FIXED_WEIGHTS:
        weight = FIXED_WEIGHTS[endpoint]
    elif endpoint in FUNDING:
        weight = 0 if family == "usdm" else 1
    elif endpoint == "/premiumIndex":
        weight = 1 if params.get("symbol") and family == "usdm" else 10
    elif endpoint in PRICE_OF:
        try:
            weight = klines_weight(int(params.get("limit", 500)))
        except ValueError:
            weight = 1
    else:
        return h._send(404, b"<html><body>404 Not Found</body></html>", "text/html")
    sim.weights.count_path(path)
    if sim.in_outage():
        sim.weights.stats["outage_503"] += 1
        return h._send(503, b"<html><body>503 Service Temporarily Unavailable</body></html>",
                       "text/html")
    budget = sim.futures_weights[family]
    used, refuse, retry = budget.charge(weight, now)
    headers = {budget.header_name(): str(used)}
    if refuse is not None:
        headers["Retry-After"] = str(max(1, int(retry + 0.999)))
        msg = ("Way too much request weight used; IP banned until %d." % (now + retry * 1000)
               if refuse == 418 else
               "Too many requests; current limit of IP(127.0.0.1) is %d requests per minute. "
               "Please use the websocket for live updates to avoid polling the API."
               % (budget.limit or 0))
        return h._json(refuse, {"code": -1003, "msg": msg}, headers)
    if endpoint in FUNDING:
        refused, retry_f = (sim.funding_weights[family].charge(1, now)[1:] if family == "usdm"
                            else (None, 0.0))
        if refused is not None:
            headers["Retry-After"] = str(max(1, int(retry_f + 0.999)))
            return h._json(429, {"code": -1003, "msg": "Too many requests; current limit of IP"
                                 f"(127.0.0.1) is {sim.config.funding_limit} requests per "
                                 f"{sim.config.funding_window_s // 60} minutes for "
                                 f"{PREFIX[family]}{endpoint}."}, headers)
        if endpoint == "/fundingInfo":
            return h._json(200, funding_info(sim, now, family), headers)
        return _funding_rate(h, sim, family, params, now, headers)
    if endpoint == "/premiumIndex":
        return _premium_index(h, sim, family, params, now, headers)
    if endpoint == "/ping":
        return h._json(200, {}, headers)
    if endpoint == "/time":
        return h._json(200, {"serverTime": now}, headers)
    if endpoint == "/exchangeInfo":
        return h._json(200, exchange_info(sim, family, now), headers)
    return _klines(h, sim, family, PRICE_OF[endpoint], params, now, headers)


def exchange_info(sim, family: str, now: int) -> dict:
    limit = sim.config.futures_weight_limit or UNTHROTTLED_LIMIT
    specs = [s for s in sim.config.futures if s.family == family]
    assets = sorted({s.settle for s in specs})
    info = {
        "timezone": "UTC",
        "serverTime": now,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": limit},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        ],
        "exchangeFilters": [],
        "symbols": [symbol_info(s, now) for s in specs],
    }
    if family == "usdm":
        info["futuresType"] = "U_MARGINED"
        info["assets"] = [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"}
                          for a in assets]
        info["rateLimits"].append({"rateLimitType": "ORDERS", "interval": "SECOND",
                                   "intervalNum": 10, "limit": 300})
    return info


def _klines(h, sim, family: str, price: str, params: dict, now: int, headers: dict) -> None:
    fault = sim.draw_fault()
    stats = sim.futures_weights[family].stats
    if fault == 429:
        stats["injected_429"] += 1
        headers["Retry-After"] = "1"
        return h._json(429, {"code": -1003, "msg": "Too many requests (injected)."}, headers)
    if fault == 503:
        stats["injected_5xx"] += 1
        return h._send(503, b"Service Unavailable", "text/plain", headers)
    name = "pair" if price == "index" else "symbol"
    sym = params.get(name)
    if not sym:
        return h._error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                        "malformed.", headers)
    if price == "index":
        series = index_series(sim.config.futures, family, sym)
    else:
        spec = sim.config.future(family, sym)
        series = None if spec is None else spec.series(price)
    if series is None:
        return h._error(-1121, "Invalid symbol.", headers)
    tf = FUTURES_INTERVALS.get(params.get("interval", ""))
    if tf is None:
        return h._error(-1120, "Invalid interval.", headers)
    try:
        limit = int(params.get("limit", 500))
        start = int(params["startTime"]) if "startTime" in params else None
        end = int(params["endTime"]) if "endTime" in params else None
    except ValueError:
        return h._error(-1100, "Illegal characters found in a parameter.", headers)
    if not 1 <= limit <= MAX_LIMIT:
        return h._error(-1130, "Data sent for parameter 'limit' is not valid.", headers)
    if start is not None and end is not None and start > end:
        return h._error(-1023, "Start time is greater than end time.", headers)
    newest = False
    if family == "coinm":
        if start is not None and end is not None and end - start > COINM_WINDOW:
            return h._error(-4088, "Maximum time interval is 200 days.", headers)
        if start is not None and end is None:
            end = min(start + COINM_WINDOW, now)
        elif end is not None and start is None:
            start = end - COINM_WINDOW
        newest = start is not None
    with sim.futures_weights[family].lock:
        stats["klines"] += 1
        by = stats.setdefault("klines_by_symbol", {})
        by[f"{price}:{sym}"] = by.get(f"{price}:{sym}", 0) + 1
        stats.setdefault("klines_first_ms", now)
        stats["klines_last_ms"] = now
    body = sim.engine.klines_body(series, tf, start, end, limit, now, newest)
    bad = sim.draw_answer_fault()
    if bad == "garbage":
        stats["injected_garbage"] += 1
        body, ctype = sim.garbage(body)
        return h._send(200, body, ctype, headers)
    if bad == "short":
        rows = json.loads(body)
        if len(rows) >= 2:
            stats["injected_short"] += 1
            with sim._rng_lock:
                keep = sim._rng.randint(1, len(rows) - 1)
            body = encode_rows(rows[:keep])
    h._send(200, body, "application/json;charset=UTF-8", headers)


# --- funding -------------------------------------------------------------------------------------
def funding_rows(sim, family: str, symbol: str | None, start: int | None, end: int | None,
                 limit: int, now: int) -> list[dict]:
    """fundingRate as Binance answers it: startTime/endTime inclusive, ascending; with
    startTime the oldest `limit` rows from it, else the newest `limit` rows up to endTime (or
    now). USD-M rows carry markPrice (the mark price at the settlement: the close of the mark 1m
    candle before the boundary); COIN-M rows do not."""
    model = sim.funding
    specs = [s for s in sim.config.futures if s.family == family and s.delivery is None
             and (symbol is None or s.market_id == symbol)]
    if not specs:
        return []
    hi = now if end is None else min(end, now)
    span = limit * 8 * 3_600_000 + 16  # limit settlements need at most this much time
    found = []
    for spec in specs:
        if start is not None:
            lo = max(start, spec.onboard)
            rows = model.settlements(family, spec.market_id, lo, min(hi, lo + span))
            rows = rows[:limit]
        else:
            rows = model.settlements(family, spec.market_id, max(spec.onboard, hi - span), hi)
            rows = rows[-limit:]
        found += [(st, spec) for st in rows]
    found.sort(key=lambda x: (x[0].funding_time, x[0].symbol))
    found = found[:limit] if start is not None else found[-limit:]
    out = []
    for st, spec in found:
        row = {"symbol": st.symbol, "fundingTime": st.funding_time, "fundingRate": st.rate}
        if family == "usdm":
            row["markPrice"] = sim.engine.final_row(spec.series("mark"), st.boundary - 60_000,
                                                    60_000)[4]
        out.append(row)
    return out


def funding_info(sim, now: int, family: str = "usdm") -> list[dict]:
    """fundingInfo (`/fapi/v1` and `/dapi/v1`): the family's perpetuals whose current interval is
    not the default 8 h."""
    out = []
    for spec in sim.config.futures:
        if spec.family != family or spec.delivery is not None or spec.onboard > now:
            continue
        hours = sim.funding.interval_at(spec.market_id, now)
        if hours != 8:
            out.append({"symbol": spec.market_id, "adjustedFundingRateCap": "0.02000000",
                        "adjustedFundingRateFloor": "-0.02000000",
                        "fundingIntervalHours": hours, "disclaimer": False})
    return out


def _funding_rate(h, sim, family: str, params: dict, now: int, headers: dict) -> None:
    sym = params.get("symbol")
    if family == "coinm" and not sym:
        return h._error(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or "
                        "malformed.", headers)
    if sym and sim.config.future(family, sym) is None:
        return h._error(-1121, "Invalid symbol.", headers)
    try:
        limit = int(params.get("limit", 100))
        start = int(params["startTime"]) if "startTime" in params else None
        end = int(params["endTime"]) if "endTime" in params else None
    except ValueError:
        return h._error(-1100, "Illegal characters found in a parameter.", headers)
    if not 1 <= limit <= FUNDING_MAX_LIMIT:
        return h._error(-1130, "Data sent for parameter 'limit' is not valid.", headers)
    if start is not None and end is not None and start > end:
        return h._error(-1023, "Start time is greater than end time.", headers)
    with sim.funding_weights[family].lock:
        st = sim.funding_weights[family].stats
        st["funding_rate"] = st.get("funding_rate", 0) + 1
    h._json(200, funding_rows(sim, family, sym, start, end, limit, now), headers)


def premium_index_entry(sim, spec, now: int) -> dict:
    """premiumIndex of one contract: mark and index of the minute in progress (final closes),
    the current funding rate and the next funding time ("" and 0 for a delivery contract)."""
    minute = now // 60_000 * 60_000
    live = min(minute, (spec.delivery - 1) // 60_000 * 60_000) if spec.delivery else minute
    mark = sim.engine.final_row(spec.series("mark"), live, 60_000)[4]
    index = sim.engine.final_row(index_series(sim.config.futures, spec.family, spec.pair),
                                 minute, 60_000)[4]
    current = sim.funding.current(spec.family, spec.market_id, now)
    rate, nxt = current if current is not None else ("", 0)
    entry = {"symbol": spec.market_id}
    if spec.family == "coinm":
        entry["pair"] = spec.pair
    entry.update({"markPrice": mark, "indexPrice": index, "estimatedSettlePrice": mark,
                  "lastFundingRate": rate, "interestRate": "0.00010000" if rate else "",
                  "nextFundingTime": nxt, "time": now})
    return entry


def _premium_index(h, sim, family: str, params: dict, now: int, headers: dict) -> None:
    sym = params.get("symbol")
    specs = [s for s in sim.config.futures if s.family == family and s.onboard <= now
             and (sym is None or s.market_id == sym)]
    if sym and not specs:
        return h._error(-1121, "Invalid symbol.", headers)
    entries = [premium_index_entry(sim, s, now) for s in specs]
    if family == "usdm" and sym:
        return h._json(200, entries[0], headers)
    h._json(200, entries, headers)
