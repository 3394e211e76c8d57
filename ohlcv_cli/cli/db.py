"""`ohlcv db upgrade` and `ohlcv db current`."""

from __future__ import annotations

import typer

from ohlcv_cli.cli.common import DatabaseOpt, console, make_engine_for, settings
from ohlcv_cli.core.settings import redact_url

app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context, database_url: DatabaseOpt = None) -> None:
    """Create or migrate the schema to the newest revision."""
    from ohlcv_cli.adapters.sql_schema import upgrade as run_upgrade

    s = settings(ctx, database_url=database_url)
    before, after = run_upgrade(make_engine_for(s))
    where = redact_url(s.db_url())
    if before == after:
        console.print(f"schema at {where} is up to date (revision {after})", markup=False)
    else:
        console.print(f"schema at {where} upgraded: {before or 'empty'} -> {after}", markup=False)


@app.command()
def current(ctx: typer.Context, database_url: DatabaseOpt = None) -> None:
    """Print the schema revision of the database and whether it is the newest."""
    from ohlcv_cli.adapters.sql_schema import current_revision, head_revision

    s = settings(ctx, database_url=database_url)
    rev, head = current_revision(make_engine_for(s)), head_revision()
    if rev == head:
        console.print(f"{rev} (head)")
    elif rev is None:
        console.print(f"none (head is {head}): run `ohlcv db upgrade`", markup=False)
    else:
        console.print(f"{rev} (head is {head}): run `ohlcv db upgrade`", markup=False)
