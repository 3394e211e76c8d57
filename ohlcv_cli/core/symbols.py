"""ccxt symbol syntax (BASE/QUOTE) checks that need no exchange."""

from __future__ import annotations

import re

from ohlcv_cli.core.errors import BadSymbol

_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")
# what a stored candle's symbol must look like: the form SYMBOLS accepts, exactly (no stray case)
CANONICAL_SYMBOL = re.compile(r"[A-Z0-9]{1,20}/[A-Z0-9]{1,20}")


def parse_symbols(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split a comma list, upper-case, de-duplicate keeping order, check BASE/QUOTE form."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        s = item.strip().upper()
        if not s:
            continue
        if not _SYMBOL.match(s):
            raise BadSymbol(
                f"malformed symbol {item.strip()!r}: use the ccxt form BASE/QUOTE, e.g. BTC/USDT"
            )
        if s not in out:
            out.append(s)
    if not out:
        raise BadSymbol("no symbols given: set SYMBOLS or pass --symbols, e.g. BTC/USDT,ETH/USDT")
    return out
