"""Funding settlements and the rule that says which ones were due (pure: no I/O).

A perpetual settles funding every `interval` hours (1h, 2h, 4h or 8h at Binance), and the
interval changes over time (many symbols moved off 8h in 2025). Binance records each settlement
with a `fundingTime` that trails the hour boundary by a few milliseconds (08:00:00.011Z); it is
stored exactly as sent, and matched to its boundary with a tolerance of TOLERANCE_MS.

Which settlements were due is read from two sources, never from a fixed 8h grid:
- the past: the spacing of the stored settlements themselves. Between two stored settlements
  the interval in force is the smallest spacing among their neighbours (a missing settlement
  doubles one spacing, never its neighbours'), so a symbol that moved from 8h to 4h shows no
  false gap at the change, and a spacing wider than both sides' intervals is a gap;
- the present: the interval Binance gives now (`fundingInfo`, 8h when a symbol is not listed
  there), for the time after the newest stored settlement and for a symbol with none stored.
Nothing is due at or before a symbol's onboard time (a symbol listed mid-window).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

HOUR_MS = 3_600_000
MAX_INTERVAL_MS = 8 * HOUR_MS  # Binance's longest funding interval
DEFAULT_INTERVAL_HOURS = 8  # fundingInfo lists only the symbols whose interval was adjusted
INTERVAL_HOURS = (1, 2, 4, 8)
# How far a recorded fundingTime may trail (or lead) its hour boundary and still be that
# boundary's settlement. Real values trail by a few ms (.002Z, .010Z, .011Z); a minute is far
# above that and far below the shortest interval (1h), so it never joins two settlements.
TOLERANCE_MS = 60_000
# Context read before a checked window so that its first settlements have neighbours.
CONTEXT_MS = 4 * MAX_INTERVAL_MS
SOURCES = ("archive", "rest", "stream", "repair")


@dataclass(frozen=True)
class Settlement:
    """One funding settlement, with Binance's strings untouched."""

    exchange: str
    symbol: str  # ccxt unified (BTC/USDT:USDT)
    funding_time: int  # epoch ms exactly as sent
    rate: str
    mark_price: str | None = None  # COIN-M REST and the archive give none
    interval_hours: int | None = None
    source: str = "rest"

    @property
    def boundary(self) -> int | None:
        return boundary_of(self.funding_time)


def boundary_of(t: int) -> int | None:
    """The hour boundary a recorded funding time belongs to, or None when it is more than
    TOLERANCE_MS away from every boundary (not a regular settlement)."""
    b = (t + HOUR_MS // 2) // HOUR_MS * HOUR_MS
    return b if abs(t - b) <= TOLERANCE_MS else None


def interval_of(spacing_ms: int) -> int | None:
    """The funding interval (hours) a spacing between two settlements shows, if it is one."""
    hours, rest = divmod(spacing_ms, HOUR_MS)
    return hours if rest == 0 and hours in INTERVAL_HOURS else None


def boundaries(times: Iterable[int]) -> list[int]:
    """The distinct boundaries of the given funding times, ascending (off-grid times left out)."""
    return sorted({b for b in map(boundary_of, times) if b is not None})


def _near(spacings: Sequence[int], lo: int, hi: int) -> int | None:
    window = spacings[max(0, lo):max(0, hi)]
    return min(min(window), MAX_INTERVAL_MS) if window else None


def due(times: Iterable[int], start: int, end: int, current_hours: int,
        onboard: int | None = None) -> list[int]:
    """The boundaries in [start, end) at which a settlement was due, given the recorded funding
    times of the symbol (include some before `start`, CONTEXT_MS, so that the first ones have
    neighbours), the interval in force now and the symbol's onboard time (nothing due at or
    before it). Settlements stored are always due; the others follow the rule of the module."""
    return _rule(times, start, end, current_hours, onboard)[0]


def _steps(a: int, b: int, step: int, out: set[int]) -> None:
    t = a + step
    while t < b:
        out.add(t)
        t += step


def _rule(times: Iterable[int], start: int, end: int, current_hours: int,
          onboard: int | None) -> tuple[list[int], list[tuple[int, int]]]:
    """(the due boundaries of [start, end), the spans (a, b) between which some are missing:
    a repair asks the exchange for all of such a span, not only for the boundaries counted)."""
    current = min(current_hours * HOUR_MS, MAX_INTERVAL_MS)
    bs = boundaries(times)
    lo = start if onboard is None else max(start, onboard + 1)
    out: set[int] = set()
    spans: list[tuple[int, int]] = []
    if not bs:
        first = -(-lo // current) * current  # aligned to the interval, as Binance's grid is
        _steps(first - current, end, current, out)
        return sorted(t for t in out if lo <= t < end), [(lo, end)]
    spacings = [b - a for a, b in zip(bs, bs[1:])]
    # before the first stored settlement: the interval of the ones after it, stepping back
    head = _near(spacings, 0, 3) or current
    t = bs[0] - head
    while t >= lo:
        out.add(t)
        t -= head
    if bs[0] - head >= lo:
        spans.append((lo, bs[0]))
    for i, s in enumerate(spacings):
        right = _near(spacings, i + 1, i + 4) or current
        left = _near(spacings, i - 3, i) or right
        if s > max(left, right):  # wider than both sides' interval: settlements are missing
            # the same interval on both sides: every step of it; a change next to the gap: the
            # wider one, the fewest settlements that can be missing (the span is fetched whole)
            _steps(bs[i], bs[i + 1], left if left == right else max(left, right), out)
            spans.append((bs[i], bs[i + 1]))
    # after the newest: the interval Binance gives now
    if bs[-1] + current < end:
        _steps(bs[-1], end, current, out)
        spans.append((bs[-1], end))
    out.update(bs)
    inside = [(a, b) for a, b in spans if b > lo and a < end]
    return sorted(t for t in out if lo <= t < end), inside


@dataclass
class FundingGaps:
    """The due rule's answer for one symbol and window."""

    symbol: str
    start: int
    end: int
    due: int  # settlements due in the window
    stored: int  # settlements stored in the window (on their boundaries)
    missing: list[int] = field(default_factory=list)  # due boundaries with none stored
    irregular: int = 0  # stored times that are on no boundary (reported, not used)
    # (a, b): missing settlements lie strictly between these boundaries (a repair fetches them)
    spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def coverage(self) -> float:
        """Percentage of the due settlements that are stored."""
        return 100.0 if not self.due else 100.0 * (self.due - len(self.missing)) / self.due


def find_gaps(symbol: str, times: Sequence[int], start: int, end: int, current_hours: int,
              onboard: int | None = None) -> FundingGaps:
    """Which due settlements of [start, end) have none stored (times: the stored funding times,
    with CONTEXT_MS before `start` where there are some)."""
    expected, spans = _rule(times, start, end, current_hours, onboard)
    have = {b for b in boundaries(times) if start <= b < end}
    irregular = sum(1 for t in times if start <= t < end and boundary_of(t) is None)
    missing = [b for b in expected if b not in have]
    return FundingGaps(symbol, start, end, len(expected), len(have), missing, irregular,
                       spans if missing else [])


def missing_ranges(missing: Sequence[int], join_ms: int = MAX_INTERVAL_MS) -> list[tuple[int, int]]:
    """Missing boundaries grouped into ranges (first, last) to fetch; boundaries no more than
    `join_ms` apart share one range."""
    out: list[tuple[int, int]] = []
    for b in sorted(missing):
        if out and b - out[-1][1] <= join_ms:
            out[-1] = (out[-1][0], b)
        else:
            out.append((b, b))
    return out


def with_intervals(rows: Sequence[Settlement], previous: int | None = None,
                   current_hours: int | None = None) -> list[Settlement]:
    """Rows (ascending) with interval_hours filled where they lack one: the spacing from the
    previous settlement (`previous`: the newest stored before the first row) when that spacing
    is an interval; the newest row, if still unknown, gets the interval Binance gives now."""
    out: list[Settlement] = []
    before = None if previous is None else boundary_of(previous)
    for r in rows:
        b = boundary_of(r.funding_time)
        hours = r.interval_hours
        if hours is None and b is not None and before is not None:
            hours = interval_of(b - before)
        out.append(r if hours == r.interval_hours else replace(r, interval_hours=hours))
        before = b if b is not None else before
    if out and out[-1].interval_hours is None and current_hours is not None:
        out[-1] = replace(out[-1], interval_hours=current_hours)
    return out


def check_interval_hours(value) -> int:
    """fundingIntervalHours from an answer, as an int; ValueError for anything else."""
    hours = int(value)
    if hours <= 0 or hours > 24 or str(value).strip() not in (str(hours), f"{hours}.0"):
        raise ValueError(f"not a funding interval: {value!r}")
    return hours
