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
    from .compute import compute_bounds
    from .pack import pack
    from .propagate import batch_crown, batch_objective_bounds
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
    # the row-parallel kernels that only lent cores run (propagate_layers compiles its own)
    from . import kernels as K
    from .kernels_alpha import adam_slopes_rows
    from .propagate import objective_lower_split
    objective_lower_split(P, lb, ub, r, C, d, [0], [1])
    args = (P.W, P.b, P.w_off, P.sizes, P.zoff, lb, ub, r.z_lb, r.z_ub, r.z_phase, r.wa)
    out = np.empty(1)
    K.objective_lower_rows(*args, C, -d, np.zeros((0, 0)), np.zeros((0, 0)), P.margin_factor,
                           out, np.zeros((0, 0)), np.zeros(1, dtype=np.int64),
                           np.ones(1, dtype=np.int8), 1)
    alpha = np.zeros((1, P.n_relus))
    adam_slopes_rows(*args[:7], np.maximum(np.abs(lb), np.abs(ub)), *args[7:], np.ones((1, 3)),
                     np.zeros(1), np.zeros(1), 0, alpha, P.margin_factor, 1, 0.1, P.n_relus,
                     np.empty(1), np.empty_like(alpha), 1)
    return time.perf_counter() - t0
