"""argparse value types shared by every subcommand (one place for the checks and messages)."""
from __future__ import annotations

import argparse
import math


def positive_float(text: str) -> float:
    """A finite number > 0 (e.g. a timeout in seconds)."""
    v = _float(text)
    if not 0 < v < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive finite number: {text!r}")
    return v


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    v = _float(text)
    if not 0 <= v < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (e.g. a number of workers)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return v


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
