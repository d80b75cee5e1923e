"""Top-level strategy: combine falsification and search into a :class:`Result`.

Current state: falsification by random sampling only (answers ``sat`` or ``unknown``); the
complete search plugs in here.
"""
from __future__ import annotations

import time

import numpy as np

from ..network import Network
from ..result import Result, Verdict
from ..spec import Spec
from ..validate import check_counterexample


def verify(network: Network, spec: Spec, *, timeout_s: float = 60.0, seed: int = 0,
           workers: int | None = None, mode: str = "auto") -> Result:
    """Decide ``spec`` on ``network``.

    Parameters
    ----------
    network : Network
    spec : Spec -- the unsafe set (VNN-LIB semantics)
    timeout_s : float -- wall-clock limit, seconds
    seed : int -- makes runs reproducible
    workers : int or None -- parallel workers (None: all cores)
    mode : {"auto", "inputsplit", "cdcl"}

    Returns
    -------
    Result -- ``sat`` only with a counterexample validated by float64 and onnxruntime.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    rng = np.random.default_rng(seed)
    stats = {"mode": "sampling", "samples": 0}
    if all(c.is_empty for c in spec.cases):
        return Result(Verdict.UNSAT, time.monotonic() - t0, stats=stats,
                      reason="every input box is empty")
    while time.monotonic() < deadline - 0.05 and stats["samples"] < 20000:
        for case in spec.cases:
            if case.is_empty:
                continue
            xs = rng.uniform(case.lb, case.ub, size=(256, case.lb.size))
            ys = network.forward(xs)
            stats["samples"] += len(xs)
            for disj in case.disjuncts:
                hit = np.nonzero(disj.margin(ys) <= 0)[0]
                for i in hit[:4]:
                    cex = check_counterexample(network, spec, xs[i])
                    if cex is not None:
                        return Result(Verdict.SAT, time.monotonic() - t0, cex, stats,
                                      reason="random sampling")
    return Result(Verdict.UNKNOWN, time.monotonic() - t0, stats=stats,
                  reason="no counterexample by sampling; complete search not available")
