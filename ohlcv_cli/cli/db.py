"""`ohlcv db upgrade` and `ohlcv db current`."""

from __future__ import annotations

import typer

from ohlcv_cli import api
from ohlcv_cli.cli.common import DatabaseOpt, console, settings

app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context, database_url: DatabaseOpt = None) -> None:
    """Create or migrate the schema to the newest revision."""
    r = api.upgrade(settings(ctx, "upgrade", database_url=database_url))
    if r.changed:
        console.print(f"schema at {r.database} upgraded: {r.before or 'empty'} -> {r.after}",
                      markup=False)
    else:
        console.print(f"schema at {r.database} is up to date (revision {r.after})", markup=False)


@app.command()
def current(ctx: typer.Context, database_url: DatabaseOpt = None) -> None:
    """Print the schema revision of the database and whether it is the newest."""
    r = api.db_current(settings(ctx, "db_current", database_url=database_url))
    if r.up_to_date:
        console.print(f"{r.current} (head)")
    else:
        console.print(f"{r.current or 'none'} (head is {r.head}): run `ohlcv db upgrade`",
                      markup=False)
