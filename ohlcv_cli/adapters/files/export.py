"""Candle files: csv, parquet, jsonl and feather writers fed one Arrow chunk at a time (flat
memory), and freqtrade's data layout.

Values are written exactly by default: csv and jsonl carry the stored decimal text, Parquet and
feather decimal128(38, 8) columns; with decimals="float", float64 (numbers in jsonl). open_time
is ISO 8601 UTC text in csv and jsonl, a UTC timestamp in Parquet and feather.

A price series other than trade (a contract's mark, index or premium candles) is named in the
file: a `price` column after `symbol` in a file of several symbols, `-mark` (etc.) in the name of
a per-symbol file, and freqtrade's own candle-type names in its layout
(`binance/futures/BTC_USDT_USDT-1h-mark.feather`).
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
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ohlcv_cli.adapters.files.frames import DECIMALS, typed
from ohlcv_cli.core.errors import ConfigError

FORMATS = ("csv", "parquet", "jsonl", "feather")
# Where the extension says nothing (stdout, a directory of per-symbol files): readable anywhere.
DEFAULT_FORMAT = "csv"
DECIMAL_MODES = ("exact", "float")
LAYOUTS = ("freqtrade",)
# freqtrade's OHLCV columns (freqtrade.constants.DEFAULT_DATAFRAME_COLUMNS)
FREQTRADE_COLUMNS = ("date", "open", "high", "low", "close", "volume")
# freqtrade's CandleType of each price series of a contract (a spot market's trades: "spot")
FREQTRADE_CANDLE_TYPES = {"trade": "futures", "mark": "mark", "index": "index",
                          "premium": "premiumIndex"}
# the characters freqtrade.misc.pair_to_filename replaces with "_"
_FREQTRADE_UNSAFE = ("/", " ", ".", "@", "$", "+", ":")


def safe_name(symbol: str, price: str = "trade") -> str:
    """A file name for the symbol's series: BTC-USDT, BTC-USDT_USDT, BTC-USDT_USDT-mark."""
    name = symbol.replace("/", "-").replace(":", "_")
    return name if price == "trade" else f"{name}-{price}"


def freqtrade_name(symbol: str, timeframe: str, price: str = "trade") -> str:
    """freqtrade's file of a pair's candles, relative to its exchange directory (its
    IDataHandler._pair_data_filename): BTC_USDT-1h.feather for spot,
    futures/BTC_USDT_USDT-1h-futures.feather and futures/BTC_USDT_USDT-1h-mark.feather for a
    contract's trade and mark candles."""
    pair = symbol
    for ch in _FREQTRADE_UNSAFE:
        pair = pair.replace(ch, "_")
    if ":" not in symbol:  # a spot market
        if price != "trade":
            raise ConfigError(f"{symbol} is a spot market: it has only trade candles, not {price}")
        return f"{pair}-{timeframe}.feather"
    return f"futures/{pair}-{timeframe}-{FREQTRADE_CANDLE_TYPES[price]}.feather"


def check_decimals(decimals: str) -> None:
    if decimals not in DECIMAL_MODES:
        raise ConfigError(f"unknown decimals {decimals!r}; use {' or '.join(DECIMAL_MODES)}")


def resolve_format(fmt: str | None, out: str, layout: str | None = None) -> str:
    """The format asked for, else the one the file's extension names, else DEFAULT_FORMAT where
    there is no extension (stdout, a directory); an unknown extension is an error."""
    if layout is not None:
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {layout!r}; use {', '.join(LAYOUTS)}")
        if fmt not in (None, "feather"):
            raise ConfigError(f"--layout {layout} writes feather files, not {fmt}")
        return "feather"
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    out = str(out)
    suffix = "" if out == "-" else Path(out).suffix.lower()
    if not suffix:
        return DEFAULT_FORMAT
    if suffix[1:] in FORMATS:
        return suffix[1:]
    raise ConfigError(f"cannot tell the format of {out} from its extension {suffix}: name it "
                      f"{', '.join('.' + f for f in FORMATS)}, or give --format")


def targets(fmt: str, out: str, symbols: Sequence[str], per_symbol: bool,
            layout: str | None = None, timeframe: str = "", exchange: str = "binance",
            price: str = "trade") -> list[tuple[str, list[str]]]:
    """(path or "-", symbols written there), each path checked writable before anything is.
    Per-symbol file names carry the price series when it is not trade."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = str(out)
    if fmt == "feather" and out == "-" and not per_symbol:
        raise ConfigError("feather is not written to stdout: give --out FILE")
    if layout == "freqtrade":
        return _freqtrade_targets(Path(out), symbols, timeframe, exchange, price)
    if not per_symbol:
        if out != "-":
            _check_writable(Path(out))
        return [(out, list(symbols))]
    if out == "-":
        raise ConfigError("one file per symbol needs --out DIRECTORY (or a path with {symbol})")
    result = []
    for s in symbols:
        if "{symbol}" in out:
            path = Path(out.replace("{symbol}", safe_name(s, price)))
        else:
            path = Path(out) / f"{safe_name(s, price)}.{fmt}"
        _check_writable(path)
        result.append((str(path), [s]))
    return result


def _freqtrade_targets(out: Path, symbols: Sequence[str], timeframe: str, exchange: str,
                       price: str = "trade") -> list[tuple[str, list[str]]]:
    """freqtrade's data directory: <out>/<exchange>/BTC_USDT-1m.feather (spot pairs),
    <out>/<exchange>/futures/BTC_USDT_USDT-1m-futures.feather (-mark, -index, -premiumIndex:
    a contract's other price series)."""
    if str(out) == "-" or not out.is_dir():
        raise ConfigError(f"--layout freqtrade needs --out DIRECTORY (freqtrade's data "
                          f"directory, e.g. user_data/data); {out} is not a directory")
    folder = out / exchange
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"cannot write {folder}: it is not a directory")
    if not folder.exists() and not os.access(out, os.W_OK):
        raise ConfigError(f"cannot write {folder}: permission denied")
    result = []
    for s in symbols:
        path = folder / freqtrade_name(s, timeframe, price)
        if path.parent.exists() and not path.parent.is_dir():
            raise ConfigError(f"cannot write {path.parent}: it is not a directory")
        if path.exists() and not os.access(path, os.W_OK):
            raise ConfigError(f"cannot write {path}: permission denied")
        result.append((str(path), [s]))
    folder.mkdir(exist_ok=True)
    for path, _ in result:
        Path(path).parent.mkdir(exist_ok=True)
    return result


def floats(table: pa.Table) -> pa.Table:
    """The decimal text columns as float64 (open_time and trades unchanged)."""
    for name in DECIMALS:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.cast(table.column(name), pa.float64()))
    return table


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


class _Writer:
    """`price`: the series written; not trade, a file of several symbols gets a price column."""

    def __init__(self, stream, with_symbol: bool, exact: bool = True,
                 price: str = "trade") -> None:
        self.stream, self.with_symbol, self.exact, self.writer = stream, with_symbol, exact, None
        self.price = price if with_symbol and price != "trade" else None


class _CsvWriter(_Writer):
    def write(self, table: pa.Table, symbol: str) -> None:
        if not self.exact:
            table = floats(table)
        table = table.set_column(0, "open_time", _iso(table.column("open_time")))
        if self.price is not None:
            table = table.add_column(0, "price", pa.array([self.price] * table.num_rows))
        if self.with_symbol:
            table = table.add_column(0, "symbol", pa.array([symbol] * table.num_rows))
        if self.writer is None:
            self.writer = pacsv.CSVWriter(self.stream, table.schema, write_options=pacsv.WriteOptions(
                quoting_style="needed"))
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _JsonlWriter(_Writer):
    def write(self, table: pa.Table, symbol: str) -> None:
        if not self.exact:
            table = floats(table)
        times = _iso(table.column("open_time")).to_pylist()
        cols = {n: table.column(n).to_pylist() for n in table.column_names if n != "open_time"}
        names = list(cols)
        lines = []
        for i, t in enumerate(times):
            row = {"symbol": symbol} if self.with_symbol else {}
            if self.price is not None:
                row["price"] = self.price
            row["open_time"] = t
            for n in names:
                row[n] = cols[n][i]
            lines.append(orjson.dumps(row))
        self.stream.write(b"\n".join(lines) + b"\n")

    def close(self) -> None:
        pass


class _ParquetWriter(_Writer):
    def _open(self, schema: pa.Schema):
        return pq.ParquetWriter(self.stream, schema, compression="zstd")

    def write(self, table: pa.Table, symbol: str) -> None:
        table = typed(table, exact=self.exact, symbol=symbol if self.with_symbol else None,
                      price=self.price)
        if self.writer is None:
            self.writer = self._open(table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is None:  # nothing written: still a valid, empty file
            from ohlcv_cli.adapters.sql.reader import empty_table

            self.write(empty_table(), "")
        self.writer.close()


class _FeatherWriter(_ParquetWriter):
    """Feather (Arrow IPC file, version 2), lz4: what pandas.read_feather reads."""

    def _open(self, schema: pa.Schema):
        return ipc.new_file(self.stream, schema,
                            options=ipc.IpcWriteOptions(compression="lz4"))


class _FreqtradeWriter(_FeatherWriter):
    """freqtrade's OHLCV feather file: date (UTC timestamp), open, high, low, close, volume as
    float64, oldest first (what its FeatherDataHandler loads)."""

    def write(self, table: pa.Table, symbol: str) -> None:
        t = typed(table.select(["open_time", *FREQTRADE_COLUMNS[1:]]), exact=False)
        t = t.rename_columns(list(FREQTRADE_COLUMNS))
        if self.writer is None:
            self.writer = self._open(t.schema)
        self.writer.write_table(t)


_WRITERS = {"csv": _CsvWriter, "jsonl": _JsonlWriter, "parquet": _ParquetWriter,
            "feather": _FeatherWriter}


@contextmanager
def open_writer(fmt: str, target: str, with_symbol: bool = True, decimals: str = "exact",
                layout: str | None = None, price: str = "trade") -> Iterator:
    try:
        stream = sys.stdout.buffer if target == "-" else open(target, "wb")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror}") from None
    cls = _FreqtradeWriter if layout == "freqtrade" else _WRITERS[fmt]
    writer = cls(stream, with_symbol, decimals == "exact", price)
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


__all__ = ["FORMATS", "DEFAULT_FORMAT", "DECIMALS", "open_writer", "targets", "safe_name",
           "resolve_format", "freqtrade_name"]
