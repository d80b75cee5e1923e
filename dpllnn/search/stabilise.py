"""Stabilisation between CDCL restarts (VeriStable's "Stabilize": Duong et al., 2024).

The root's unstable neurons closest to being stable -- the smallest ``min(-l, u)`` of their
pre-activation bounds ``[l, u]`` -- are given to a HiGHS MILP of the layers before them
(:class:`dpllnn.lp.milp.ReluMILP`, big-M with the root's sound bounds, the root-fixed phases
as constraints), which looks for one input on the other side of zero: the side nearer to zero
is tried (``z <= tol`` for a neuron that looks active, ``z >= -tol`` for one that looks
inactive).  A feasibility MILP stops at its first point, so a neuron that is really unstable
costs little; an infeasible answer proves the phase on the whole box under the fixed phases,
and the neuron becomes a level-0 unit of the search (valid: the fixed phases are themselves
level-0 facts).  Neurons proved in a layer tighten the encoding of the later layers.

Soundness: HiGHS declares infeasibility only when no point satisfies the constraints within its
tolerances (feasibility 1e-9), so tolerances only make it more permissive; the query is shifted
by ``tol = 1e-7 (1 + max(|l|, u))`` (as :mod:`dpllnn.reduce.stable` does), which covers those
tolerances and the float64 rounding of the encoded layers.  Any other status (time limit,
numerical trouble, a point found) proves nothing.  Dense chains only (the MILP encodes
:class:`~dpllnn.network.Network` layers).  Settings: ``CdclSettings.stabilise_*``.
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["stabilise"]


def stabilise(network, lb, ub, lbd, fixed, layer_offsets, *, max_neurons: int, milp_s: float,
              deadline: float, stats: dict | None = None) -> list[int]:
    """Phase literals (``+(j+1)`` stably active, ``-(j+1)`` stably inactive, flat neuron ``j``)
    proved by MILP for up to ``max_neurons`` near-stable neurons of hidden layers ``>= 1``.

    Parameters
    ----------
    network : Network (a dense chain)
    lb, ub : float64 (n_inputs,) -- the input box
    lbd : LayerBounds -- sound root bounds under the phases ``fixed`` (``z_lb``/``z_ub``, flat)
    fixed : int8 (n_relus,) -- the root-fixed phases (0 free)
    layer_offsets : sequence of int (n_layers + 1,) -- flat offsets of the hidden layers
    max_neurons : int -- candidates per call; milp_s : float -- seconds per MILP
    deadline : float -- ``time.monotonic()`` limit; stats : dict, optional -- gets
        ``stabilise_tried``, ``stabilise_proved``, ``stabilise_undecided`` (time limit or a
        HiGHS error: proves nothing), ``stabilise_s``
    """
    from ..lp.milp import ReluMILP

    t0 = time.monotonic()
    off = list(layer_offsets)
    n = off[-1]
    zl, zu = lbd.z_lb[:n].copy(), lbd.z_ub[:n].copy()
    free = (fixed == 0) & (zl < 0.0) & (zu > 0.0)
    free[: off[1]] = False        # layer 0 is affine in the box: its bounds are already exact
    cand = np.flatnonzero(free)
    if cand.size == 0 or max_neurons <= 0:
        return []
    score = np.minimum(-zl[cand], zu[cand])
    cand = cand[np.argsort(score, kind="stable")[:max_neurons]]
    out: list[int] = []
    tried = undecided = 0
    layer_of = np.searchsorted(off, cand, side="right") - 1
    for k in sorted(set(layer_of.tolist())):
        js = np.sort(cand[layer_of == k])
        if time.monotonic() >= deadline:
            break
        aff = network.affines[k]
        local = js - off[k]
        milp = ReluMILP(network, lb, ub, [zl[off[i]:off[i + 1]] for i in range(k)],
                        [zu[off[i]:off[i + 1]] for i in range(k)], k, aff.W[local], aff.b[local],
                        threads=None)
        for q, j in enumerate(js.tolist()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            l, u = float(zl[j]), float(zu[j])
            tol = 1e-7 * (1.0 + max(-l, u))
            tried += 1
            if u <= -l:   # looks inactive: is there an input with z >= -tol?
                status, _ = milp.feasible(q, lo=-tol, time_limit_s=min(milp_s, left))
                if status == "infeasible":
                    out.append(-(j + 1))
                    zu[j] = 0.0
                undecided += status == "unknown"
            else:         # looks active: is there an input with z <= tol?
                status, _ = milp.feasible(q, hi=tol, time_limit_s=min(milp_s, left))
                if status == "infeasible":
                    out.append(j + 1)
                    zl[j] = 0.0
                undecided += status == "unknown"
    if stats is not None:
        stats["stabilise_tried"] = stats.get("stabilise_tried", 0) + tried
        stats["stabilise_proved"] = stats.get("stabilise_proved", 0) + len(out)
        stats["stabilise_undecided"] = stats.get("stabilise_undecided", 0) + undecided
        stats["stabilise_s"] = stats.get("stabilise_s", 0.0) + time.monotonic() - t0
    return out
