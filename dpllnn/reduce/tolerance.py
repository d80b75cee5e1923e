"""Tolerance-based pruning: remove or linearise unstable neurons while ``max |N - N'| <= eps``.

After exact pruning, each neuron that is not stable on the region is a candidate for two
approximations: *remove* it (treat it as inactive) or *linearise* it (treat it as active).  The
option with the smaller sampled impact (``max relu(+-z) * |outgoing weights|_1``) is tried first,
candidates in increasing impact.  A change is kept only when a sound check proves the new network
within ``eps`` of the *original* on every box: the form-matching bound of
:mod:`dpllnn.reduce.forms` (whose error terms account for the changed neurons), else, if time is
left, the full :func:`dpllnn.reduce.equiv.check_equivalence` (MILP / search).  Errors therefore
never accumulate beyond ``eps``.
"""
from __future__ import annotations

import time

import numpy as np

from ..network import Network
from .equiv import check_equivalence
from .forms import form_difference_bound
from .prune import prune_network
from .stable import StableSets, sample_box

__all__ = ["prune_with_tolerance"]


def _impacts(network: Network, stable: StableSets, boxes, rng):
    X = np.vstack([sample_box(lb, ub, 512, rng) for lb, ub in boxes])
    Z = np.hstack(network.pre_activations(X))
    out_norm = np.concatenate([np.sum(np.abs(network.affines[k + 1].W), axis=0)
                               for k in range(network.n_hidden_layers)])
    pos = np.max(np.maximum(Z, 0.0), axis=0) * out_norm
    neg = np.max(np.maximum(-Z, 0.0), axis=0) * out_norm
    return pos, neg


def prune_with_tolerance(network: Network, stable: StableSets, boxes, eps: float, *,
                         budget_s: float = 30.0, check_timeout_s: float = 2.0, seed: int = 0):
    """Exact pruning plus approximations proved within ``eps`` of ``network`` on ``boxes``.

    Parameters
    ----------
    network : Network; stable : StableSets (certified on ``boxes``); boxes : list of (lb, ub)
    eps : float > 0 -- the proved bound on ``max_i |N(x) - N'(x)|_i``
    budget_s : float -- time for the greedy loop; check_timeout_s : per MILP/search check

    Returns
    -------
    (Network, PruneReport, changes) -- ``changes`` lists ``{"neuron", "as", "bound"}`` accepted
    """
    t0 = time.monotonic()
    rng = np.random.default_rng(seed)
    phase = stable.phase.copy()
    pos, neg = _impacts(network, stable, boxes, rng)
    cands = [(min(pos[i], neg[i]), i, -1 if pos[i] <= neg[i] else 1)
             for i in np.nonzero(phase == 0)[0]]
    cands.sort()
    changes = []
    best, rep = prune_network(network, stable)
    for impact, i, sign in cands:
        if time.monotonic() - t0 > budget_s:
            break
        trial = phase.copy()
        trial[i] = sign
        st = StableSets(trial, stable.how, stable.hidden_sizes, stable.boxes)
        cand, crep = prune_network(network, st)
        bounds = [form_difference_bound(network, cand, lb, ub, stable.phase, match_tol=0.05)
                  for lb, ub in boxes]
        ok = all(b is not None and np.all(b <= eps) for b in bounds)
        how = "forms"
        if not ok and check_timeout_s > 0:
            er = check_equivalence(network, cand, boxes, eps, timeout_s=check_timeout_s, seed=seed,
                                   phases=[stable.phase] * len(boxes), verify_share=0.0)
            ok, how = er.proved, er.how
        if ok:
            phase = trial
            best, rep = cand, crep
            bnd = max(float(np.max(b)) for b in bounds if b is not None) if how == "forms" else eps
            changes.append({"neuron": int(i), "as": "inactive" if sign < 0 else "active",
                            "proof": how, "bound": bnd})
    rep.steps["eps_removed"] = sum(c["as"] == "inactive" for c in changes)
    rep.steps["eps_linearised"] = sum(c["as"] == "active" for c in changes)
    rep.time_s = time.monotonic() - t0
    return best, rep, changes
