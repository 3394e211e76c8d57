"""The README's "From Python" example runs as written against a store built by the README's own
step (`ohlcv backfill --start 2024-03-01 --end 2024-03-03`, here against the simulator)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent


def _from_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_from_python_example_runs_on_the_store_the_readme_builds(sim, tmp_path):
    r = run_cli("backfill", "--start", "2024-03-01", "--end", "2024-03-03",
                "--exchange-url", sim.url, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    code = _from_python_example()
    assert 'open_store("sqlite:///ohlcv.db")' in code and "assert len(df) == 1440" in code
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "btc.parquet").is_file() and (tmp_path / "chart.png").is_file()
    assert "Decimal('" in r.stdout  # the exact read prints a Decimal
