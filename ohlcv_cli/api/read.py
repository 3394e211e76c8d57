"""Reading the store from Python: candles as pandas (or polars, or Arrow), any timeframe that is
stored or derivable from a finer stored one, in chunks, to files, as pictures.

    from ohlcv_cli import open_store
    store = open_store("postgresql://user@host/db")      # or a Settings, or None: the settings
    df = store.candles("BTC/USDT", "1h", start="2024-01-01", end="2024-02-01")

A composition root like the CLI: it wires the SQL adapters and the file and chart renderers,
each imported on first use, so that importing ohlcv_cli stays cheap.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ohlcv_cli.core.derive import Derivation, bucket_window, empty_buckets, pick_source
from ohlcv_cli.core.errors import BadSymbol, ConfigError
from ohlcv_cli.core.timeframes import Timeframe, parse_timeframe
from ohlcv_cli.core.timeutil import iso, to_ms

log = logging.getLogger(__name__)

OUTPUTS = ("pandas", "polars", "arrow")
DEFAULT_CHUNK = 100_000


@dataclass
class Window:
    """A resolved read: what is asked, what it is built from, and the bounds [start, end)."""

    symbol: str
    timeframe: Timeframe
    source: Timeframe | None  # None: stored natively
    start: int
    end: int


@dataclass
class ExportResult:
    files: list[str] = field(default_factory=list)
    rows: int = 0
    incomplete: dict[str, list[int]] = field(default_factory=dict)  # symbol -> buckets left out
    seconds: float = 0.0


def open_store(url_or_settings: Any = None, exchange: str | None = None) -> "Store":
    """A Store on a database URL (postgresql://, sqlite:///...), a Settings object, or None (the
    settings from the environment and .env). The schema must be current (`ohlcv db upgrade`);
    the embedded SQLite default upgrades itself."""
    from ohlcv_cli.adapters.sql.schema import ensure_current, make_engine
    from ohlcv_cli.core.settings import Settings, load_settings, normalize_db_url

    if isinstance(url_or_settings, Settings):
        s = url_or_settings
    elif url_or_settings is None:
        s = load_settings()
    else:
        s = None
    if s is not None:
        url, auto, exchange = s.db_url(), s.uses_embedded_default(), exchange or s.exchange
    else:
        url, auto = normalize_db_url(str(url_or_settings)), False
    engine = make_engine(url)
    ensure_current(engine, auto_upgrade=auto)
    return Store(engine, exchange or "binance")


class Store:
    def __init__(self, engine, exchange: str = "binance") -> None:
        from ohlcv_cli.adapters.sql.gaps import SqlGapRepository
        from ohlcv_cli.adapters.sql.reader import SqlCandleReader

        self.engine = engine
        self.exchange = exchange
        self.reader = SqlCandleReader(engine)
        self.gaps = SqlGapRepository(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- resolving a read ----------------------------------------------------------------------
    def timeframes(self, symbol: str) -> list[str]:
        """The timeframes stored for the symbol."""
        return self.reader.stored_timeframes(self.exchange, symbol)

    def window(self, symbol: str, timeframe: str = "1m", start: Any = None,
               end: Any = None) -> Window:
        tf = timeframe if isinstance(timeframe, Timeframe) else parse_timeframe(timeframe)
        start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
        if start_ms is not None and end_ms is not None and start_ms >= end_ms:
            raise ConfigError(f"empty window: start {iso(start_ms)} is not before end "
                              f"{iso(end_ms)}")
        stored = self.timeframes(symbol)
        if not stored:
            raise BadSymbol(f"no candles stored for {symbol} ({self.exchange})")
        source = pick_source(tf, stored)
        base = source or tf
        if start_ms is None or end_ms is None:
            first, last = self.reader.bounds(self.exchange, symbol, base.name)
            start_ms = first if start_ms is None else start_ms
            end_ms = last + base.ms if end_ms is None else end_ms
        return Window(symbol, tf, source, start_ms, end_ms)

    # --- chunks of Arrow (decimal text) --------------------------------------------------------
    def _chunks(self, w: Window, chunk_rows: int) -> Iterator[tuple[Any, Derivation | None]]:
        if w.source is None:
            t = w.start
            while t < w.end:
                table = self.reader.native(self.exchange, w.symbol, w.timeframe.name, t, w.end,
                                           chunk_rows)
                if table.num_rows == 0:
                    return
                yield table, None
                if table.num_rows < chunk_rows:
                    return
                t = table.column("open_time")[-1].as_py() + w.timeframe.ms
            return
        lo, hi = bucket_window(w.timeframe, w.start, w.end)
        gaps = self.gaps.exchange_gaps(self.exchange, w.symbol, w.source.name, lo, hi)
        span = max(1, chunk_rows) * w.timeframe.ms
        prev_last = None
        a = lo
        while a < hi:
            b = min(hi, a + span)
            table, incomplete = self.reader.derived(self.exchange, w.symbol, w.timeframe,
                                                    w.source, a, b, gaps)
            present = sorted(table.column("open_time").to_pylist() + incomplete)
            if present:
                head = [prev_last] if prev_last is not None else []
                holes = empty_buckets(w.timeframe, head + present, prev_last or a, b, gaps)
                prev_last = present[-1]
            else:
                holes = []
            d = Derivation(w.timeframe.name, w.source.name, table.num_rows,
                           sorted(incomplete + holes))
            if d.incomplete:
                log.info("%s %s from %s: %d buckets left out as incomplete (first %s)",
                         w.symbol, w.timeframe.name, w.source.name, len(d.incomplete),
                         iso(d.incomplete[0]))
            yield table, d
            a = b

    def arrow_chunks(self, symbol: str, timeframe: str = "1m", start: Any = None,
                     end: Any = None, chunk_rows: int = DEFAULT_CHUNK):
        """(Arrow table with decimal text, Derivation or None) per chunk: for writers."""
        w = self.window(symbol, timeframe, start, end)
        yield from self._chunks(w, chunk_rows)

    # --- frames --------------------------------------------------------------------------------
    def iter_candles(self, symbol: str, timeframe: str = "1m", start: Any = None,
                     end: Any = None, exact: bool = False, output: str = "pandas",
                     chunk_rows: int = DEFAULT_CHUNK) -> Iterator[Any]:
        """Frames of at most chunk_rows candles each, oldest first: for windows too large for
        memory. A derived chunk's `attrs["incomplete"]` (pandas) lists the buckets left out."""
        _check_output(output)
        w = self.window(symbol, timeframe, start, end)
        for table, d in self._chunks(w, chunk_rows):
            yield _frame(table, exact, output, d)

    def candles(self, symbol: str, timeframe: str = "1m", start: Any = None, end: Any = None,
                exact: bool = False, output: str = "pandas") -> Any:
        """Candles with open time in [start, end) (ISO strings, datetimes or epoch ms; default:
        everything stored) as one frame indexed by the UTC open time. Columns open, high, low,
        close, volume, quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume:
        float64, or Decimal (decimal128(38, 8) in Arrow and polars) with exact=True.

        A timeframe that is not stored is derived in the database from the finest stored one
        that divides it; buckets with a candle missing (not in a known exchange gap) are left
        out and listed in `df.attrs["incomplete"]` (UTC timestamps)."""
        from ohlcv_cli.adapters.files import frames

        _check_output(output)
        w = self.window(symbol, timeframe, start, end)
        tables, total = [], None
        for table, d in self._chunks(w, 10_000_000 if w.source is None else 1_000_000):
            tables.append(table)
            if d is not None:
                total = total or Derivation(d.target, d.source)
                total.merge(d)
        return _frame(frames.concat(tables), exact, output, total)

    # --- files and pictures --------------------------------------------------------------------
    def export(self, symbols: Sequence[str] | str, timeframe: str = "1m", start: Any = None,
               end: Any = None, format: str = "parquet", out: Any = "-",
               per_symbol: bool = False, chunk_rows: int = DEFAULT_CHUNK) -> ExportResult:
        """Write candles to csv, parquet or jsonl, streamed chunk by chunk (flat memory), values
        exactly as stored: the exchange's decimal strings in csv and jsonl, decimal128(38, 8) in
        Parquet. One file with a `symbol` column, or (per_symbol) one file per symbol: `out` is
        then a directory or a path with `{symbol}` in it. `out="-"` writes to stdout."""
        from ohlcv_cli.adapters.files import export as file_export

        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        if not symbols:
            raise ConfigError("no symbols to export")
        started = time.perf_counter()
        result = ExportResult()
        # resolve every symbol first: bad input stops before a file is written
        windows = [self.window(s, timeframe, start, end) for s in symbols]
        targets = file_export.targets(format, out, symbols, per_symbol)
        for target, group in targets:
            with file_export.open_writer(format, target, not per_symbol) as writer:
                for w in windows:
                    if w.symbol not in group:
                        continue
                    for table, d in self._chunks(w, chunk_rows):
                        writer.write(table, w.symbol)
                        result.rows += table.num_rows
                        if d and d.incomplete:
                            result.incomplete.setdefault(w.symbol, []).extend(d.incomplete)
            result.files.append(str(target))
        result.seconds = time.perf_counter() - started
        return result

    def plot(self, symbol: str, timeframe: str = "1h", start: Any = None, end: Any = None,
             out: str = "chart.png") -> tuple[int, list[int]]:
        """Candlesticks with volume underneath to a PNG (matplotlib) or a self-contained HTML
        (plotly); a missing candle stays a hole. Returns the number of candles drawn and the
        derived buckets left out as incomplete (open times, ms)."""
        from ohlcv_cli.adapters.files import charts

        w = self.window(symbol, timeframe, start, end)
        charts.check_target(out)
        df = self.candles(symbol, timeframe, w.start, w.end)
        if df.empty:
            raise ConfigError(f"no {timeframe} candles of {symbol} between {iso(w.start)} and "
                              f"{iso(w.end)}")
        charts.candles(df, symbol, w.timeframe, w.start, w.end, out)
        return len(df), [t.value // 1_000_000 for t in df.attrs.get("incomplete", [])]

    def coverage(self, symbols: Sequence[str] | None = None, timeframe: str | None = None,
                 bins: int = 400) -> list[dict]:
        """Per stored symbol and timeframe, a timeline of bins: the share of expected candles
        stored in each, and the ranges the exchange has no candles for."""
        out = []
        for s in self.gaps.series(symbols, timeframe):
            tf = parse_timeframe(s.timeframe)
            start, end = s.first, s.last + tf.ms
            bin_ms = max(tf.ms, -(-(end - start) // bins // tf.ms) * tf.ms)
            hist = dict(self.reader.histogram(s.exchange, s.symbol, s.timeframe, start, end,
                                              bin_ms))
            known = self.gaps.exchange_gaps(s.exchange, s.symbol, s.timeframe)
            out.append({"symbol": s.symbol, "timeframe": s.timeframe, "start": start,
                        "end": end, "bin_ms": bin_ms, "tf_ms": tf.ms, "stored": hist,
                        "exchange_gaps": known})
        return out

    def plot_coverage(self, out: str, symbols: Sequence[str] | None = None,
                      timeframe: str | None = None) -> int:
        """The coverage timelines as a picture (PNG or HTML); returns the number of series."""
        from ohlcv_cli.adapters.files import charts

        charts.check_target(out)
        series = self.coverage(symbols, timeframe)
        if not series:
            raise ConfigError("no candles stored: nothing to draw")
        charts.coverage(series, out)
        return len(series)


def check_picture(out: str) -> str:
    """The picture kind (.png or .html) of a path that can be written, or a ConfigError."""
    from ohlcv_cli.adapters.files import charts

    return charts.check_target(out)


def _check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ConfigError(f"unknown output {output!r}; use one of {', '.join(OUTPUTS)}")


def _frame(table, exact: bool, output: str, d: Derivation | None):
    from ohlcv_cli.adapters.files import frames

    if output == "arrow":
        return frames.typed(table, exact)
    if output == "polars":
        return frames.to_polars(table, exact)
    return frames.to_pandas(table, exact, d.source if d else None, d.incomplete if d else None)
