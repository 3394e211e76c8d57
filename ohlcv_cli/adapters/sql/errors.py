"""SQLAlchemy's, psycopg's and sqlite3's exceptions translated, in one place, into the project's
errors: the one error boundary of every SQL adapter.

`translate(engine)` wraps every statement of the SQL adapters (schema, candles, gaps, archive
writer, reader), the raw psycopg COPY paths included (they bypass SQLAlchemy, so its wrappers
never see their errors), always `raise ... from exc` so that `--log-level DEBUG` shows the cause.
It tells apart what the caller must handle differently:

- StorageRejected: the database refused these rows (SQLSTATE class 22 "data exception": a value
  too long, out of range, a numeric overflow; class 23: a constraint), or a value could not even be
  converted for it (a year after 9999, an integer SQLite cannot hold). Retrying the same rows fails
  again; the consumer sets them apart.
- StorageUnavailable: anything else (no connection, shut down, out of resources, a lock timeout):
  the same rows may succeed later.
- With `unreadable=`, the errors PostgreSQL raises for input it cannot parse (a COPY of an
  archive file) become the caller's own error instead (ArchiveRejected).
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Callable, Iterator

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from ohlcv_cli.core.errors import OhlcvError, StorageRejected, StorageUnavailable
from ohlcv_cli.core.settings import redact_url

_REJECTED_CLASSES = ("22", "23")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (of the driver's exception, for a wrapped one)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _where(engine: Engine) -> str:
    return redact_url(engine.url.render_as_string(hide_password=False))


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def classify(exc: BaseException, engine: Engine) -> StorageRejected | StorageUnavailable:
    """The project's error for a database or conversion exception (its cause is kept by the
    caller's `raise ... from exc`)."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    where = _where(engine)
    state = _sqlstate(orig)
    if isinstance(orig, (OverflowError, ValueError)) and not isinstance(orig, psycopg.Error):
        return StorageRejected(f"database at {where} cannot hold a value: {first_line(orig)}")
    if state is not None and state[:2] in _REJECTED_CLASSES:
        return StorageRejected(f"database at {where} rejected the rows: {first_line(orig)}")
    if state is None and isinstance(orig, (psycopg.DataError, psycopg.IntegrityError)):
        return StorageRejected(f"database at {where} rejected the rows: {first_line(orig)}")
    if isinstance(orig, (sqlite3.IntegrityError, sqlite3.DataError)):
        return StorageRejected(f"database at {where} rejected the rows: {first_line(orig)}")
    return StorageUnavailable(f"database error at {where}: {first_line(orig)}")


def _unreadable_input(exc: BaseException) -> bool:
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    return isinstance(orig, (psycopg.errors.DataError, psycopg.errors.CardinalityViolation))


@contextmanager
def translate(engine: Engine, *, values: bool = False,
              unreadable: Callable[[str], OhlcvError] | None = None) -> Iterator[None]:
    """Raise StorageRejected / StorageUnavailable from any database error in the block.

    `values=True` (the write paths) also counts Python's OverflowError and ValueError as a
    rejected value: they come from converting a row for the driver. `unreadable(message)`
    builds the error for input the server cannot parse (data exceptions of a COPY)."""
    try:
        yield
    except (sa_exc.SQLAlchemyError, psycopg.Error, sqlite3.Error) as exc:
        if unreadable is not None and _unreadable_input(exc):
            raise unreadable(first_line(exc)) from exc
        raise classify(exc, engine) from exc
    except (OverflowError, ValueError) as exc:
        if not values:
            raise
        raise classify(exc, engine) from exc
