"""Verification results: the verdict lattice, counterexamples, statistics.

The verdict lattice follows DNNV: for a disjunction of cases, ``sat`` if any part is ``sat``;
``unsat`` only if every part is ``unsat``; otherwise ``timeout`` if any part timed out, else
``unknown``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Verdict(str, enum.Enum):
    """``sat``: a counterexample exists (the unsafe set is reachable); ``unsat``: proved safe."""

    SAT = "sat"
    UNSAT = "unsat"
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"

    def __str__(self) -> str:  # prints as the VNN-COMP word
        return self.value

    @property
    def definitive(self) -> bool:
        return self in (Verdict.SAT, Verdict.UNSAT)

    @staticmethod
    def combine(verdicts) -> "Verdict":
        """Join over a disjunction of parts (cases or disjuncts)."""
        vs = list(verdicts)
        if any(v is Verdict.SAT for v in vs):
            return Verdict.SAT
        if vs and all(v is Verdict.UNSAT for v in vs):
            return Verdict.UNSAT
        if any(v is Verdict.TIMEOUT for v in vs):
            return Verdict.TIMEOUT
        return Verdict.UNKNOWN if vs else Verdict.UNSAT


@dataclass
class Counterexample:
    """A validated counterexample.

    Attributes
    ----------
    x : ndarray, shape (n_inputs,), float64 -- inside the case's box
    y : ndarray, shape (n_outputs,), float64 -- the onnxruntime output (reported in result files)
    y_float64 : ndarray, shape (n_outputs,) -- dpllnn's own float64 forward pass
    case, disjunct : int -- which case and disjunct it satisfies
    """

    x: np.ndarray
    y: np.ndarray
    y_float64: np.ndarray | None = None
    case: int = 0
    disjunct: int = 0

    def to_json(self) -> dict:
        return {"x": [float(v) for v in self.x], "y": [float(v) for v in self.y],
                "case": self.case, "disjunct": self.disjunct}


@dataclass
class Result:
    """Outcome of :func:`dpllnn.verify`.

    Attributes
    ----------
    verdict : Verdict
    time_s : float -- wall-clock seconds
    counterexample : Counterexample or None -- set exactly when ``verdict`` is ``sat``
    stats : dict -- counters (nodes, conflicts, ...) and per-component times (``*_s``)
    reason : str -- why ``unknown``/``timeout`` (or how it was decided)
    """

    verdict: Verdict
    time_s: float = 0.0
    counterexample: Counterexample | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def __post_init__(self):
        if (self.verdict is Verdict.SAT) != (self.counterexample is not None):
            raise ValueError("a sat Result needs a counterexample, and only a sat Result has one")

    def to_json(self) -> dict:
        return {"result": self.verdict.value, "time_s": round(float(self.time_s), 6),
                "counterexample": self.counterexample.to_json() if self.counterexample else None,
                "reason": self.reason, "stats": _jsonable(self.stats)}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj
