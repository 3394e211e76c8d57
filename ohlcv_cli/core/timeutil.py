"""Conversions between ISO strings, datetimes and epoch milliseconds (always UTC)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ohlcv_cli.core.errors import ConfigError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def ms_to_dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def dt_to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_iso(text: str, what: str = "time") -> int:
    """Parse an ISO 8601 date or datetime; naive values are UTC."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"invalid {what} {text!r}: use ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00:00Z"
        ) from None
    return dt_to_ms(dt)


def iso(ms: int) -> str:
    return ms_to_dt(ms).strftime("%Y-%m-%d %H:%M:%S")


def to_ms(value, what: str = "time") -> int | None:
    """None, epoch milliseconds, an ISO 8601 string or a datetime (naive = UTC) as epoch ms. A
    bool is refused (it is an int to Python, never a time to a caller)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"invalid {what} {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_iso(value, what)
    if isinstance(value, datetime):
        return dt_to_ms(value)
    raise ConfigError(f"invalid {what} {value!r}: use ISO 8601, a datetime or epoch ms")
