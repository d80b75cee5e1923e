"""The HiGHS cell LP against the scipy oracle (different formulation) on random tiny networks."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpllnn.lp import CellLP, compose_cell, lp_minimize

from naive import all_phases, cell_margin, random_network, random_spec

TOL = 1e-6


def _z(net, x):
    return np.concatenate(net.pre_activations(x[None]), axis=1)[0]


def _cell_ok(net, x, phase, slack=1e-6):
    z = _z(net, x) if net.n_relus else np.zeros(0)
    return bool(np.all(phase * z >= -slack * (1 + np.abs(z).max(initial=0))))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_in=st.integers(1, 3),
       hidden=st.lists(st.integers(1, 4), min_size=1, max_size=2), n_out=st.integers(1, 3))
def test_cell_lp_matches_oracle(seed, n_in, hidden, n_out):
    rng = np.random.default_rng(seed)
    net = random_network(rng, n_in, tuple(hidden), n_out)
    spec = random_spec(rng, net, n_cases=1, n_disjuncts=1)
    case = spec.cases[0]
    dj = case.disjuncts[0]
    lp = CellLP(net)
    phases = list(all_phases(net.n_relus))
    for k in rng.choice(len(phases), size=min(6, len(phases)), replace=False):
        phase = phases[k]
        t_ref, _ = cell_margin(net, case.lb, case.ub, phase, dj.C, dj.d)
        st_m, x_m, t_m = lp.solve(case.lb, case.ub, phase, dj.C, dj.d, objective="max_margin")
        st_f, x_f = lp.solve(case.lb, case.ub, phase, dj.C, dj.d)
        if np.isinf(t_ref):                      # empty cell
            assert st_m in ("infeasible", "unknown")
            assert st_f in ("infeasible", "unknown")
            continue
        # a non-empty cell is never called infeasible, whatever the disjunct
        assert st_m != "infeasible"
        if st_m == "feasible":
            assert abs(t_m - t_ref) <= TOL * (1 + abs(t_ref))
            assert case.contains(x_m) and _cell_ok(net, x_m, phase)
        if t_ref < -TOL:
            assert st_f == "feasible"
            assert case.contains(x_f) and _cell_ok(net, x_f, phase)
            assert dj.margin(net.forward(x_f)) <= 1e-6 * (1 + np.abs(dj.d).max())
        elif t_ref > 1e-4:
            assert st_f == "infeasible"          # robustly infeasible: must be pruned
        if st_f == "infeasible":
            assert t_ref > 0                     # soundness: never prune a reachable cell


def test_compose_cell_matches_forward():
    rng = np.random.default_rng(0)
    net = random_network(rng, 3, (5, 4), 2)
    X = rng.normal(size=(20, 3))
    for x in X:
        phase = np.where(_z(net, x) > 0, 1, -1).astype(np.int8)
        A_h, c_h, A_o, c_o = compose_cell(net, phase)
        np.testing.assert_allclose(A_h @ x + c_h, _z(net, x),
                                   atol=1e-12)
        np.testing.assert_allclose(A_o @ x + c_o, net.forward(x), atol=1e-12)


def test_cell_lp_exhaustive_small():
    """Over every cell: some cell is feasible iff the oracle's minimum margin is <= 0."""
    rng = np.random.default_rng(3)
    for _ in range(8):
        net = random_network(rng, 2, (3, 2), 2)
        spec = random_spec(rng, net, n_cases=1, n_disjuncts=1)
        case, dj = spec.cases[0], spec.cases[0].disjuncts[0]
        lp = CellLP(net)
        refs = [cell_margin(net, case.lb, case.ub, p, dj.C, dj.d)[0] for p in all_phases(5)]
        sts = [lp.solve(case.lb, case.ub, p, dj.C, dj.d)[0] for p in all_phases(5)]
        for r, s in zip(refs, sts):
            assert not (s == "infeasible" and r <= 0)
            assert not (s == "feasible" and r > 1e-6)


def test_empty_disjunct_and_empty_box():
    rng = np.random.default_rng(1)
    net = random_network(rng, 2, (2,), 2)
    lp = CellLP(net)
    lb, ub = -np.ones(2), np.ones(2)
    x = np.array([0.3, -0.2])
    phase = np.where(_z(net, x) > 0, 1, -1).astype(np.int8)
    st, xs = lp.solve(lb, ub, phase, np.zeros((0, 2)), np.zeros(0))
    assert st == "feasible" and np.all(xs >= lb) and np.all(xs <= ub)
    st, xs = lp.solve(ub, lb, phase, np.eye(2), np.zeros(2))
    assert st == "infeasible"


def test_lp_minimize():
    st, v, x = lp_minimize([1.0, 1.0], [[-1.0, -1.0]], [-1.0], [(0, 5), (0, 5)])
    assert st == "optimal" and abs(v - 1.0) < 1e-9 and abs(x.sum() - 1.0) < 1e-9
    st, v, x = lp_minimize([1.0, 1.0], [[1.0, 1.0]], [-1.0], [(0, 5), (0, 5)])
    assert st == "infeasible" and x is None
    st, v, x = lp_minimize([-1.0, 0.0])
    assert st == "unbounded"
    st, v, x = lp_minimize([1.0, 2.0], A_eq=[[1.0, 1.0]], b_eq=[3.0], bounds=[(0, 10), (0, None)])
    assert st == "optimal" and abs(v - 3.0) < 1e-9


def _root_bounds(net, lb, ub, phase=None):
    from dpllnn.bounds import compute_bounds, pack

    packed = pack(net)
    ph = np.zeros(net.n_relus, dtype=np.int8) if phase is None else phase.copy()
    return compute_bounds(packed, lb, ub, ph, "crown")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_in=st.integers(1, 3),
       hidden=st.lists(st.integers(1, 4), min_size=1, max_size=2), n_out=st.integers(1, 3))
def test_layered_lp_cells_match_oracle(seed, n_in, hidden, n_out):
    """The incremental layered LP: same verdicts as the oracle on cells, reused across queries."""
    from dpllnn.lp.layered import LayeredLP

    rng = np.random.default_rng(seed)
    net = random_network(rng, n_in, tuple(hidden), n_out)
    spec = random_spec(rng, net, n_cases=1, n_disjuncts=2)
    case = spec.cases[0]
    C = np.vstack([dj.C for dj in case.disjuncts])
    d = np.concatenate([dj.d for dj in case.disjuncts])
    rows = np.cumsum([0] + [dj.C.shape[0] for dj in case.disjuncts])
    root = _root_bounds(net, case.lb, case.ub)
    if root.infeasible:
        return
    lp = LayeredLP(net, C, d, case.lb, case.ub, root.lb, root.ub)
    phases = list(all_phases(net.n_relus))
    for k in rng.choice(len(phases), size=min(8, len(phases)), replace=False):
        phase = phases[k]
        for i, dj in enumerate(case.disjuncts):
            t_ref, _ = cell_margin(net, case.lb, case.ub, phase, dj.C, dj.d)
            # bounds: the root's (always valid) or the phase's own when consistent
            b = _root_bounds(net, case.lb, case.ub, phase)
            L, U = (root.lb, root.ub) if b.infeasible or k % 2 else (b.lb, b.ub)
            s, x = lp.solve(phase, L, U, (rows[i], rows[i + 1]))
            if s == "infeasible":
                assert t_ref > 0                 # soundness
            if s == "feasible":
                assert case.contains(x) and _cell_ok(net, x, phase)
                assert dj.margin(net.forward(x)) <= 1e-6 * (1 + np.abs(dj.d).max())
            if np.isfinite(t_ref) and t_ref < -TOL:
                assert s == "feasible"
            elif t_ref > 1e-4:
                assert s == "infeasible"


def test_layered_lp_relaxation_is_sound():
    """Partial assignments (triangle for the free neurons): never refutes a reachable disjunct."""
    from dpllnn.lp.layered import LayeredLP

    rng = np.random.default_rng(7)
    n_ref = 0
    for _ in range(15):
        net = random_network(rng, 2, (4, 3), 2)
        spec = random_spec(rng, net, n_cases=1, n_disjuncts=2)
        case = spec.cases[0]
        C = np.vstack([dj.C for dj in case.disjuncts])
        d = np.concatenate([dj.d for dj in case.disjuncts])
        rows = np.cumsum([0] + [dj.C.shape[0] for dj in case.disjuncts])
        root = _root_bounds(net, case.lb, case.ub)
        if root.infeasible:
            continue
        lp = LayeredLP(net, C, d, case.lb, case.ub, root.lb, root.ub)
        cells = list(all_phases(net.n_relus))
        refs = [[cell_margin(net, case.lb, case.ub, p, dj.C, dj.d)[0] for dj in case.disjuncts]
                for p in cells]
        for _ in range(10):
            part = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=net.n_relus)
            b = _root_bounds(net, case.lb, case.ub, part)
            if b.infeasible:
                continue
            for i in range(len(case.disjuncts)):
                s, _ = lp.solve(part, b.lb, b.ub, (rows[i], rows[i + 1]), mode="refute")
                reach = any(r[i] <= 0 for p, r in zip(cells, refs)
                            if np.all((part == 0) | (part == p)))
                if s == "infeasible":
                    n_ref += 1
                    assert not reach
    assert n_ref > 0


def test_layered_lp_iteration_limit_is_reported_and_per_call():
    """``max_iterations`` stops a run with ``"unknown"`` and ``limited`` set (the CDCL theory's
    deterministic LP gate); the next call without it solves to the end and clears the flag."""
    from dpllnn.lp.layered import LayeredLP

    rng = np.random.default_rng(11)
    net = random_network(rng, 6, (24, 24), 3)
    spec = random_spec(rng, net, n_cases=1, n_disjuncts=1)
    case = spec.cases[0]
    C, d = case.disjuncts[0].C, case.disjuncts[0].d
    root = _root_bounds(net, case.lb, case.ub)
    assert not root.infeasible
    ph = np.zeros(net.n_relus, dtype=np.int8)
    full = LayeredLP(net, C, d, case.lb, case.ub, root.lb, root.ub)
    s_full, _ = full.solve(ph, root.lb, root.ub, (0, C.shape[0]), mode="refute")
    assert not full.limited and s_full in ("infeasible", "unknown")
    lp = LayeredLP(net, C, d, case.lb, case.ub, root.lb, root.ub)
    s, _ = lp.solve(ph, root.lb, root.ub, (0, C.shape[0]), mode="refute", max_iterations=1)
    assert s == "unknown" and lp.limited
    s2, _ = lp.solve(ph, root.lb, root.ub, (0, C.shape[0]), mode="refute")
    assert not lp.limited and s2 == s_full
