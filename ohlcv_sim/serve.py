"""Running the simulator as a program: `ServeOptions` (what `ohlcv sim` takes, as plain values),
`build(options)` (a configured, not yet listening server) and `serve(options)` (listen until
interrupted). Malformed options and ports that cannot be bound raise `SimStartError`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Sequence

from ohlcv_sim.engine import INTERVALS, SimConfig, default_symbols
from ohlcv_sim.futures import default_futures
from ohlcv_sim.server import SimServer
from ohlcv_sim.ws import WsFaults


class SimStartError(ValueError):
    """The simulator cannot start so: the message names the option and its form, or the port."""


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8900
    ws_port: int | None = None  # None: port + 1 (any free port when port is 0); -1: no websocket
    latency_ms: float = 0.0
    share_429: float = 0.0
    share_5xx: float = 0.0
    share_garbage: float = 0.0
    share_short_pages: float = 0.0
    weight_limit: int | None = None
    weight_window_s: int = 60
    maintenance: Sequence[str] = ()  # "START/END" (ISO)
    listing: Sequence[str] = ()  # "SYMBOL=ISO"
    zero_volume_share: float = 0.0
    settle_lag_ms: int = 0
    extra_symbols: int = 0
    clock_offset_ms: int = 0
    precompute: str | None = None  # "TIMEFRAME:START/END"
    precompute_archive: str | None = None
    archive_faults: Sequence[str] = ()
    ws_faults: WsFaults = field(default_factory=WsFaults)
    futures_weight_limit: int | None = None  # per family and minute; None: unthrottled
    extra_futures: int = 0  # USD-M perpetuals SIM000USDT ... besides the defaults
    precompute_futures: str | None = None  # "TIMEFRAME:START/END": every contract's trade series
    archive_cache: int = 64  # archive files kept built


def build(options: ServeOptions) -> SimServer:
    """The server the options describe, its precomputed candles and files rendered; call
    `serve_forever()` or `start()` on it."""
    specs = _specs(options.extra_symbols, options.listing)
    config = SimConfig(
        symbols=specs, latency_ms=options.latency_ms, share_429=options.share_429,
        share_5xx=options.share_5xx, weight_limit=options.weight_limit,
        weight_window_s=options.weight_window_s, maintenance=_maintenance(options.maintenance),
        zero_volume_share=options.zero_volume_share, settle_lag_ms=options.settle_lag_ms,
        clock_offset_ms=options.clock_offset_ms, share_garbage=options.share_garbage,
        share_short_pages=options.share_short_pages, archive_faults=list(options.archive_faults),
        futures=default_futures(extra=options.extra_futures),
        futures_weight_limit=options.futures_weight_limit, archive_cache=options.archive_cache,
    )
    pre = _window(options.precompute, "--precompute") if options.precompute else None
    pre_archive = (_window(options.precompute_archive, "--precompute-archive")
                   if options.precompute_archive else None)
    ws_port = ws_port_of(options)
    try:
        server = SimServer(config, host=options.host, port=options.port,
                           ws_port=None if ws_port < 0 else ws_port, ws_faults=options.ws_faults)
    except OSError as exc:
        raise SimStartError(f"cannot listen on {options.host}:{options.port}: "
                            f"{exc.strerror or exc}") from exc
    except ValueError as exc:  # a malformed archive fault
        raise SimStartError(str(exc)) from exc
    if pre_archive is not None:
        tf_name = next(k for k, v in INTERVALS.items() if v == pre_archive[0])
        server.archive.precompute(tf_name, pre_archive[1], pre_archive[2])
    for spec in specs if pre is not None else []:
        server.engine.precompute(spec, *pre)
    if options.precompute_futures:
        pre_f = _window(options.precompute_futures, "--precompute-futures")
        for fspec in config.futures:
            server.engine.precompute(fspec, *pre_f)
    return server


def serve(options: ServeOptions, announce: Callable[[str], None] = print) -> None:
    """Listen on the options' ports until KeyboardInterrupt; `announce` gets one line saying
    where, once both endpoints listen."""
    server = build(options)
    if server.ws is not None:
        try:  # before the announcement
            server.ws.start()
        except OSError as exc:
            server.stop()
            raise SimStartError(f"cannot listen on {options.host}:{ws_port_of(options)}: "
                                f"{exc.strerror or exc}") from exc
    ws = f"ws://{options.host}:{server.ws.port}" if server.ws is not None else None
    ws_note = (f"; websocket streams on {ws} (--stream-url), USD-M {ws}/fapi "
               f"(OHLCV_USDM_STREAM_URL), COIN-M {ws}/dapi (OHLCV_COINM_STREAM_URL)"
               if ws is not None else "")
    announce(f"simulator listening on http://{options.host}:{server.port} "
             f"({len(server.config.symbols)} spot symbols, {len(server.config.futures)} futures "
             f"contracts under /fapi and /dapi); use --exchange-url "
             f"http://{options.host}:{server.port}{ws_note}")
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def ws_port_of(options: ServeOptions) -> int:
    if options.ws_port is None:
        return options.port + 1 if options.port else 0
    return options.ws_port


def _iso(text: str, what: str) -> int:
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SimStartError(
            f"invalid {what} {text!r}: use ISO 8601, e.g. 2024-01-31 or 2024-01-31T12:00:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def _maintenance(items: Sequence[str]) -> list[tuple[int, int]]:
    windows = []
    for item in items:
        a, sep, b = item.partition("/")
        if not sep:
            raise SimStartError(f"--maintenance {item!r}: use START/END, e.g. "
                                 "2024-01-01T10:00/2024-01-01T12:00")
        windows.append((_iso(a, "maintenance start"), _iso(b, "maintenance end")))
    return windows


def _specs(extra_symbols: int, listing: Sequence[str]) -> list:
    specs = default_symbols(extra_symbols)
    for item in listing:
        sym, sep, when = item.partition("=")
        if not sep:
            raise SimStartError(f"--listing {item!r}: use SYMBOL=ISO, e.g. SOL/USDT=2024-01-01")
        idx = next((i for i, sp in enumerate(specs) if sp.symbol == sym.upper()), None)
        if idx is None:
            raise SimStartError(f"--listing: the simulator does not list {sym!r}")
        specs[idx] = replace(specs[idx], listed_at=_iso(when, "listing time"))
    return specs


def _window(text: str, option: str) -> tuple[int, int, int]:
    tf_name, sep, span = text.partition(":")
    a, sep2, b = span.partition("/")
    if not (sep and sep2) or tf_name not in INTERVALS:
        raise SimStartError(f"{option} {text!r}: use TIMEFRAME:START/END, e.g. "
                             "1m:2024-01-01/2024-01-19")
    return INTERVALS[tf_name], _iso(a, f"{option} start"), _iso(b, f"{option} end")
