"""The public Python API: one function per command.

Each takes a `Settings` (or keyword arguments naming settings fields, which build one over the
environment and `.env`), returns the report the CLI renders, and never prints or exits. Errors
are `ohlcv_cli.core.errors.OhlcvError`s.
"""

from ohlcv_cli.api.live import RunResult, TopicResult, consume, run, stream, supervise, topic_create
from ohlcv_cli.api.markets import symbols
from ohlcv_cli.api.history import (
    RevisionResult, StatusReport, UpgradeResult, backfill, db_current, gaps_check, gaps_repair,
    status, upgrade,
)
from ohlcv_cli.api.wiring import USES, settings_for
from ohlcv_cli.api.funding import funding_backfill, funding_check, funding_repair

__all__ = [
    "upgrade", "db_current", "backfill", "gaps_check", "gaps_repair", "status", "stream",
    "consume", "run", "topic_create", "supervise", "symbols", "settings_for", "USES",
    "UpgradeResult", "RevisionResult", "StatusReport", "RunResult", "TopicResult",
    "funding_backfill", "funding_check", "funding_repair",
]
