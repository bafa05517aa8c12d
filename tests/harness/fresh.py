"""Run a few lines of Python in a fresh interpreter with this checkout first on the path:
what a command really imports, without what the test process has loaded already."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_fresh(code: str, timeout: float = 60) -> str:
    """The standard output of ``code``; the test fails with its stderr if ``code`` fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
