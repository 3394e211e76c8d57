"""The simulator's funding model (pure, no I/O): when each perpetual settles and at what rate.

Settlements fall on boundaries of the symbol's funding interval (multiples of the interval since
the epoch: 00:00/08:00/16:00 UTC for 8h), from the first boundary after onboard. A schedule is a
list of (from_ms, hours): a boundary at or before the next entry's from_ms still closes a period of
the earlier interval; the next entry's interval applies to the boundaries after it. Each
settlement's `fundingTime` trails its boundary by a deterministic jitter of 0-15 ms, as Binance's
do. The rate is a deterministic function of (symbol, boundary), an 8-decimal string, so that the
rate a client streams as `r` before a settlement is the one the history shows after it.

Default schedules (relative to the "now" the simulator started with, SimConfig.funding_now):
BTCUSDT 8h until T = (now floored to 8h) - 3 days, 4h after; ETHUSDT 8h; SOLUSDT 1h; WLDUSDT 4h
from listing; BTCUSD_PERP, ETHUSD_PERP 8h; any other perpetual 8h; delivery contracts none.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR = 3_600_000
MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _seed(text: str) -> int:
    h = 1469598103934665603
    for ch in text.encode():
        h = ((h ^ ch) * 1099511628211) & MASK
    return h


@dataclass(frozen=True)
class Settlement:
    symbol: str  # market id
    boundary: int  # ms, the interval boundary
    funding_time: int  # boundary + 0..15 ms
    rate: str  # "0.00010000"
    interval_hours: int


def default_schedules(now: int) -> dict[str, list[tuple[int, int]]]:
    """Per market id, [(from_ms, hours), ...]; ids not listed settle every 8 h."""
    change = now // (8 * HOUR) * (8 * HOUR) - 3 * 24 * HOUR
    return {"BTCUSDT": [(0, 8), (change, 4)], "ETHUSDT": [(0, 8)], "SOLUSDT": [(0, 1)],
            "WLDUSDT": [(0, 4)], "BTCUSD_PERP": [(0, 8)], "ETHUSD_PERP": [(0, 8)]}


def rate_of(symbol: str, boundary: int, seed: int = 7) -> str:
    """The funding rate settled at a boundary: mostly the 0.0001 default, sometimes above it,
    now and then negative; 8 decimals."""
    h = _mix(_seed(symbol) ^ seed ^ (boundary * 0x9E3779B97F4A7C15 & MASK))
    kind = h % 10
    if kind < 5:
        units = 10_000  # 0.00010000, the usual clamp
    elif kind < 8:
        units = 10_000 + (h >> 8) % 40_000
    else:
        units = -((h >> 8) % 30_000)
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // 100_000_000}.{units % 100_000_000:08d}"


def jitter_of(symbol: str, boundary: int, seed: int = 7) -> int:
    return _mix(_seed(symbol) ^ seed ^ 0x5BD1E995 ^ boundary) % 16


class FundingModel:
    """Settlements of the perpetuals of a SimConfig (delivery contracts have none)."""

    def __init__(self, config, now: int) -> None:
        self.config = config
        self.schedules = dict(default_schedules(now))
        self.schedules.update(getattr(config, "funding_schedules", None) or {})

    def _spec(self, family: str, symbol: str):
        spec = self.config.future(family, symbol)
        if spec is None or spec.delivery is not None:
            return None
        return spec

    def schedule(self, symbol: str) -> list[tuple[int, int]]:
        return self.schedules.get(symbol, [(0, 8)])

    def interval_at(self, symbol: str, t: int) -> int:
        """The interval (hours) of the period that ends at the first boundary after t."""
        nxt = self.next_boundary(symbol, t)
        return self._interval_of_boundary(symbol, nxt)

    def _interval_of_boundary(self, symbol: str, b: int) -> int:
        """A boundary b closes a period of the interval whose entry started before b."""
        sched = self.schedule(symbol)
        hours = sched[0][1]
        for start, h in sched:
            if start < b:
                hours = h
        return hours

    def boundaries(self, symbol: str, onboard: int, start: int, end: int) -> list[int]:
        """Settlement boundaries b with start <= b <= end (and b > onboard), ascending."""
        sched = self.schedule(symbol)
        out = []
        lo = max(start, onboard + 1)
        for i, (s_from, hours) in enumerate(sched):
            step = hours * HOUR
            # boundaries of this entry: in (s_from, next_from]; the first entry from the start
            seg_lo = lo if i == 0 else max(lo, s_from + 1)
            seg_hi = end if i + 1 == len(sched) else min(end, sched[i + 1][0])
            b = -(-seg_lo // step) * step
            while b <= seg_hi:
                out.append(b)
                b += step
        return sorted(set(out))

    def next_boundary(self, symbol: str, t: int) -> int:
        """The first settlement boundary after t (strictly)."""
        return self.boundaries(symbol, -1, t + 1, t + 9 * HOUR)[0]

    def settlements(self, family: str, symbol: str, start: int, end: int) -> list[Settlement]:
        """Settlements with fundingTime in [start, end] (both inclusive), ascending."""
        spec = self._spec(family, symbol)
        if spec is None:
            return []
        seed = self.config.seed
        out = []
        for b in self.boundaries(symbol, spec.onboard, start - 16, end):
            ft = b + jitter_of(symbol, b, seed)
            if start <= ft <= end:
                out.append(Settlement(symbol, b, ft, rate_of(symbol, b, seed),
                                      self._interval_of_boundary(symbol, b)))
        return out

    def current(self, family: str, symbol: str, now: int) -> tuple[str, int] | None:
        """(the rate the next settlement will have, the next funding time) as premiumIndex and
        the markPrice stream show them; None for a delivery contract or an unknown symbol."""
        spec = self._spec(family, symbol)
        if spec is None:
            return None
        nxt = self.next_boundary(symbol, max(now, spec.onboard))
        return rate_of(symbol, nxt, self.config.seed), nxt
