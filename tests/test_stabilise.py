"""MILP stabilisation (:mod:`dpllnn.search.stabilise`): a neuron is only ever declared stable in
the direction the exact optimum over the box allows (exhaustive cell LPs on tiny networks)."""
from __future__ import annotations

import numpy as np

import dpllnn
from dpllnn.bounds import compute_bounds, pack
from dpllnn.network import Network
from dpllnn.search.stabilise import stabilise
from dpllnn.settings import CdclSettings, SearchSettings
from dpllnn.spec import Case, Disjunct
from naive import exhaustive_margin, random_network, small_margin_problem


def _exact_range(net, lb, ub, j):
    """Exact (min, max) of flat hidden neuron ``j``'s pre-activation over the box."""
    off = np.concatenate([[0], np.cumsum(net.hidden_sizes)])
    k = int(np.searchsorted(off, j, side="right") - 1)
    trunc = Network(net.affines[:k + 1])
    e = np.zeros((1, trunc.n_outputs))
    e[0, j - off[k]] = 1.0
    case = Case(lb, ub, [Disjunct(e, np.zeros(1))])
    lo = exhaustive_margin(trunc, case, Disjunct(e, np.zeros(1)))
    hi = -exhaustive_margin(trunc, case, Disjunct(-e, np.zeros(1)))
    return lo, hi


def test_proved_phases_agree_with_the_exact_range():
    proved = 0
    for seed in range(24):
        rng = np.random.default_rng(seed)
        net = random_network(rng, n_in=3, hidden=(4, 4, 3), n_out=2)
        c, h = rng.uniform(-1, 1, 3), rng.uniform(0.1, 0.8, 3)
        lb, ub = c - h, c + h
        pk = pack(net)
        lbd = compute_bounds(pk, lb, ub, None, "crown")
        fixed = np.zeros(net.n_relus, dtype=np.int8)
        st = {}
        lits = stabilise(net, lb, ub, lbd, fixed, pk.layer_offsets, max_neurons=64, milp_s=5.0,
                         deadline=1e18, stats=st)
        assert st.get("stabilise_proved", 0) == len(lits) <= st.get("stabilise_tried", 0)
        for lit in lits:
            j = abs(lit) - 1
            assert lbd.z_lb[j] < 0 < lbd.z_ub[j]          # it was unstable under CROWN
            lo, hi = _exact_range(net, lb, ub, j)
            if lit > 0:
                assert lo > 0, (seed, j, lo, hi)
            else:
                assert hi < 0, (seed, j, lo, hi)
            proved += 1
    assert proved >= 3, proved          # the MILP did prove phases CROWN left open


def test_cdcl_with_and_without_stabilisation_agree():
    for seed in range(4):
        net, spec, _ = small_margin_problem(40 + seed, hidden=(4, 4, 3))
        got = []
        for on in (True, False):
            cfg = SearchSettings(cdcl=CdclSettings(stabilise=on, restart_base=1,
                                                   stabilise_milp_s=1.0))
            got.append(dpllnn.verify(net, spec, mode="cdcl", timeout_s=20.0, workers=1,
                                     falsify_s=0.0, settings=cfg).verdict.value)
        assert got == ["unsat", "unsat"], (seed, got)
