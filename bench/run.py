"""`make bench`: every benchmark, figures printed as ratios against a baseline from the same run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import backfill_bench

    print("== backfill")
    backfill_bench.main()
    for name, title in (("consume_bench", "consume (Kafka -> PostgreSQL)"), ("gaps_bench", "gaps check"),
                        ("ws_bench", "websocket source (live latency, 1,000 symbols, 1s keeping up)"),
                        ("read_bench", "reading the store (pandas, derived, export)"),

                        ("archive_bench", "backfill from the archive, and REST at real latency"),
                        ("history_bench", "one road for history: run's backfill phase vs backfill"),
                        ("funding_bench", "funding backfill (3 years x 50 perpetuals, 100 ms latency)"),
                        ("futures_bench", "futures: REST under the /fapi budget, archive vs spot")):
        try:
            module = __import__(name)
        except ModuleNotFoundError:
            continue
        print(f"== {title}")
        module.main()


if __name__ == "__main__":
    main()
