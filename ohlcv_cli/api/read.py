"""Reading the store from Python: candles as pandas (or polars, or Arrow), any timeframe that is
stored or derivable from a finer stored one, in chunks, to files, as pictures.

    from ohlcv_cli import open_store
    store = open_store("postgresql://user@host/db")      # or a Settings, or None: the settings
    df = store.candles("BTC/USDT", "1h", start="2024-01-01", end="2024-02-01")
    mark = store.candles("BTC/USDT:USDT", "1h", price="mark")   # a perpetual's mark price

Every read is of one price series (`price`: trade, the default; on futures also mark, index and
premium); asking a spot symbol for another is a BadPrice (a ConfigError).

A composition root like the CLI: it wires the SQL adapters and the file and chart renderers,
each imported on first use, so that importing ohlcv_cli stays cheap.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ohlcv_cli.api import wiring
from ohlcv_cli.core.derive import (
    Derivation, bucket_window, choose, empty_buckets, pick_bases, settled_before,
)
from ohlcv_cli.core.errors import BadSymbol, ConfigError
from ohlcv_cli.core.markets import DEFAULT_PRICE, check_market_price
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
    native: bool  # the timeframe itself is stored
    bases: list[Timeframe]  # the stored timeframes it can be derived from, finest first
    start: int
    end: int
    stored: dict[str, tuple[int, int]] = field(default_factory=dict)  # first, last open time
    price: str = DEFAULT_PRICE

    @property
    def sources(self) -> list[Timeframe]:
        """Where a bucket is taken from, in order of preference."""
        return ([self.timeframe] if self.native else []) + self.bases


@dataclass
class ExportResult:
    files: list[str] = field(default_factory=list)
    rows: int = 0
    incomplete: dict[str, list[int]] = field(default_factory=dict)  # symbol -> buckets left out
    empty: dict[str, str] = field(default_factory=dict)  # symbol without a candle -> why
    seconds: float = 0.0


def open_store(url_or_settings: Any = None, exchange: str | None = None) -> "Store":
    """A Store on a database URL (postgresql://, sqlite:///...), a Settings object, or None (the
    settings from the environment and .env). The schema must be current (`ohlcv db upgrade`);
    the embedded SQLite default upgrades itself, as for every command. A SQLite file that does
    not exist is a StorageError naming its path: a read never leaves an empty file behind."""
    from ohlcv_cli.core.settings import DATABASE, Settings, load_settings

    if isinstance(url_or_settings, Settings):
        s = url_or_settings
    elif url_or_settings is None:
        s = load_settings(uses=DATABASE | {"exchange"})
    else:
        s = load_settings(uses=DATABASE | {"exchange"}, database_url=str(url_or_settings))
    eng = wiring.engine(s, create=False)
    wiring.repository(s, eng)  # checks the schema
    return Store(eng, exchange or s.exchange)


class Store:
    def __init__(self, engine, exchange: str = "binance", clock=time.time) -> None:
        from ohlcv_cli.adapters.sql.reader import SqlCandleReader

        self.engine = engine
        self.exchange = exchange
        self.clock = clock  # seconds since the epoch: which buckets are still open
        self.reader = SqlCandleReader(engine)
        self.gaps = wiring.gap_repository(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- resolving a read ----------------------------------------------------------------------
    def symbols(self) -> list[str]:
        """The symbols stored (any timeframe), sorted."""
        return self.reader.stored_symbols(self.exchange)

    def resolve(self, symbols: Sequence[str] | str) -> list[str]:
        """ccxt symbols for what a user wrote: any case (`btc/usdt`), the exchange's id form
        (`BTCUSDT`, `BTCUSD_PERP`) or a regular expression (`'.*/USDT'`), the last two against
        the symbols stored. An id that two stored markets have (BTCUSDT: spot BTC/USDT and the
        perpetual BTC/USDT:USDT) is a BadSymbol asking for the ccxt form."""
        from ohlcv_cli.core.symbols import needs_resolving, parse_symbols

        tokens = parse_symbols(symbols)
        if not needs_resolving(tokens):
            return tokens
        return wiring.resolve_in(tokens, wiring.stored_ids(self.symbols()),
                                 where=f"the store ({self.exchange})")

    def _symbol(self, symbol: str) -> str:
        found = self.resolve([symbol])
        if len(found) != 1:
            raise BadSymbol(f"{symbol!r} selects {len(found)} symbols ({', '.join(found)}); "
                            "a read takes one")
        return found[0]

    def timeframes(self, symbol: str, price: str = DEFAULT_PRICE) -> list[str]:
        """The timeframes stored for the symbol's `price` series."""
        symbol = self._symbol(symbol)
        return self.reader.stored_timeframes(self.exchange, symbol,
                                             price=check_market_price([symbol], price))

    def window(self, symbol: str, timeframe: str = "1m", start: Any = None,
               end: Any = None, price: str = DEFAULT_PRICE) -> Window:
        symbol = self._symbol(symbol)
        price = check_market_price([symbol], price)
        tf = timeframe if isinstance(timeframe, Timeframe) else parse_timeframe(timeframe)
        start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
        if start_ms is not None and end_ms is not None and start_ms >= end_ms:
            raise ConfigError(f"empty window: start {iso(start_ms)} is not before end "
                              f"{iso(end_ms)}")
        stored = self.reader.stored_timeframes(self.exchange, symbol, price=price)
        if not stored:
            what = "candles" if price == DEFAULT_PRICE else f"{price} candles"
            raise BadSymbol(f"no {what} stored for {symbol} ({self.exchange})")
        native, bases = pick_bases(tf, stored)
        w = Window(symbol, tf, native, bases, 0, 0, price=price)
        w.stored = {b.name: self.reader.bounds(self.exchange, symbol, b.name, price=price)
                    for b in w.sources if bases or start_ms is None or end_ms is None}
        if start_ms is None:
            start_ms = min(first for first, _ in w.stored.values())
        if end_ms is None:
            end_ms = max(last + parse_timeframe(n).ms for n, (_, last) in w.stored.items())
        w.start, w.end = start_ms, end_ms
        return w

    # --- chunks of Arrow (decimal text) --------------------------------------------------------
    def _chunks(self, w: Window, chunk_rows: int) -> Iterator[tuple[Any, Derivation | None]]:
        if not w.bases:  # stored, nothing to derive from: keyset paging over the stored rows
            t = w.start
            while t < w.end:
                table = self.reader.native(self.exchange, w.symbol, w.timeframe.name, t, w.end,
                                           chunk_rows, price=w.price)
                if table.num_rows == 0:
                    return
                yield table, None
                if table.num_rows < chunk_rows:
                    return
                t = table.column("open_time")[-1].as_py() + w.timeframe.ms
            return
        yield from self._composed(w, chunk_rows)

    def _composed(self, w: Window, chunk_rows: int) -> Iterator[tuple[Any, Derivation]]:
        """Windows of buckets, each bucket from the first source that has it complete (the
        stored candle, else the finest base that covers it). Buckets left out are reported,
        except those still open at read time; with the timeframe stored, only those a base
        holds part of (a bucket with nothing at all is `ohlcv gaps check`'s to report)."""
        from ohlcv_cli.adapters.sql.reader import compose

        tf = w.timeframe
        lo, hi = bucket_window(tf, w.start, w.end)
        settled = settled_before(tf, w.bases, int(self.clock() * 1000))
        gaps = {b.name: self.gaps.exchange_gaps(self.exchange, w.symbol, b.name, lo, hi,
                                                price=w.price)
                for b in w.sources}
        all_gaps = sorted(g for b in w.sources for g in gaps[b.name])
        # the buckets each source has candles in, from its first to its last stored candle
        spans = {n: (tf.floor(first), tf.floor(last) + tf.ms) for n, (first, last)
                 in w.stored.items()}
        span = max(1, chunk_rows) * tf.ms
        prev_last = None
        a = lo
        while a < hi:
            b = min(hi, a + span)
            offers, tables, partial = [], {}, set()
            for src in w.sources:
                s0, s1 = spans[src.name]
                ca, cb = max(a, s0), min(b, s1)
                if ca >= cb:
                    continue
                if src == tf:
                    table = self.reader.native(self.exchange, w.symbol, tf.name, ca, cb,
                                               price=w.price)
                else:
                    table, incomplete = self.reader.derived(self.exchange, w.symbol, tf, src,
                                                            ca, cb, gaps[src.name],
                                                            price=w.price)
                    partial.update(incomplete)
                tables[src.name] = table
                offers.append((src.name, table.column("open_time").to_pylist()))
            chosen = choose(offers)
            table = compose([(tables[n], keep) for n, keep in chosen.items()])
            produced = set().union(*chosen.values())
            left_out = sorted(partial - produced)
            if not w.native:
                present = sorted(produced | set(left_out))
                if present:
                    head = [prev_last] if prev_last is not None else []
                    left_out += empty_buckets(tf, head + present, prev_last or a, b, all_gaps)
                    prev_last = present[-1]
            d = Derivation(tf.name, {n: len(k) for n, k in chosen.items()},
                           sorted(t for t in left_out if t < settled))
            if d.incomplete:
                log.debug("%s %s from %s: %d buckets left out as incomplete (first %s)",
                          w.symbol, tf.name, d.derived_from, len(d.incomplete),
                          iso(d.incomplete[0]))
            yield table, d
            a = b

    def arrow_chunks(self, symbol: str, timeframe: str = "1m", start: Any = None,
                     end: Any = None, chunk_rows: int = DEFAULT_CHUNK,
                     price: str = DEFAULT_PRICE):
        """(Arrow table with decimal text, Derivation or None) per chunk: for writers."""
        w = self.window(symbol, timeframe, start, end, price)
        yield from self._chunks(w, chunk_rows)

    # --- frames --------------------------------------------------------------------------------
    def iter_candles(self, symbol: str, timeframe: str = "1m", start: Any = None,
                     end: Any = None, exact: bool = False, output: str = "pandas",
                     chunk_rows: int = DEFAULT_CHUNK, price: str = DEFAULT_PRICE
                     ) -> Iterator[Any]:
        """Frames of at most chunk_rows candles each, oldest first: for windows too large for
        memory. A derived chunk's `attrs["incomplete"]` (pandas) lists the buckets left out.
        A window without any candle gives no frame at all (`candles` says why)."""
        _check_output(output)
        w = self.window(symbol, timeframe, start, end, price)
        for table, d in self._chunks(w, chunk_rows):
            yield _frame(table, exact, output, d)

    def funding(self, symbol: str, start: Any = None, end: Any = None, exact: bool = False,
                output: str = "pandas") -> Any:
        """The funding settlements of a perpetual stored in [start, end) (api/funding.py)."""
        from ohlcv_cli.api.funding import read_funding

        return read_funding(self.engine, self.exchange, symbol, start, end, exact, output)

    def candles(self, symbol: str, timeframe: str = "1m", start: Any = None, end: Any = None,
                exact: bool = False, output: str = "pandas", price: str = DEFAULT_PRICE) -> Any:
        """Candles with open time in [start, end) (ISO strings, datetimes or epoch ms; default:
        everything stored) as one frame indexed by the UTC open time. Columns open, high, low,
        close, volume, quote_volume, trades, taker_buy_base_volume, taker_buy_quote_volume:
        float64, or Decimal (decimal128(38, 8) in Arrow and polars) with exact=True. `price`:
        the price series (trade; on futures also mark, index, premium), whose rows carry the
        exchange's placeholders as sent (a mark candle's volume "0", its trades the count of
        basic data).

        A bucket of a timeframe that is not stored (or not stored there) is derived in the
        database from the finest stored timeframe that has all its candles: the derived frame's
        `df.attrs["derived_from"]` names the bases used ("1m", "1s,1m"), `attrs["incomplete"]`
        lists the buckets left out because a candle is missing (not in a known exchange gap;
        the bucket still open now is not one). A frame without rows has `attrs["empty"]`: why."""
        _check_output(output)
        w = self.window(symbol, timeframe, start, end, price)
        table, total = self._read(w)
        empty = self._why_empty(w, total) if table.num_rows == 0 else None
        return _frame(table, exact, output, total, empty)

    def _read(self, w: Window) -> tuple[Any, Derivation | None]:
        from ohlcv_cli.adapters.files import frames

        tables, total = [], None
        for table, d in self._chunks(w, 1_000_000 if w.bases else 10_000_000):
            tables.append(table)
            if d is not None:
                total = total or Derivation(d.target)
                total.merge(d)
        return frames.concat(tables), total

    def _why_empty(self, w: Window, d: Derivation | None) -> str:
        """Why a read of the window gave no candle: buckets left out, or nothing stored there."""
        what = "" if w.price == DEFAULT_PRICE else f" {w.price}"
        head = (f"no {w.timeframe.name}{what} candles of {w.symbol} between {iso(w.start)} and "
                f"{iso(w.end)}")
        if d is not None and d.incomplete:
            return (f"{head}: {len(d.incomplete)} left out, their base candles are not all "
                    f"stored (first {iso(min(d.incomplete))})")
        stored = w.stored or {w.timeframe.name: self.reader.bounds(
            self.exchange, w.symbol, w.timeframe.name, price=w.price)}
        held = ", ".join(f"{n} from {iso(first)} to {iso(last + parse_timeframe(n).ms)}"
                         for n, (first, last) in stored.items())
        return f"{head}: stored {held}"

    # --- files and pictures --------------------------------------------------------------------
    def export(self, symbols: Sequence[str] | str, timeframe: str = "1m", start: Any = None,
               end: Any = None, format: str | None = None, out: Any = "-",
               per_symbol: bool = False, chunk_rows: int = DEFAULT_CHUNK,
               decimals: str = "exact", layout: str | None = None,
               price: str = DEFAULT_PRICE) -> ExportResult:
        """Write candles to csv, parquet, jsonl or feather, streamed chunk by chunk (flat
        memory). `format` defaults to what `out`'s extension names (csv where it names none:
        stdout, a directory); an unknown extension is a ConfigError. Values exactly as stored:
        the exchange's decimal strings in csv and jsonl, decimal128(38, 8) in Parquet and
        feather; `decimals="float"` writes float64 instead. One file with a `symbol` column,
        or (per_symbol) one file per symbol: `out` is then a directory or a path with
        `{symbol}` in it. `layout="freqtrade"`: freqtrade's data files in the directory `out`
        (`out/binance/BTC_USDT-1m.feather`: date, open, high, low, close, volume as float64).
        `out="-"` writes to stdout. Symbols without a candle in the window are in `empty`.
        `price`: the price series written (one per export; every symbol must have it)."""
        from ohlcv_cli.adapters.files import export as file_export

        symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        if not symbols:
            raise ConfigError("no symbols to export")
        symbols = self.resolve(symbols)
        price = check_market_price(symbols, price)
        fmt = file_export.resolve_format(format, out, layout)
        file_export.check_decimals(decimals)
        per_symbol = per_symbol or layout is not None
        started = time.perf_counter()
        result = ExportResult()
        # resolve every symbol first: bad input stops before a file is written
        windows = [self.window(s, timeframe, start, end, price) for s in symbols]
        tf = windows[0].timeframe.name
        targets = file_export.targets(fmt, out, symbols, per_symbol, layout, tf, self.exchange)
        for target, group in targets:
            with file_export.open_writer(fmt, target, not per_symbol, decimals,
                                         layout) as writer:
                for w in windows:
                    if w.symbol not in group:
                        continue
                    rows, total = 0, None
                    for table, d in self._chunks(w, chunk_rows):
                        writer.write(table, w.symbol)
                        rows += table.num_rows
                        if d is not None:
                            total = total or Derivation(d.target)
                            total.merge(d)
                    result.rows += rows
                    if total is not None and total.incomplete:
                        result.incomplete[w.symbol] = total.incomplete
                    if rows == 0:
                        result.empty[w.symbol] = self._why_empty(w, total)
            if per_symbol and all(sym in result.empty for sym in group):
                os.remove(target)  # no file for a symbol without candles: it is named instead
                continue
            result.files.append(str(target))
        result.seconds = time.perf_counter() - started
        return result

    def plot(self, symbol: str, timeframe: str = "1h", start: Any = None, end: Any = None,
             out: str = "chart.png", price: str = DEFAULT_PRICE, funding: bool = False
             ) -> tuple[int, list[int]]:
        """Candlesticks with volume underneath to a PNG (matplotlib) or a self-contained HTML
        (plotly) of the `price` series; a missing candle stays a hole; with `funding`, the stored
        settlements of the window (a ConfigError when there are none). Returns the number of
        candles drawn and the derived buckets left out as incomplete (open times, ms)."""
        from ohlcv_cli.adapters.files import charts

        w = self.window(symbol, timeframe, start, end, price)
        charts.check_target(out)
        df = self.candles(symbol, timeframe, w.start, w.end, price=w.price)
        if df.empty:
            raise ConfigError(df.attrs["empty"])
        title = w.symbol if w.price == DEFAULT_PRICE else f"{w.symbol} {w.price}"
        rates = self.funding(w.symbol, w.start, w.end) if funding else None  # a perpetual's
        if rates is not None and rates.empty:  # not an empty panel the user takes for a rate
            raise ConfigError(f"no funding settlements of {w.symbol} stored in the window:"
                              " ohlcv funding backfill fetches them")
        charts.candles(df, title, w.timeframe, w.start, w.end, out, rates)
        return len(df), [t.value // 1_000_000 for t in df.attrs.get("incomplete", [])]

    def coverage(self, symbols: Sequence[str] | None = None, timeframe: str | None = None,
                 bins: int = 400, price: str | None = None) -> list[dict]:
        """Per stored series (symbol, timeframe, price series; all prices unless `price`), a
        timeline of bins: the share of expected candles stored in each, and the ranges the
        exchange has no candles for."""
        from ohlcv_cli.core.markets import check_price
        from ohlcv_cli.services.status import Status

        out = []
        symbols = self.resolve(symbols) if symbols else symbols
        price = check_price(price) if price is not None else None
        for s in Status(self.gaps).run(int(self.clock() * 1000), symbols, timeframe, price):
            tf = parse_timeframe(s.timeframe)
            start, end = s.first, s.end
            bin_ms = max(tf.ms, -(-(end - start) // bins // tf.ms) * tf.ms)
            hist = dict(self.reader.histogram(s.exchange, s.symbol, s.timeframe, start, end,
                                              bin_ms, price=s.price))
            out.append({"symbol": s.symbol, "timeframe": s.timeframe, "price": s.price,
                        "start": start,
                        "end": end, "bin_ms": bin_ms, "tf_ms": tf.ms, "stored": hist,
                        "exchange_gaps": s.exchange_gaps})
        return out

    def plot_coverage(self, out: str, symbols: Sequence[str] | None = None,
                      timeframe: str | None = None, price: str | None = None) -> int:
        """The coverage timelines as a picture (PNG or HTML); returns the number of series."""
        from ohlcv_cli.adapters.files import charts

        charts.check_target(out)
        series = self.coverage(symbols, timeframe, price=price)
        # the picture labels each series by symbol and timeframe: a price series says which
        series = [s if s["price"] == DEFAULT_PRICE else {**s, "symbol": f"{s['symbol']} {s['price']}"}
                  for s in series]
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


def _frame(table, exact: bool, output: str, d: Derivation | None, empty: str | None = None):
    from ohlcv_cli.adapters.files import frames

    if output == "arrow":
        return frames.typed(table, exact)
    if output == "polars":
        return frames.to_polars(table, exact)
    attrs: dict[str, Any] = {}
    if d is not None:
        attrs = {"derived_from": d.derived_from, "incomplete": sorted(d.incomplete)}
    if empty is not None:
        attrs["empty"] = empty
    return frames.to_pandas(table, exact, attrs)
