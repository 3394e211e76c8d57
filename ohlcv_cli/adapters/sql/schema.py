"""Engine creation and the Alembic schema: upgrade, current revision, and the up-to-date check."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from ohlcv_cli.adapters.sql.errors import first_line, translate
from ohlcv_cli.core.errors import ConfigError, SchemaOutOfDate, StorageError
from ohlcv_cli.core.settings import redact_url


def make_engine(url: str, create: bool = True) -> Engine:
    """An engine for the URL; a malformed URL or a missing driver is a ConfigError. `create`
    False: a SQLite database file that does not exist is a StorageError naming its path
    (SQLite would create an empty one on the first connection)."""
    try:
        if url.startswith("sqlite"):
            path = sa.engine.make_url(url).database
            if not create and path and path != ":memory:" and not path.startswith("file:") \
                    and not os.path.exists(path):
                raise StorageError(f"no database file {os.path.abspath(path)}: `ohlcv db "
                                   "upgrade` or `ohlcv backfill` creates it (or set DATABASE_URL)")
            engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

            @sa.event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return engine
        return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ValueError) as exc:
        raise ConfigError(f"invalid database URL {redact_url(url)!r}: {first_line(exc)}") from exc
    except ImportError as exc:  # the dialect's driver is not installed
        module = (exc.name or "").split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module or "its driver")
        raise ConfigError(f"database URL {redact_url(url)!r} needs the Python package "
                          f"{package!r}, which is not installed: pip install {package}") from exc


# Driver modules whose package is named otherwise on PyPI.
_DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "psycopg2": "psycopg2-binary",
                    "cx_Oracle": "cx-Oracle", "pyodbc": "pyodbc", "pymssql": "pymssql",
                    "asyncpg": "asyncpg", "mariadb": "mariadb", "oracledb": "oracledb"}


def _script_location() -> str:
    """The checkout's alembic/ when run from source, else the copy packaged in the wheel."""
    checkout = Path(__file__).resolve().parents[3] / "alembic"
    if (checkout / "env.py").is_file():
        return str(checkout)
    return str(Path(list(importlib.import_module("ohlcv_cli.migrations").__path__)[0]))


def _config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with translate(engine), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Run the migrations; returns (revision before, revision after)."""
    before = current_revision(engine)
    with translate(engine), engine.begin() as conn:
        command.upgrade(_config(conn), revision)
    return before, current_revision(engine)


def ensure_current(engine: Engine, auto_upgrade: bool = False) -> None:
    """Stop with one clear line if the schema is missing or old (or upgrade it, if allowed)."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if auto_upgrade:
        upgrade(engine)
        return
    state = "missing" if current is None else f"at revision {current}, expected {head}"
    raise SchemaOutOfDate(f"database schema is {state}: run `ohlcv db upgrade`")
