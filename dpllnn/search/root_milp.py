"""The root MILP stage of the CDCL path: HiGHS's exact MILP (:class:`dpllnn.lp.graph_milp.
GraphMILP`) on the disjuncts the root bounds leave open, where the network is shallow.

Why a MILP beside the phase search.  With one layer of unstable ReLUs the triangle relaxation
is the whole gap: every other neuron is exact, so a phase split only tightens the one neuron it
fixes.  On verivital's ``Convnet_avgpool`` at eps 0.04 (5,299 unstable neurons in its one ReLU
layer) the CDCL search opened 800 nodes a minute with the open bound stuck at -0.486, while
HiGHS (presolve, probing, cuts) proves each open disjunct at its root in about 10 s.  With
two or more unstable layers the MILP rarely finishes (mnist 256x4 at eps 0.05, 707 binaries:
no answer in 30 s; oval21 ``cifar_base`` img4631, 451 binaries: none in 60 s), so the stage
runs only where the unstable neurons lie in one layer (:func:`unstable_depth` ``== 1``,
``CdclSettings.root_milp_max_depth``) and the binaries fit ``root_milp_max_binaries``.
"""
from __future__ import annotations

import time

import numpy as np

from ..lp.graph_milp import GraphMILP, milp_size
from ..model.graph import Relu

__all__ = ["unstable_depth", "milp_root"]


def unstable_depth(graph, L, U) -> int:
    """The largest number of ReLU nodes with unstable neurons on one path through ``graph``.

    Parameters
    ----------
    graph : dpllnn.model.graph.Graph
    L, U : ndarray (n_relus,) -- pre-activation bounds in ReLU-number order

    Returns
    -------
    int -- 0 when no neuron is unstable; 1 when no unstable ReLU node lies behind another
    """
    L, U = np.asarray(L).reshape(-1), np.asarray(U).reshape(-1)
    off = graph.layer_offsets
    depth = [0] * len(graph.nodes)
    k = 0
    for v, nd in enumerate(graph.nodes[1:], 1):
        d = max(depth[i] for i in nd.inputs)
        if isinstance(nd.op, Relu):
            lo, hi = L[off[k]:off[k + 1]], U[off[k]:off[k + 1]]
            d += int(np.any((lo < 0.0) & (hi > 0.0)))
            k += 1
        depth[v] = d
    return max(depth)


def milp_root(network, spec, live, open_per_case, roots, deadline, stats, cfg, validate):
    """Refute the open disjuncts of the live cases by their exact MILP, within
    ``cfg.root_milp_share`` of the time left (an equal share per open disjunct, unused time
    passed on), where :func:`unstable_depth` of the root bounds is at most
    ``cfg.root_milp_max_depth`` and the binaries at most ``cfg.root_milp_max_binaries``.

    Parameters
    ----------
    network : Network or Graph;  spec : Spec
    live : list of int -- the cases to look at;  open_per_case : dict case -> list of disjunct
        indices (updated: refuted disjuncts leave it);  roots : dict case -> LayerBounds (the
        root bounds, sound on the case's box)
    deadline : float (``time.monotonic()``);  stats : dict (``milp_refuted``, ``milp_s``)
    cfg : CdclSettings
    validate : callable ndarray (n_inputs,) -> Counterexample or None -- replays a feasible
        MILP point (a candidate only: the MILP's rows are loosened)

    Returns
    -------
    Counterexample or None -- the first MILP point ``validate`` confirms
    """
    from ..model.lower import graph_from_network

    now = time.monotonic()
    until = now + cfg.root_milp_share * max(0.0, deadline - now)
    graph = network if getattr(network, "is_graph", False) else None
    todo = []
    for ci in live:
        root = roots.get(ci)
        if not open_per_case[ci] or root is None or root.infeasible:
            continue
        if graph is None:
            graph = graph_from_network(network)
        _, nb = milp_size(graph, root.lb, root.ub)
        if nb > cfg.root_milp_max_binaries or \
                unstable_depth(graph, root.lb, root.ub) > cfg.root_milp_max_depth:
            continue
        todo += [(ci, j) for j in open_per_case[ci]]
    if not todo:
        return None
    t0 = time.monotonic()
    refuted = 0
    try:
        for n, (ci, j) in enumerate(todo):
            left = until - time.monotonic()
            if left <= 0.05:
                break
            case, root = spec.cases[ci], roots[ci]
            dj = case.disjuncts[j]
            if dj.C.shape[0] == 0:
                continue
            milp = GraphMILP(graph, case.lb, case.ub, root.lb, root.ub, dj.C, dj.d)
            status, x = milp.refute(left / (len(todo) - n))
            if status == "infeasible":
                open_per_case[ci] = [i for i in open_per_case[ci] if i != j]
                refuted += 1
            elif status == "feasible":
                cex = validate(x)
                if cex is not None:
                    return cex
    finally:
        stats["milp_refuted"] = stats.get("milp_refuted", 0) + refuted
        stats["milp_s"] = stats.get("milp_s", 0.0) + time.monotonic() - t0
    return None
