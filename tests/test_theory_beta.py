"""The theory's beta-CROWN step (dpllnn.search.theory_beta): it works only on the rows of open
disjuncts, never lowers a bound, and what it returns holds on samples of the node's cell."""
from __future__ import annotations

import time

import numpy as np
import pytest

from dpllnn.bounds import pack
from dpllnn.search.theory import ReluTheory
from dpllnn.settings import TheorySettings
from naive import random_network, random_spec


@pytest.mark.parametrize("seed", range(12))
def test_beta_step_keeps_refuted_rows_and_holds_on_samples(seed):
    rng = np.random.default_rng(900 + seed)
    net = random_network(rng, n_in=3, hidden=(8, 8), n_out=3)
    spec = random_spec(rng, net, n_cases=1, n_disjuncts=2)
    packed = pack(net)
    th = ReluTheory(net, spec, 0, [0, 1], packed, [packed.n_relus + 1, packed.n_relus + 2],
                    time.monotonic() + 30, settings=TheorySettings(beta_iters_dense=8))
    assert th.beta_iters == 8 and th._beta_gp is not None
    snap = th.snaps[-1]
    unst = np.flatnonzero(snap.lbd.unstable)
    if unst.size < 2:
        pytest.skip("fewer than two unstable neurons")
    # split two unstable neurons, as a search node would
    picks = rng.choice(unst, size=2, replace=False)
    for j, sgn in zip(picks, rng.choice([-1, 1], size=2)):
        th.assign(int((j + 1) * sgn))
    th.propagate()
    node = th.snaps[-1]
    if node.trail_len != len(th.trail):
        pytest.skip("the split gave a conflict: no node bounds")
    ph = th.phase.copy()
    lo = node.obj_lower - 5.0           # a CROWN bound with room above it
    ref = np.array([True, False])       # pretend disjunct 0 is refuted here
    out, al, be = th._beta_lower(node.lbd, ph, snap, lo, ref)
    r0 = np.arange(th.rows[0], th.rows[1])
    r1 = np.arange(th.rows[1], th.rows[2])
    np.testing.assert_array_equal(out[r0], lo[r0])          # refuted rows: untouched
    assert np.all(out[r1] >= lo[r1])                        # live rows: never lowered
    assert al is None or al.shape == (th.C.shape[0], packed.n_relus)
    # soundness on samples of the node's cell (inputs whose pre-activations have its phases)
    case = spec.cases[0]
    xs = rng.uniform(case.lb, case.ub, size=(20000, net.n_inputs))
    zs = np.concatenate(net.pre_activations(xs), axis=1)
    fixed = np.flatnonzero(ph != 0)
    inside = np.all(np.sign(zs[:, fixed]) == ph[fixed], axis=1)
    if inside.sum() < 50:
        pytest.skip("the node's cell is (nearly) empty on samples")
    vals = net.forward(xs[inside]) @ th.C.T - th.d
    assert np.all(vals[:, r1] >= out[r1] - 1e-9)
