"""Run a subset of the bound tests with NUMBA_DISABLE_JIT=1 (kernels as plain Python) in a
subprocess, so the interpreted kernels are checked against the same properties."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_bounds_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", DPLLNN_BOUNDS_EXAMPLES="12")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "test_bounds.py"),
           "-k", "soundness or ordering or naive or batch or phase_semantics or incremental"]
    r = subprocess.run(cmd, env=env, cwd=HERE.parent, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
