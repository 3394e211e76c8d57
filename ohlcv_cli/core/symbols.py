"""Symbols as users write them: the ccxt form BASE/QUOTE in any case, the exchange's id form
(BTCUSDT), or a regular expression matched against the exchange's (or the store's) symbols.

`parse_symbols` needs no exchange: it normalizes the ccxt form and keeps the other two as they
are; `resolve_symbols` turns them into ccxt symbols once the symbols on offer are known.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from ohlcv_cli.core.errors import BadSymbol

# ccxt's unified form: BASE/QUOTE (spot), BASE/QUOTE:SETTLE (perpetual), BASE/QUOTE:SETTLE-YYMMDD
# (delivery); see core/markets.py for what each means at Binance
_FORM = r"[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(?::[A-Z0-9]{1,20}(?:-[0-9]{6})?)?"
_SYMBOL = re.compile(f"^{_FORM}$")
# what a stored candle's symbol must look like: the form SYMBOLS accepts, exactly (no stray case)
CANONICAL_SYMBOL = re.compile(_FORM)
# the exchange's own id of a market, e.g. BTCUSDT, BTCUSDT_261225, BTCUSD_PERP
_MARKET_ID = re.compile(r"^[A-Z0-9]{2,40}(?:_[A-Z0-9]{4,6})?$")
# a regular expression has at least one of these; `bad sym` or `BTC-USDT` is a typo, not a pattern
_REGEX_CHARS = re.compile(r"[.*+?\[\](){}|^$\\]")


def is_symbol(token: str) -> bool:
    """A ccxt symbol BASE/QUOTE, already normalized."""
    return _SYMBOL.match(token) is not None


def is_pattern(token: str) -> bool:
    return not is_symbol(token) and _REGEX_CHARS.search(token) is not None


def normalize_symbol(text: str) -> str:
    """`btc/usdt` -> `BTC/USDT`; an id form or a pattern is returned as given (stripped)."""
    s = text.strip()
    return s.upper() if _SYMBOL.match(s.upper()) or _MARKET_ID.match(s.upper()) else s


def parse_symbols(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split a comma list; each item a ccxt symbol (upper-cased), an exchange id (upper-cased)
    or a regular expression (kept as written, matched case-insensitively later); de-duplicated
    in order. A malformed item or an empty list is a BadSymbol."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        s = normalize_symbol(item)
        if not s:
            continue
        if not (is_symbol(s) or _MARKET_ID.match(s)):
            if not is_pattern(s):
                raise BadSymbol(f"malformed symbol {item.strip()!r}: use the ccxt form "
                                "BASE/QUOTE, e.g. BTC/USDT")
            try:
                re.compile(s)
            except re.error as exc:
                raise BadSymbol(f"malformed symbol pattern {s!r}: {exc}") from None
        if s not in out:
            out.append(s)
    if not out:
        raise BadSymbol("no symbols given: set SYMBOLS or pass --symbols, e.g. BTC/USDT,ETH/USDT")
    return out


def needs_resolving(tokens: Iterable[str]) -> bool:
    """Whether some item is an id form or a pattern, i.e. needs the symbols on offer."""
    return any(not is_symbol(t) for t in tokens)


def select(pattern: str, available: Iterable[str]) -> list[str]:
    """The symbols the pattern matches in full, case-insensitively, sorted."""
    try:
        rx = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise BadSymbol(f"malformed symbol pattern {pattern!r}: {exc}") from None
    return sorted(s for s in available if rx.fullmatch(s))


def resolve_symbols(tokens: Iterable[str], available: Iterable[str],
                    ids: Mapping[str, str] | None = None, where: str = "the exchange") -> list[str]:
    """ccxt symbols for parsed items: a ccxt symbol stays (whether it is on offer is checked
    where it is used); an id form becomes the one symbol whose id it is (`ids`: id -> symbol;
    without it, the one symbol spelled so without its slash); a pattern becomes every symbol it
    matches. An id that is unknown or ambiguous, or a pattern selecting nothing, is a BadSymbol
    naming `where`."""
    available = sorted(set(available))
    out: list[str] = []
    for t in tokens:
        if is_symbol(t):
            found = [t]
        elif _MARKET_ID.match(t) and not is_pattern(t):
            if ids is not None:
                found = [ids[t]] if t in ids else []
            else:
                found = [s for s in available if s.replace("/", "") == t]
            if len(found) > 1:
                raise BadSymbol(f"symbol {t!r} is ambiguous in {where}: "
                                f"{', '.join(found)}; use the BASE/QUOTE form")
            if not found:
                raise BadSymbol(f"unknown symbol {t!r}: {where} has no market with this id; "
                                "use the ccxt form BASE/QUOTE, e.g. BTC/USDT")
        else:
            found = select(t, available)
            if not found:
                raise BadSymbol(f"symbol pattern {t!r} selects no symbol of {where}")
        out.extend(s for s in found if s not in out)
    return out
