"""Candle files: csv, parquet and jsonl writers fed one Arrow chunk at a time (flat memory).

Values are written exactly: csv and jsonl carry the stored decimal text, Parquet decimal128(38, 8)
columns; open_time is ISO 8601 UTC text in csv and jsonl, a UTC timestamp in Parquet.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ohlcv_cli.adapters.files.frames import DECIMALS, typed
from ohlcv_cli.core.errors import ConfigError

FORMATS = ("csv", "parquet", "jsonl")


def safe_name(symbol: str) -> str:
    return symbol.replace("/", "-")


def targets(fmt: str, out: str, symbols: Sequence[str], per_symbol: bool
            ) -> list[tuple[str, list[str]]]:
    """(path or "-", symbols written there), each path checked writable before anything is."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = str(out)
    if not per_symbol:
        if out != "-":
            _check_writable(Path(out))
        return [(out, list(symbols))]
    if out == "-":
        raise ConfigError("one file per symbol needs --out DIRECTORY (or a path with {symbol})")
    result = []
    for s in symbols:
        if "{symbol}" in out:
            path = Path(out.replace("{symbol}", safe_name(s)))
        else:
            path = Path(out) / f"{safe_name(s)}.{fmt}"
        _check_writable(path)
        result.append((str(path), [s]))
    return result


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a directory")
    if not parent.is_dir():
        raise ConfigError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write {path}: permission denied")


def _iso(col: pa.ChunkedArray) -> pa.ChunkedArray:
    # open times are whole seconds (1s is the finest interval)
    ts = pc.cast(pc.cast(col, pa.timestamp("ms", tz="UTC")), pa.timestamp("s", tz="UTC"),
                 safe=False)
    return pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ")


class _CsvWriter:
    def __init__(self, stream, with_symbol: bool) -> None:
        self.stream, self.with_symbol, self.writer = stream, with_symbol, None

    def write(self, table: pa.Table, symbol: str) -> None:
        table = table.set_column(0, "open_time", _iso(table.column("open_time")))
        if self.with_symbol:
            table = table.add_column(0, "symbol", pa.array([symbol] * table.num_rows))
        if self.writer is None:
            self.writer = pacsv.CSVWriter(self.stream, table.schema, write_options=pacsv.WriteOptions(
                quoting_style="needed"))
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _JsonlWriter:
    def __init__(self, stream, with_symbol: bool) -> None:
        self.stream, self.with_symbol = stream, with_symbol

    def write(self, table: pa.Table, symbol: str) -> None:
        times = _iso(table.column("open_time")).to_pylist()
        cols = {n: table.column(n).to_pylist() for n in table.column_names if n != "open_time"}
        names = list(cols)
        lines = []
        for i, t in enumerate(times):
            row = {"symbol": symbol} if self.with_symbol else {}
            row["open_time"] = t
            for n in names:
                row[n] = cols[n][i]
            lines.append(orjson.dumps(row))
        self.stream.write(b"\n".join(lines) + b"\n")

    def close(self) -> None:
        pass


class _ParquetWriter:
    def __init__(self, stream, with_symbol: bool) -> None:
        self.stream, self.with_symbol, self.writer = stream, with_symbol, None

    def write(self, table: pa.Table, symbol: str) -> None:
        table = typed(table, exact=True, symbol=symbol if self.with_symbol else None)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.stream, table.schema, compression="zstd")
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is None:  # nothing written: still a valid, empty file
            from ohlcv_cli.adapters.sql.reader import empty_table

            self.write(empty_table(), "")
        self.writer.close()


_WRITERS = {"csv": _CsvWriter, "jsonl": _JsonlWriter, "parquet": _ParquetWriter}


@contextmanager
def open_writer(fmt: str, target: str, with_symbol: bool = True) -> Iterator:
    try:
        stream = sys.stdout.buffer if target == "-" else open(target, "wb")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror}") from None
    writer = _WRITERS[fmt](stream, with_symbol)
    whole = False
    try:
        yield writer
        writer.close()
        whole = True
    finally:
        if target == "-":
            stream.flush()
        else:
            stream.close()
            if not whole:  # interrupted (a signal) or failed: leave no half-written file
                Path(target).unlink(missing_ok=True)


__all__ = ["FORMATS", "DECIMALS", "open_writer", "targets", "safe_name"]
