"""Funding backfill (issue 19): 3 years x 50 USD-M perpetuals at 100 ms simulator latency, within
the 500-requests-per-5-minutes limit that /fapi/v1/fundingRate shares with fundingInfo: time,
requests, and the share of that limit; REST only, then with the archive's monthly files."""

from __future__ import annotations

from common import OHLCV, Sim, fresh_db, run_measured, start_pg

SYMBOLS = 50
DAYS = 1095
LIMIT = 500  # requests per 5 minutes
WINDOW_S = 300


def _run(cluster, name: str, source: str) -> dict:
    sim = Sim("--latency-ms", "100", "--extra-futures", str(SYMBOLS))
    try:
        url = fresh_db(cluster, name)
        symbols = ",".join(f"SIM{i:03d}/USDT:USDT" for i in range(SYMBOLS))
        env = {"DATABASE_URL": url, "OHLCV_EXCHANGE_URL": sim.url, "OHLCV_ARCHIVE_URL": sim.url,
               "LOG_LEVEL": "WARNING"}
        r, wall, rss = run_measured([*OHLCV, "funding", "backfill", "--days", str(DAYS),
                                     "--symbols", symbols, "--source", source, "--json"], env)
        if r.returncode:
            raise RuntimeError(f"funding backfill failed: {r.stderr[-800:]}")
        import json

        report = json.loads(r.stdout)
        stats = sim.stats()
        paths = stats.get("paths", {})
        funding_requests = paths.get("/fapi/v1/fundingRate", 0) + paths.get("/fapi/v1/fundingInfo", 0)
        written = sum(s["written"] for s in report["symbols"])
        months = sum(s["archive_months"] for s in report["symbols"])
        # the share of the limit: the requests of the busiest 5-minute window (the whole run,
        # when it takes less) over 500
        windows = max(1.0, wall / WINDOW_S)
        share = funding_requests / (LIMIT * windows)
        return {"source": source, "seconds": wall, "written": written, "requests": funding_requests,
                "months": months, "share": share, "rejected_429": stats.get("rejected_429", 0),
                "rss": rss}
    finally:
        sim.stop()


def main() -> dict:
    cluster = start_pg()
    results = {}
    try:
        for source in ("rest", "auto"):
            m = _run(cluster, f"bench_funding_{source}", source)
            what = "REST only" if source == "rest" else "archive months + REST"
            print(f"funding backfill, {SYMBOLS} perpetuals x {DAYS} days (8h), {what}, 100 ms "
                  f"latency: {m['written']:,} settlements in {m['seconds']:.1f} s, "
                  f"{m['requests']} fundingRate/fundingInfo requests = {m['share']:.1%} of the "
                  f"500-per-5-minutes limit, {m['months']} archive months, "
                  f"{m['rejected_429']} answers 429, peak RSS {m['rss']:.0f} MiB")
            results[source] = m
    finally:
        cluster.destroy()
    return results


if __name__ == "__main__":
    main()
