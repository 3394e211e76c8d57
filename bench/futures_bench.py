"""Futures benchmarks (issue 18): the REST backfill of a USD-M perpetual under the futures budget,
and the futures archive into PostgreSQL against the spot archive in the same run.

REST: the simulator at 100 ms latency with REQUEST_WEIGHT 2,400 a minute on /fapi (its
exchangeInfo says so, the client's budget reads it), BTC/USDT:USDT 1m fetched by the REST engine
(PagedFetch, 16 pages in flight) into PostgreSQL. The ceiling is the budget's: a futures klines
request of limit 499 weighs 2 (limits [100, 500) weigh 2, [500, 1000] 5), so 2,400 / 2 x 499 =
598,800 candles a minute = 9,980 candles/s. The budget counts fixed minutes on the exchange's
clock, so a run that starts inside a minute gets that minute's whole budget early: the rate that
compares with the ceiling is the one between two minute boundaries (whole minutes only, from
the engine's progress); the whole run's rate is printed beside it. Target: >= 90 % of the ceiling.

Archive: FUTURES_BENCH_DAYS (120) days of 1m of two spot symbols and of their USD-M perpetuals
(trade candles) from the simulator's archive (monthly files without a header row, the newest with
one), spot-check on, into PostgreSQL through ArchivePass; candles/s of each, then the ratio.
Each is timed on FUTURES_BENCH_REPEATS (3) passes after a first one, taking turns with the other
kind, once the simulator has built (and cached) the files, so that the figure is the client's (download, checksum, spot-check, COPY)
rather than the zip building; the median pass counts (single passes of a few seconds vary by a
third on two shared cores).
FUTURES_BENCH_MINUTES (3: about 3.5 minutes) sizes the REST part; FUTURES_BENCH_PARTS
(rest,archive) picks the parts.
"""

from __future__ import annotations

import os
import threading
import time

from common import Sim, fresh_db, start_pg

from ohlcv_cli.adapters.binance.archive import BinanceArchive
from ohlcv_cli.adapters.binance.rest import CcxtFetcher
from ohlcv_cli.adapters.sql.archive import SqlArchiveWriter
from ohlcv_cli.adapters.sql.candles import SqlCandleRepository
from ohlcv_cli.adapters.sql.gaps import SqlGapRepository
from ohlcv_cli.adapters.sql.schema import make_engine
from ohlcv_cli.core.markets import USDM
from ohlcv_cli.core.timeframes import parse_timeframe
from ohlcv_cli.services.archive import ArchivePass
from ohlcv_cli.services.paging import Job, PagedFetch

BUDGET = 2400  # REQUEST_WEIGHT a minute of /fapi
WEIGHT = 2  # of one klines request of limit 499
CEILING = BUDGET / WEIGHT * USDM.page / 60  # 9,980 candles/s
MINUTES = int(os.environ.get("FUTURES_BENCH_MINUTES", "3"))
DAYS = int(os.environ.get("FUTURES_BENCH_DAYS", "120"))
REPEATS = max(1, int(os.environ.get("FUTURES_BENCH_REPEATS", "3")))
PARTS = set(os.environ.get("FUTURES_BENCH_PARTS", "rest,archive").split(","))
DAY_MS = 86_400_000
TF = parse_timeframe("1m")


def _rest(cluster) -> dict:
    sim = Sim("--latency-ms", "100", "--futures-weight-limit", str(BUDGET))
    engine = make_engine(fresh_db(cluster, "fut_rest"))
    try:
        fetcher = CcxtFetcher(exchange_url=sim.url, settle_ms=0, families=("usdm",))
        fetcher.load()
        limit = fetcher.budget_of("usdm").limit
        if limit != BUDGET:
            raise RuntimeError(f"the client's USD-M budget is {limit}, not {BUDGET}")
        # enough candles for MINUTES whole minutes of budget plus the partial ones around them
        n = int((MINUTES + 1.2) * BUDGET / WEIGHT * USDM.page)
        end = TF.floor(fetcher.now_ms()) - 30 * DAY_MS
        start = end - n * TF.ms
        samples: list[tuple[int, int]] = []  # (exchange ms, candles fetched so far)
        lock = threading.Lock()

        def progress(symbol: str, done: int, total: int) -> None:
            with lock:
                samples.append((fetcher.now_ms(), done))

        engine_ = PagedFetch(fetcher, SqlCandleRepository(engine), SqlGapRepository(engine),
                             in_flight=16, progress=progress)
        job = Job("BTC/USDT:USDT", [(start, end)])
        before = sim.stats()["usdm"]
        t0 = time.perf_counter()
        engine_.fill([job], TF, "backfill")
        wall = time.perf_counter() - t0
        after = sim.stats()["usdm"]
        if job.error:
            raise RuntimeError(f"futures REST backfill failed: {job.error}")
        written = SqlCandleRepository(engine).count()
    finally:
        engine.dispose()
        sim.stop()
    samples.sort()
    first_ms, last_ms = samples[0][0], samples[-1][0]
    b1 = (first_ms // 60_000 + 1) * 60_000  # the first boundary after the run started
    bk = (last_ms // 60_000) * 60_000  # the last one before it ended
    whole = (bk - b1) // 60_000

    def done_at(t: int) -> int:
        return max((d for ms, d in samples if ms <= t), default=0)

    steady = (done_at(bk) - done_at(b1)) / ((bk - b1) / 1000) if whole > 0 else float("nan")
    requests = after["klines"] - before["klines"]
    refused = after["rejected_429"] - before["rejected_429"]
    overall = job.fetched / wall
    print(f"futures REST backfill (BTC/USDT:USDT 1m, 100 ms latency, {BUDGET:,} weight a minute, "
          f"16 pages in flight): {job.fetched:,} candles ({written:,} stored) in {wall:.1f} s, "
          f"{requests} klines requests ({job.fetched / max(requests, 1):.0f} candles each), "
          f"{refused} refused")
    if whole <= 0:
        print(f"  no whole budget minute in the run (FUTURES_BENCH_MINUTES >= 1 measures one); "
              f"whole run {overall:,.0f} candles/s")
        return {"steady": None, "overall": overall, "ceiling": CEILING, "requests": requests,
                "refused": refused}
    print(f"  over {whole} whole budget minutes: {steady:,.0f} candles/s = {steady / CEILING:.1%} "
          f"of the ceiling {CEILING:,.0f} candles/s (2,400 / 2 x 499 a minute) "
          f"({'meets' if steady >= 0.9 * CEILING else 'MISSES'} the 90 % target); whole run "
          f"{overall:,.0f} candles/s (its first minute's budget is spent early)")
    return {"steady": steady, "overall": overall, "ceiling": CEILING, "requests": requests,
            "refused": refused}


def _archive_pass(cluster, sim: Sim, name: str, symbols: list[str], families: tuple
                  ) -> tuple[int, float, int]:
    """(candles stored, seconds, files) of one ArchivePass over the window into a fresh database."""
    engine = make_engine(fresh_db(cluster, name))
    try:
        fetcher = CcxtFetcher(exchange_url=sim.url, settle_ms=0, families=families)
        fetcher.load()
        end = (fetcher.now_ms() - 40 * DAY_MS) // DAY_MS * DAY_MS
        start = end - DAYS * DAY_MS
        archive = BinanceArchive(sim.url)
        t0 = time.perf_counter()
        result = ArchivePass(archive, SqlArchiveWriter(engine), fetcher, verify=True,
                             concurrency=4).run(TF, {s: [(start, end)] for s in symbols})
        wall = time.perf_counter() - t0
        archive.close()
        bad = {s: r for s, r in result.items() if r.files_rejected or r.error}
        if bad:
            raise RuntimeError(f"{name}: files rejected or disagreeing: {bad}")
        return SqlCandleRepository(engine).count(), wall, sum(r.files for r in result.values())
    finally:
        engine.dispose()


def _archive(cluster, sim: Sim, kinds: dict[str, tuple[list[str], tuple]]) -> dict[str, float]:
    """The median rate of each kind of pass, once the simulator has built (and cached) the
    files (a first pass into a scratch database builds them): the client's rate, not the
    simulator's zip building. The kinds take turns, so that neither gets the quieter minutes."""
    warm = {k: _archive_pass(cluster, sim, f"{k}_warm", *v) for k, v in kinds.items()}
    passes: dict[str, list] = {k: [] for k in kinds}
    for i in range(REPEATS):
        for k, v in kinds.items():
            passes[k].append(_archive_pass(cluster, sim, f"{k}_{i}", *v))
    out = {}
    for k, (symbols, _) in kinds.items():
        rates = sorted(n / wall for n, wall, _ in passes[k])
        out[k] = rates[len(rates) // 2]
        n, _, files = passes[k][0]
        n0, w0, _ = warm[k]
        print(f"  {k}: {', '.join(symbols)}: {n:,} candles ({files} files): median "
              f"{out[k]:,.0f} candles/s of {REPEATS} passes "
              f"({', '.join(f'{r:,.0f}' for r in rates)}; {n0 / w0:,.0f} candles/s while the "
              "simulator built them)")
    return out


def main() -> dict:
    cluster = start_pg()
    out: dict = {}
    try:
        if "rest" in PARTS:
            out["rest"] = _rest(cluster)
        if "archive" not in PARTS:
            return out
        sim = Sim("--archive-cache", "512")  # both kinds' files stay built
        try:
            print(f"archive -> PostgreSQL, {DAYS} days of 1m, spot-check on:")
            rates = _archive(cluster, sim, {
                "spot_archive": (["BTC/USDT", "ETH/USDT"], ("spot",)),
                "futures_archive": (["BTC/USDT:USDT", "ETH/USDT:USDT"], ("usdm",))})
            spot, fut = rates["spot_archive"], rates["futures_archive"]
        finally:
            sim.stop()
        print(f"  futures archive {fut:,.0f} candles/s vs spot archive {spot:,.0f} -> "
              f"{fut / spot:.2f}x ({'meets' if fut >= 0.95 * spot else 'MISSES'} the target: "
              "the spot archive's rate or better, within 5 % of noise)")
        out.update(spot_archive=spot, futures_archive=fut)
    finally:
        cluster.destroy()
    return out


if __name__ == "__main__":
    main()
