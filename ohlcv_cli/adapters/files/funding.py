"""Funding settlements as Arrow, pandas or polars, and as CSV or Parquet files.

Rates and mark prices arrive as the exchange's decimal strings: float64 by default, exact with
`exact=True` (Decimal objects in pandas; decimal128 in Arrow and polars, with as many decimals
as the values have, 8 at least). funding_time is the recorded time to the millisecond, UTC.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.funding import Settlement

COLUMNS = ("funding_time", "symbol", "rate", "mark_price", "interval_hours", "source")


def _scale(values) -> int:
    return max([8, *(len(v.split(".", 1)[1]) for v in values if v and "." in v)])


def funding_table(rows: Sequence[Settlement], exact: bool) -> pa.Table:
    rates = [r.rate for r in rows]
    marks = [r.mark_price for r in rows]
    if exact:
        kind = pa.decimal128(38, min(_scale([*rates, *marks]), 30))
        rate = pa.array([Decimal(v) for v in rates], kind)
        mark = pa.array([None if v is None else Decimal(v) for v in marks], kind)
    else:
        rate = pc.cast(pa.array(rates, pa.string()), pa.float64())
        mark = pc.cast(pa.array(marks, pa.string()), pa.float64())
    return pa.table({
        "funding_time": pa.array([r.funding_time for r in rows], pa.timestamp("ms", tz="UTC")),
        "symbol": pa.array([r.symbol for r in rows], pa.string()),
        "rate": rate,
        "mark_price": mark,
        "interval_hours": pa.array([r.interval_hours for r in rows], pa.int16()),
        "source": pa.array([r.source for r in rows], pa.string()),
    })


def funding_frame(rows: Sequence[Settlement], exact: bool, output: str):
    table = funding_table(rows, exact)
    if output == "arrow":
        return table
    if output == "polars":
        import polars as pl

        return pl.from_arrow(table)
    import pandas as pd  # noqa: F401  (pyarrow needs it for to_pandas)

    df = table.to_pandas()
    if exact:  # Arrow hands pandas Decimals already; keep the exchange's own digits
        df["rate"] = [Decimal(r.rate) for r in rows]
        df["mark_price"] = [None if r.mark_price is None else Decimal(r.mark_price)
                            for r in rows]
    return df.set_index("funding_time")


def write_funding(rows: Sequence[Settlement], path: str) -> int:
    """CSV (the exchange's strings as stored; `-`: stdout) or Parquet (exact decimals) by the
    file's extension; returns the rows written."""
    if path == "-" or path.endswith(".csv"):
        out = sys.stdout if path == "-" else open(path, "w", encoding="utf-8", newline="")
        try:
            out.write(",".join(COLUMNS) + "\n")
            for r in rows:
                hours = "" if r.interval_hours is None else str(r.interval_hours)
                out.write(f"{r.funding_time},{r.symbol},{r.rate},{r.mark_price or ''},"
                          f"{hours},{r.source}\n")
        finally:
            if out is not sys.stdout:
                out.close()
        return len(rows)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(funding_table(rows, exact=True), path)
        return len(rows)
    raise ConfigError(f"unknown file type {path!r}: use .csv, .parquet or - (stdout)")
