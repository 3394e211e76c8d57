"""Arrow tables of candles (decimal text, as read from the store) as the frames users ask for:
pandas (float64 or exact Decimal columns) or polars (Float64 or Decimal), indexed or sorted by
the UTC open time. The only module that imports pandas or polars."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ohlcv_cli.core.errors import StorageError

DECIMALS = ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_base_volume",
            "taker_buy_quote_volume")
# Binance renders every spot price and volume with 8 decimals; 38 digits leave 30 before them.
EXACT = pa.decimal128(38, 8)


def typed(table: pa.Table, exact: bool, symbol: str | None = None,
          price: str | None = None) -> pa.Table:
    """open_time as a UTC timestamp, values as float64 or decimal128(38, 8), optional symbol
    and price series columns (first: symbol, price)."""
    cols, fields = [], []
    for f in table.schema:
        col = table.column(f.name)
        if f.name == "open_time":
            col = pc.cast(col, pa.timestamp("ms", tz="UTC"))
        elif f.name in DECIMALS:
            try:
                col = pc.cast(col, EXACT if exact else pa.float64())
            except pa.ArrowInvalid as exc:
                raise StorageError(f"{f.name}: a stored value has more than 8 decimals "
                                   f"({exc}); read it with exact=False") from None
        cols.append(col)
        fields.append(pa.field(f.name, col.type))
    if price is not None:
        cols.insert(0, pa.array([price] * table.num_rows, pa.string()))
        fields.insert(0, pa.field("price", pa.string()))
    if symbol is not None:
        cols.insert(0, pa.array([symbol] * table.num_rows, pa.string()))
        fields.insert(0, pa.field("symbol", pa.string()))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def concat(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        from ohlcv_cli.adapters.sql.reader import empty_table

        return empty_table()
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def to_pandas(table: pa.Table, exact: bool, attrs: dict | None = None):
    """A DataFrame indexed by open_time (UTC); Decimal objects when exact. `attrs` become the
    frame's attrs, "incomplete" (bucket open times, ms) as UTC timestamps."""
    import pandas as pd

    df = typed(table, exact).to_pandas().set_index("open_time")
    for key, value in (attrs or {}).items():
        if key == "incomplete":
            value = [pd.Timestamp(t, unit="ms", tz="UTC") for t in value]
        df.attrs[key] = value
    return df


def to_polars(table: pa.Table, exact: bool):
    import polars as pl

    return pl.from_arrow(typed(table, exact))
