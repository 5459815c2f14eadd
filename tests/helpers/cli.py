"""Running the ``recon3d`` command line as a user does, and checking what it printed."""
from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """``python -m recon3d ARGS`` in a fresh process; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "recon3d", *args], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def assert_one_line_user_error(result: subprocess.CompletedProcess, needle: str) -> None:
    """Exit code 1, one non-empty stderr line containing ``needle``, no traceback."""
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert needle in lines[0], lines[0]
