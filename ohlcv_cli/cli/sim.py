"""`ohlcv sim`: run the Binance-compatible simulator."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from ohlcv_cli.cli.common import console, settings
from ohlcv_cli.core.errors import ConfigError


def sim(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port)")] = 8900,
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    latency_ms: Annotated[float, typer.Option("--latency-ms", help="Delay added to every answer")] = 0.0,
    share_429: Annotated[float, typer.Option("--share-429", help="Share of klines answers that are 429")] = 0.0,
    share_5xx: Annotated[float, typer.Option("--share-5xx", help="Share of klines answers that are 503")] = 0.0,
    share_garbage: Annotated[float, typer.Option("--share-garbage", help="Share of klines answers that are an unusable 200 (HTML, truncated, wrong shape)")] = 0.0,
    share_short_pages: Annotated[float, typer.Option("--share-short-pages", help="Share of klines pages cut short (first rows only)")] = 0.0,
    weight_limit: Annotated[Optional[int], typer.Option("--weight-limit", help="Request weight allowed per window \\[default: unthrottled]")] = None,
    weight_window: Annotated[int, typer.Option("--weight-window", help="Weight window in seconds")] = 60,
    maintenance: Annotated[Optional[List[str]], typer.Option("--maintenance", help="START/END (ISO): no candles in between; repeatable \\[default: none]")] = None,
    listing: Annotated[Optional[List[str]], typer.Option("--listing", help="SYMBOL=ISO: no candles before; repeatable \\[default: candles from 1970 on]")] = None,
    zero_volume_share: Annotated[float, typer.Option("--zero-volume-share", help="Share of candles with no trades")] = 0.0,
    settle_lag_ms: Annotated[int, typer.Option("--settle-lag-ms", help="After a close the candle still moves this long")] = 0,
    extra_symbols: Annotated[int, typer.Option("--extra-symbols", help="Also list SIM000/USDT ... SIMnnn/USDT")] = 0,
    clock_offset_ms: Annotated[int, typer.Option("--clock-offset-ms", help="Exchange clock minus ours")] = 0,
    precompute: Annotated[Optional[str], typer.Option("--precompute", help="TIMEFRAME:START/END: render these final candles of every symbol before serving (benchmarks) \\[default: none]")] = None,
    archive_fault: Annotated[Optional[List[str]], typer.Option("--archive-fault", help="KIND:SYMBOL:PERIOD, KIND one of corrupt, disagree, missing, header; * for any symbol or period; repeatable \\[default: none]")] = None,
    precompute_archive: Annotated[Optional[str], typer.Option("--precompute-archive", help="TIMEFRAME:START/END: build the archive files of every symbol before serving (benchmarks) \\[default: none]")] = None,
    futures_weight_limit: Annotated[Optional[int], typer.Option("--futures-weight-limit", help="Request weight per minute of each futures family (/fapi, /dapi), as their exchangeInfo says \\[default: unthrottled]")] = None,
    extra_futures: Annotated[int, typer.Option("--extra-futures", help="Also list the USD-M perpetuals SIM000/USDT:USDT ... SIMnnn/USDT:USDT")] = 0,
    precompute_futures: Annotated[Optional[str], typer.Option("--precompute-futures", help="TIMEFRAME:START/END: render these final trade candles of every futures contract before serving (benchmarks) \\[default: none]")] = None,
    archive_cache: Annotated[int, typer.Option("--archive-cache", min=0, help="Archive files kept built, the least recently served dropped first (benchmarks that alternate more files)")] = 64,
    ws_port: Annotated[Optional[int], typer.Option("--ws-port", help="Port of the websocket streams (0: any free port; -1: none) \\[default: --port + 1]")] = None,
    ws_drop_final: Annotated[float, typer.Option("--ws-drop-final", help="Share of final kline events (x: true) never sent")] = 0.0,
    ws_disconnect_every: Annotated[Optional[float], typer.Option("--ws-disconnect-every", help="Cut each websocket connection this many seconds after it opened \\[default: never]")] = None,
    ws_shutdown_every: Annotated[Optional[float], typer.Option("--ws-shutdown-every", help="Send serverShutdown this many seconds after a connection opened (closed 2 s later) \\[default: never]")] = None,
    ws_malformed_every: Annotated[Optional[float], typer.Option("--ws-malformed-every", help="Send a malformed message every N seconds \\[default: never]")] = None,
    ws_stall_after: Annotated[Optional[float], typer.Option("--ws-stall-after", help="Each websocket connection goes silent (stays open) after N seconds \\[default: never]")] = None,
) -> None:
    """Run a Binance simulator: spot and futures REST APIs, websocket streams and archive files.

    Deterministic candles. REST: ping, time, exchangeInfo and klines on --port, USD-M futures
    under /fapi/v1 and COIN-M under /dapi/v1 (klines, mark, index and premium-index klines,
    funding). Websocket: the kline streams on --ws-port (futures under /fapi and /dapi). Archive: the monthly and daily kline zip files with their
    checksums, as data.binance.vision serves them, under the REST port (--archive-url). Faults
    (429s, 5xx, garbage, maintenance, listings, dropped or malformed websocket messages, bad
    archive files) are switched on by the options below."""
    from ohlcv_sim import ServeOptions, SimStartError, WsFaults, serve

    settings(ctx, "sim")  # logging only: the simulator reads no other setting
    options = ServeOptions(
        host=host, port=port, ws_port=ws_port, latency_ms=latency_ms, share_429=share_429,
        share_5xx=share_5xx, share_garbage=share_garbage, share_short_pages=share_short_pages,
        weight_limit=weight_limit, weight_window_s=weight_window,
        maintenance=tuple(maintenance or ()), listing=tuple(listing or ()),
        zero_volume_share=zero_volume_share, settle_lag_ms=settle_lag_ms,
        extra_symbols=extra_symbols, clock_offset_ms=clock_offset_ms, precompute=precompute,
        precompute_archive=precompute_archive, archive_faults=tuple(archive_fault or ()),
        futures_weight_limit=futures_weight_limit, extra_futures=extra_futures,
        precompute_futures=precompute_futures, archive_cache=archive_cache,
        ws_faults=WsFaults(drop_final_share=ws_drop_final, disconnect_every_s=ws_disconnect_every,
                           shutdown_every_s=ws_shutdown_every,
                           malformed_every_s=ws_malformed_every, stall_after_s=ws_stall_after),
    )
    try:
        serve(options, announce=lambda line: console.print(line, markup=False, highlight=False,
                                                           soft_wrap=True))
    except SimStartError as exc:
        raise ConfigError(str(exc)) from exc
