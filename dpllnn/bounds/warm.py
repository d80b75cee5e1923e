"""Compile (or load from the numba cache) every bound kernel once, on a tiny network."""
from __future__ import annotations

import time

import numpy as np


def warmup() -> float:
    """Run every method once on a 2-3-3-2 network; returns the seconds it took.

    Call it in ``prepare_instance.sh`` (or at worker start) so that the first real bound
    computation does not pay numba's compilation / cache loading.
    """
    from ..network import Affine, Network
    from .alpha import alpha_crown
    from .pack import pack
    from .propagate import batch_crown, batch_objective_bounds, compute_bounds
    from .scores import babsr_scores

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    net = Network([Affine(rng.normal(size=(3, 2)), rng.normal(size=3)),
                   Affine(rng.normal(size=(3, 3)), rng.normal(size=3)),
                   Affine(rng.normal(size=(2, 3)), rng.normal(size=2))])
    P = pack(net)
    lb, ub = -np.ones(2), np.ones(2)
    C, d = np.array([[1.0, -1.0]]), np.zeros(1)
    phase = np.zeros(P.n_relus, dtype=np.int8)
    for m in ("ibp", "symbolic", "crown"):
        r = compute_bounds(P, lb, ub, phase, m, C=C, d=d)
    compute_bounds(P, lb, ub, phase, "crown", C=C, d=d, early_stop=True)
    alpha_crown(P, lb, ub, phase, C, d, iters=2, intermediate=True, intermediate_iters=2)
    batch_objective_bounds(P, np.stack([lb, lb / 2]), np.stack([ub, ub / 2]), C, d, "symbolic")
    batch_crown(P, np.stack([lb, lb / 2]), np.stack([ub, ub / 2]), C, d, coeffs=True)
    babsr_scores(P, r, C[0], 0.0)
    return time.perf_counter() - t0
