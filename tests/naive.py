"""Slow, obviously-correct reference implementations used as test oracles.

Nothing in ``dpllnn`` imports this module.
"""
from __future__ import annotations

import numpy as np  # noqa: F401

# ---- section: bound oracles (loop-based interval / CROWN) --------------------------------

# ---- section: exact decision oracle (exhaustive phase enumeration + LP) -------------------
