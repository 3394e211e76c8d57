"""`ohlcv sim`: run the Binance-compatible simulator."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from ohlcv_cli.cli.common import console, settings
from ohlcv_cli.core.errors import ConfigError
from ohlcv_cli.core.timeutil import parse_iso


def sim(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port)")] = 8900,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    latency_ms: Annotated[float, typer.Option("--latency-ms", help="Delay added to every answer")] = 0.0,
    share_429: Annotated[float, typer.Option("--share-429", help="Share of klines answers that are 429")] = 0.0,
    share_5xx: Annotated[float, typer.Option("--share-5xx", help="Share of klines answers that are 503")] = 0.0,
    share_garbage: Annotated[float, typer.Option("--share-garbage", help="Share of klines answers that are an unusable 200 (HTML, truncated, wrong shape)")] = 0.0,
    share_short_pages: Annotated[float, typer.Option("--share-short-pages", help="Share of klines pages cut short (first rows only)")] = 0.0,
    weight_limit: Annotated[Optional[int], typer.Option("--weight-limit", help="Request weight allowed per window (default: unthrottled)")] = None,
    weight_window: Annotated[int, typer.Option("--weight-window", help="Weight window in seconds")] = 60,
    maintenance: Annotated[Optional[List[str]], typer.Option("--maintenance", help="START/END (ISO): no candles in between; repeatable")] = None,
    listing: Annotated[Optional[List[str]], typer.Option("--listing", help="SYMBOL=ISO: no candles before; repeatable")] = None,
    zero_volume_share: Annotated[float, typer.Option("--zero-volume-share", help="Share of candles with no trades")] = 0.0,
    settle_lag_ms: Annotated[int, typer.Option("--settle-lag-ms", help="After a close the candle still moves this long")] = 0,
    extra_symbols: Annotated[int, typer.Option("--extra-symbols", help="Also list SIM000/USDT ... SIMnnn/USDT")] = 0,
    clock_offset_ms: Annotated[int, typer.Option("--clock-offset-ms", help="Exchange clock minus ours")] = 0,
    precompute: Annotated[Optional[str], typer.Option("--precompute", help="TIMEFRAME:START/END: render these final candles of every symbol before serving (benchmarks)")] = None,
) -> None:
    """Serve Binance's spot REST API (ping, time, exchangeInfo, klines) with deterministic candles."""
    from ohlcv_cli.sim import SimConfig, SimServer

    settings(ctx, "sim")  # logging only: the simulator reads no other setting
    specs = _specs(extra_symbols, listing or [])
    config = SimConfig(
        symbols=specs, latency_ms=latency_ms, share_429=share_429, share_5xx=share_5xx,
        weight_limit=weight_limit, weight_window_s=weight_window,
        maintenance=_maintenance(maintenance or []), zero_volume_share=zero_volume_share,
        settle_lag_ms=settle_lag_ms, clock_offset_ms=clock_offset_ms,
        share_garbage=share_garbage, share_short_pages=share_short_pages,
    )
    pre = _precompute(precompute) if precompute else None
    try:
        server = SimServer(config, host=host, port=port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    for spec in specs if pre is not None else []:
        server.engine.precompute(spec, *pre)
    console.print(f"simulator listening on http://{host}:{server.port} "
                  f"({len(specs)} symbols); use --exchange-url http://{host}:{server.port}",
                  markup=False, highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def _maintenance(items: List[str]) -> list[tuple[int, int]]:
    windows = []
    for item in items:
        a, sep, b = item.partition("/")
        if not sep:
            raise ConfigError(f"--maintenance {item!r}: use START/END, e.g. 2024-01-01T10:00/2024-01-01T12:00")
        windows.append((parse_iso(a, "maintenance start"), parse_iso(b, "maintenance end")))
    return windows


def _specs(extra_symbols: int, listing: List[str]) -> list:
    from dataclasses import replace

    from ohlcv_cli.sim import default_symbols

    specs = default_symbols(extra_symbols)
    for item in listing:
        sym, sep, when = item.partition("=")
        if not sep:
            raise ConfigError(f"--listing {item!r}: use SYMBOL=ISO, e.g. SOL/USDT=2024-01-01")
        idx = next((i for i, sp in enumerate(specs) if sp.symbol == sym.upper()), None)
        if idx is None:
            raise ConfigError(f"--listing: the simulator does not list {sym!r}")
        specs[idx] = replace(specs[idx], listed_at=parse_iso(when, "listing time"))
    return specs


def _precompute(text: str) -> tuple[int, int, int]:
    from ohlcv_cli.sim.engine import INTERVALS

    tf_name, sep, span = text.partition(":")
    a, sep2, b = span.partition("/")
    if not (sep and sep2) or tf_name not in INTERVALS:
        raise ConfigError(f"--precompute {text!r}: use TIMEFRAME:START/END, e.g. 1m:2024-01-01/2024-01-19")
    return INTERVALS[tf_name], parse_iso(a, "precompute start"), parse_iso(b, "precompute end")
