"""The layering holds, and the schema can be upgraded from an installed wheel (not only a checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_layers_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "broken" not in r.stdout.lower().replace("0 broken", "")


def test_db_upgrade_from_an_installed_wheel(tmp_path):
    dist = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wheel = next(dist.glob("ohlcv-*.whl"))
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (target / "ohlcv_cli" / "migrations" / "env.py").is_file()
    assert not (target / "alembic").exists()  # nothing shadows the alembic library
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = "import ohlcv_cli, sys; assert ohlcv_cli.__file__.startswith(sys.argv[1]), ohlcv_cli.__file__; from ohlcv_cli.cli import main; main(sys.argv[2:])"
    r = subprocess.run([sys.executable, "-c", code, str(target), "db", "upgrade", "--database-url", "sqlite:///w.db"],
                       cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "upgraded: empty -> 0005" in r.stdout
    shutil.rmtree(dist)
